"""Real Chromium against the real server: a coordinator signs in, enrolls, and a refusal shows in red."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mfg import clock, create_app
from mfg.study.models import Subject
from tests.conftest import ON_CI, PASSWORD, World

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.e2e


@pytest.fixture
def live_server(database_url: str, tmp_path: Path, world: World, bench: object) -> Iterator[str]:
    waitress = pytest.importorskip("waitress")
    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": "e2e-secret", "INSTANCE_PATH": str(tmp_path)}
    )
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=10)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (Debian package chromium)"
        if ON_CI:
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        yield page
        browser.close()


def test_coordinator_enrolls_a_subject_with_the_keyboard(
    live_server: str, browser_page: object, session: Session, tmp_path: Path
) -> None:
    page = browser_page
    page.goto(live_server + "/")  # type: ignore[attr-defined]
    # Focus starts in the username field: a bench user types, tabs and presses Enter.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")  # type: ignore[attr-defined]
    page.keyboard.type("coordinator")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    page.keyboard.type(PASSWORD)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert page.url == live_server + "/", page.inner_text("main")  # type: ignore[attr-defined]
    assert "Clinical site coordinator" in page.inner_text("h1")  # type: ignore[attr-defined]

    page.click("text=Enroll a subject")  # type: ignore[attr-defined]
    page.fill("input[name=study_subject_id]", "ALS-042")  # type: ignore[attr-defined]
    page.fill("input[name=name]", "Morgan Browser-Test")  # type: ignore[attr-defined]
    page.fill("input[name=date_of_birth]", "1970-05-06")  # type: ignore[attr-defined]
    page.fill("input[name=medical_record_number]", "MRN-77")  # type: ignore[attr-defined]
    page.select_option("select[name=site_id]", label="Rochester clinic")  # type: ignore[attr-defined]
    page.fill("input[name=consent_date]", "2026-10-15")  # type: ignore[attr-defined]
    page.fill("input[name=password]", "wrong-password")  # type: ignore[attr-defined]
    page.press("input[name=password]", "Enter")  # type: ignore[attr-defined]
    refusal = page.locator(".refusal")  # type: ignore[attr-defined]
    assert "password for coordinator is wrong" in refusal.inner_text()
    # What was typed is still there; only the password has to be entered again.
    assert page.input_value("input[name=name]") == "Morgan Browser-Test"  # type: ignore[attr-defined]
    assert session.scalar(select(func.count()).select_from(Subject)) == 0
    session.rollback()

    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.press("input[name=password]", "Enter")  # type: ignore[attr-defined]
    page.wait_for_selector("text=Chain of identity")  # type: ignore[attr-defined]
    stored = session.scalar(select(Subject).where(Subject.study_subject_id == "ALS-042"))
    assert stored is not None
    assert stored.coi_identifier in page.inner_text(".coi")  # type: ignore[attr-defined]
    assert "performed" in page.inner_text("table.signatures")  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path.parent / "e2e-subject.png"), full_page=True)  # type: ignore[attr-defined]


def test_bench_step_by_scanner_and_keyboard_with_a_refusal(
    live_server: str, browser_page: object, session: Session, world: World, bench: object, tmp_path: Path
) -> None:

    from mfg.process import batches, steps, workstations
    from mfg.study.definition import load_study
    from tests.bench_data import step_values
    from tests.conftest import enroll

    study = load_study()
    subject = enroll(session, world, study)
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    tech, supervisor = world.users["technician"], world.users["supervisor"]
    cabinet = bench.cabinet  # type: ignore[attr-defined]
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept", "processing.digest"):
        performer = world.users["coordinator"] if step_key.startswith("collection") else tech
        if not step_key.startswith("collection"):
            workstations.open_at_workstation(session, tech, cabinet, batch)
        values = step_values(session, batch, step_key, clock.now())
        record = steps.record_step(
            session,
            performer,
            PASSWORD,
            batch,
            step_key,
            steps.StepSubmission(values),
            study,
            cabinet,
        )
        if record.status == "awaiting_verification":
            steps.verify_step(session, supervisor, PASSWORD, record)
    session.commit()
    batch_id = batch.id

    page = browser_page
    page.goto(live_server + "/login")  # type: ignore[attr-defined]
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")  # type: ignore[attr-defined]
    page.keyboard.type("technician")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    page.keyboard.type(PASSWORD)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("Enter")  # type: ignore[attr-defined]
    page.goto(live_server + "/bench/")  # type: ignore[attr-defined]
    page.wait_for_function("document.activeElement && document.activeElement.name === 'code'")  # type: ignore[attr-defined]
    page.keyboard.type("BSC-01")  # the scanner types the cabinet tag and presses Enter
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert "works at BSC-01" in page.inner_text("main")  # type: ignore[attr-defined]

    page.goto(f"{live_server}/bench/batches/{batch_id}")  # type: ignore[attr-defined]
    assert "Neutralise, centrifuge and strain" in page.inner_text("#current-step")  # type: ignore[attr-defined]
    # Focus is on the first empty field, a scan field: the scanner types and presses Enter, focus moves on.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'f.centrifuge'")  # type: ignore[attr-defined]
    page.keyboard.type("CEN-OLD")  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.name") == "f.g_force"  # type: ignore[attr-defined]
    assert "Still missing: Centrifugal force" in page.inner_text(".missing")  # type: ignore[attr-defined]
    page.keyboard.type("400")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    page.keyboard.type("5")  # type: ignore[attr-defined]
    page.select_option("select[name='f.strained']", "yes")  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.press("input[name=password]", "Enter")  # type: ignore[attr-defined]
    refusal = page.inner_text(".refusal")  # type: ignore[attr-defined]
    assert "CEN-OLD is past its calibration date" in refusal
    assert page.input_value("input[name='f.g_force']") == "400"  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path.parent / "e2e-bench-refusal-1280x800.png"))  # type: ignore[attr-defined]

    page.fill("input[name='f.centrifuge']", "CEN-01")  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.press("input[name=password]", "Enter")  # type: ignore[attr-defined]
    assert "recorded and signed" in page.inner_text("main")  # type: ignore[attr-defined]
    assert "Count the stromal vascular fraction" in page.inner_text("#current-step")  # type: ignore[attr-defined]
    for width, height in ((1280, 800), (800, 1280)):  # bench terminal and a 10-inch tablet
        page.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
        assert overflow <= 0, f"horizontal scrolling at {width}x{height}"
        page.screenshot(path=str(tmp_path.parent / f"e2e-bench-{width}x{height}.png"))  # type: ignore[attr-defined]
