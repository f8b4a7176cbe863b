// Bench step form: keep "still missing" up to date as fields are scanned or typed.
// A barcode scanner types into the focused field and presses Enter: Enter inside a scan field moves on to
// the next field instead of submitting a half-filled step.
(function () {
  "use strict";
  var form = document.querySelector("form.step-form");
  if (!form) { return; }
  var missing = form.querySelector(".missing");
  var fields = Array.prototype.slice.call(form.querySelectorAll("[data-label]"));
  function update() {
    var empty = fields.filter(function (el) { return el.required && !el.value.trim(); })
      .map(function (el) { return el.getAttribute("data-label"); });
    missing.textContent = empty.length ? "Still missing: " + empty.join(", ") : "All required fields are filled.";
    missing.className = empty.length ? "missing missing-some" : "missing missing-none";
  }
  fields.forEach(function (el, index) {
    el.addEventListener("input", update);
    el.addEventListener("change", update);
    if (el.classList.contains("scan-target")) {
      el.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && el.value.trim() && index + 1 < fields.length) {
          event.preventDefault();
          fields[index + 1].focus();
        }
      });
    }
  });
  update();
})();
