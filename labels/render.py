"""Label layouts and PDFs: container 2 x 1 in, cryovial 2 x 1.5 in, syringe 4 x 3 in, shipper 4 x 4 in.

A layout is a list of ``Placed`` elements (name, box in mm, drawing function). The renderer only draws
what the layout placed, and every layout is checked before it is returned: each element lies inside the
printable area and no two elements overlap (a barcode's box includes its quiet zones, so nothing prints
in them). Text shrinks, then wraps; when the content still does not fit, the layout first tries smaller
text overall and finally raises ``LabelOverflow`` naming the field. Barcodes are placed before text and
never move, so long text cannot push a barcode off the label.

Eye-readable DIN (ST-001 §7.4.1): the 13 DIN characters in groups, then the flag characters rotated
90° clockwise when they are not the default 00 (and never for type 3 check-character flags), then the
boxed keyboard-entry check character. The chain of identity identifier is printed the same way.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reportlab.lib.colors import Color, black, white
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from labels import isbt128
from labels.barcodes import (
    CAPTION_GAP_MM,
    CAPTION_SIZE,
    MIN_HEIGHT_MM,
    QUIET_ZONE_MODULES,
    TARGET_MODULE_MM,
    Code128Symbol,
    DataMatrixSymbol,
    code128_modules,
    fit_module_mm,
)
from labels.data import (
    CONTAINER_STOCK,
    SHIPPER_STOCK,
    SYRINGE_STOCK,
    ContainerLabel,
    LabelStock,
    PatientIdentifier,
    ShipperLabel,
    SyringeLabel,
    barcode_strings,
    compound_message,
    parse_din,
)
from labels.fonts import MONO, MONO_BOLD, SANS, SANS_BOLD, register_fonts
from labels.layout import (
    ASCENT,
    Box,
    BoxedCheck,
    FittedText,
    LabelOverflow,
    fit_text,
    pt_to_mm,
    text_width_mm,
)
from labels.numbers import format_cells, format_ml

__all__ = [
    "Placed",
    "check_layout",
    "layout_container_label",
    "layout_shipper_label",
    "layout_syringe_label",
    "render_container_labels",
    "render_shipper_label",
    "render_syringe_label",
]

NBSP = "\u00a0"
TEXT_SCALES = (1.0, 0.9, 0.8, 0.7)
"""Tried in turn: when text does not fit at full size, all text gets smaller before the label is refused."""
GREY = Color(0.35, 0.35, 0.35)
RULE_GREY = Color(0.6, 0.6, 0.6)
EPS = 1e-6


@dataclass(frozen=True)
class Placed:
    """One element of a laid-out label."""

    name: str
    box: Box
    kind: str
    """'code128', 'datamatrix', 'text' or 'rule'."""
    draw: Callable[[Canvas], object] = field(compare=False, repr=False)
    data: str | None = None
    """The encoded string, for symbols."""

    @property
    def is_symbol(self) -> bool:
        return self.kind in ("code128", "datamatrix")


def check_layout(placed: Sequence[Placed], stock: LabelStock) -> None:
    """Raise LabelOverflow unless every element is inside the printable area and none overlap."""
    area = stock.printable
    names = [p.name for p in placed]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate element names in layout: {names}")
    for p in placed:
        if not area.contains(p.box):
            raise LabelOverflow(f"{p.name}: {p.box} lies outside the printable area {area} of {stock.name}")
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            if a.box.overlaps(b.box):
                raise LabelOverflow(f"{a.name} overlaps {b.name} on {stock.name}")


def _bar_height(symbol: Code128Symbol, leaves_facility: bool) -> float:
    """At least 5 mm; for labels that leave the facility also 15 % of the symbol length (ST-001 §6.1.3,
    after ISO/IEC 15417 Annex G). In-process container labels stay inside and use the 5 mm minimum."""
    if not leaves_facility:
        return MIN_HEIGHT_MM
    return max(MIN_HEIGHT_MM, math.ceil(0.15 * symbol.symbol_width_mm * 10) / 10)


def _din_text(din: isbt128.Din) -> tuple[str, str]:
    """Eye-readable DIN and the flag characters to print (none for 00 or type 3 check flags 60-96)."""
    main = f"{din.facility_id} {din.year:02d} {din.sequence:06d}"
    flags = din.flags
    if flags == "00" or (flags.isdigit() and 60 <= int(flags) <= 96):
        flags = ""
    return main, flags


def _coi(code: str) -> isbt128.ChainOfIdentity:
    parsed = isbt128.parse(code)
    assert isinstance(parsed, isbt128.ChainOfIdentity)
    return parsed


class _Flow:
    """Places elements top-down in a column of ``area``; running out of room raises LabelOverflow."""

    def __init__(self, area: Box, what: str, scale: float = 1.0) -> None:
        self.area = area
        self.what = what
        self.scale = scale
        self.cursor = area.top
        self.items: list[Placed] = []

    def take(self, name: str, height: float) -> float:
        top = self.cursor
        if top - height < self.area.y - EPS:
            raise LabelOverflow(f"{name}: no room left in the {self.what} ({height:.1f} mm needed)")
        self.cursor = top - height
        return top

    def gap(self, mm_: float) -> None:
        self.cursor -= mm_

    def fit(
        self, name: str, text: str, font: str, max_size: float, min_size: float, lines: int = 1
    ) -> FittedText:
        return fit_text(
            text,
            font,
            self.area.w,
            max(min_size, max_size * self.scale),
            min_size,
            max_lines=lines,
            field=name,
        )

    def text(
        self,
        name: str,
        text: str,
        font: str,
        max_size: float,
        min_size: float,
        *,
        lines: int = 1,
        colour: Color = black,
    ) -> Placed:
        fitted = self.fit(name, text, font, max_size, min_size, lines)
        top = self.take(name, fitted.height_mm)
        x = self.area.x

        def draw(c: Canvas) -> None:
            c.saveState()
            c.setFillColor(colour)
            fitted.draw(c, x, top)
            c.restoreState()

        return self.add(
            Placed(name, Box(x, top - fitted.height_mm, fitted.width_mm, fitted.height_mm), "text", draw)
        )

    def banner(self, name: str, text: str, max_size: float, min_size: float, lines: int = 1) -> Placed:
        """White bold text on a black bar across the column, for the statement that must not be missed."""
        pad = 0.5
        fitted = fit_text(
            text,
            SANS_BOLD,
            self.area.w - 2 * pad,
            max(min_size, max_size * self.scale),
            min_size,
            max_lines=lines,
            field=name,
        )
        height = fitted.height_mm + 2 * pad
        top = self.take(name, height)
        x, w = self.area.x, self.area.w

        def draw(c: Canvas) -> None:
            c.saveState()
            c.setFillColor(black)
            c.rect(x * mm, (top - height) * mm, w * mm, height * mm, stroke=0, fill=1)
            c.setFillColor(white)
            fitted.draw(c, x, top - pad, align="centre", width=w)
            c.restoreState()

        return self.add(Placed(name, Box(x, top - height, w, height), "text", draw))

    def code128(
        self,
        name: str,
        data: str,
        *,
        text: str | None = None,
        captions: Sequence[str] = (),
        font_size: float = 7.0,
        leaves_facility: bool = True,
    ) -> Code128Symbol:
        """A Code 128 symbol at the column's left edge, module width reduced (not below 0.17 mm) to fit;
        the first of ``captions`` that fits beside the eye-readable text is printed."""
        module = fit_module_mm(data, self.area.w, field=name)
        probe = Code128Symbol(data, module, 5.0, text, font_size)
        caption = next((c for c in captions if probe.caption_fits(c)), None)
        symbol = Code128Symbol(data, module, _bar_height(probe, leaves_facility), text, font_size, caption)
        top = self.take(name, symbol.total_height_mm)
        x, y = self.area.x, top - symbol.total_height_mm
        box = Box(x, y, symbol.width_mm, symbol.total_height_mm)
        self.add(Placed(name, box, "code128", lambda c: symbol.draw(c, x, y), data))
        return symbol

    def boxed(
        self, name: str, boxed: BoxedCheck, symbol: Code128Symbol, captions: Sequence[str] = ()
    ) -> None:
        """An identifier with its boxed check character, left-justified under ``symbol``'s first bar, and
        the first of ``captions`` that fits, right-aligned with its last bar."""
        top = self.take(name, boxed.height_mm)
        x, y = self.area.x + symbol.quiet_zone_mm, top - boxed.height_mm
        if x + boxed.width_mm > self.area.right + EPS:
            raise LabelOverflow(f"{name}: {boxed.text!r} is wider than the {self.what}")
        self.add(
            Placed(name, Box(x, y, boxed.width_mm, boxed.height_mm), "text", lambda c: boxed.draw(c, x, y))
        )
        right = x + symbol.symbol_width_mm
        for caption in captions:
            width = text_width_mm(caption, SANS, CAPTION_SIZE)
            if right - width < x + boxed.width_mm + CAPTION_GAP_MM:
                continue
            baseline = y + boxed.height_mm - pt_to_mm(boxed.size * ASCENT)
            box = Box(right - width, y, width, boxed.height_mm)

            def draw(c: Canvas, caption: str = caption, baseline: float = baseline) -> None:
                c.saveState()
                c.setFillColor(GREY)
                c.setFont(SANS, CAPTION_SIZE)
                c.drawRightString(right * mm, baseline * mm, caption)
                c.restoreState()

            self.add(Placed(f"{name}_caption", box, "text", draw))
            break

    def add(self, placed: Placed) -> Placed:
        self.items.append(placed)
        return placed


def _rule(name: str, box: Box, *, vertical: bool) -> Placed:
    def draw(c: Canvas) -> None:
        c.saveState()
        c.setStrokeColor(RULE_GREY)
        c.setLineWidth(0.4)
        if vertical:
            mid = box.x + box.w / 2
            c.line(mid * mm, box.y * mm, mid * mm, box.top * mm)
        else:
            mid = box.y + box.h / 2
            c.line(box.x * mm, mid * mm, box.right * mm, mid * mm)
        c.restoreState()

    return Placed(name, box, "rule", draw)


def _anchor_bottom(flow: _Flow, blocks: list[tuple[str, FittedText, Color]], gap: float) -> list[Placed]:
    """Place text blocks at the bottom of ``flow``'s area, below whatever the flow already holds."""
    total = sum(f.height_mm for _, f, _ in blocks)
    if flow.area.y + total > flow.cursor - gap + EPS:
        raise LabelOverflow(f"{blocks[0][0]}: no room left in the {flow.what} ({total:.1f} mm needed)")
    placed, top = [], flow.area.y + total
    for name, fitted, colour in blocks:
        x, t = flow.area.x, top

        def draw(
            c: Canvas, fitted: FittedText = fitted, x: float = x, t: float = t, colour: Color = colour
        ) -> None:
            c.saveState()
            c.setFillColor(colour)
            fitted.draw(c, x, t)
            c.restoreState()

        placed.append(
            Placed(name, Box(x, t - fitted.height_mm, fitted.width_mm, fitted.height_mm), "text", draw)
        )
        top -= fitted.height_mm
    return placed


def _facility_footer(
    flows: Sequence[_Flow], label: SyringeLabel, *, size: float, min_size: float, join: bool
) -> None:
    """Facility name and address as a grey footer at the bottom of the first of ``flows`` with room for it.

    On small stock the address lines are joined with commas so they can share lines.
    """
    lines = label.address_lines
    address = ", ".join(lines) if join else "\n".join(lines)
    error: LabelOverflow | None = None
    for flow in flows:
        try:
            blocks = [
                (
                    "facility_name",
                    flow.fit("facility_name", label.facility_name, SANS_BOLD, size, min_size, 2),
                    GREY,
                ),
                (
                    "facility_address",
                    flow.fit("facility_address", address, SANS, size, min_size, len(lines) + 2),
                    GREY,
                ),
            ]
            flow.items.extend(_anchor_bottom(flow, blocks, gap=1.0))
            return
        except LabelOverflow as exc:
            error = error or exc
    assert error is not None
    raise error


def _din_barcode(flow: _Flow, code: str, din_size: float) -> None:
    din = parse_din(code)
    din_main, din_flags = _din_text(din)
    symbol = flow.code128("din_barcode", code)
    flow.gap(0.3)
    flow.boxed(
        "din_text",
        BoxedCheck(din_main, din.check_character, MONO_BOLD, din_size, flags=din_flags),
        symbol,
        ["DIN"],
    )


def _barcode_stack(
    flow: _Flow, label: SyringeLabel, din_size: float, coi_size: float, gap: float, *, with_coi: bool = True
) -> None:
    """DIN, product code, expiry and chain of identity barcodes top-down, each with its eye-readable text
    (no data identifiers) and a data label: the long form where it fits, else ST-001's abbreviations."""
    codes = barcode_strings(label)
    _din_barcode(flow, codes["din"], din_size)
    flow.gap(gap)
    product_text = isbt128.eye_readable(codes["product_code"])
    flow.code128(
        "product_code_barcode",
        codes["product_code"],
        text=product_text,
        captions=["PRODUCT CODE", "PROD CODE"],
    )
    flow.gap(gap)
    expiry_text = isbt128.eye_readable(codes["expiry"])
    flow.code128("expiry_barcode", codes["expiry"], text=expiry_text, captions=["EXPIRATION", "EXP"])
    if with_coi:
        flow.gap(gap)
        _coi_barcode(flow, codes["coi"], coi_size)


def _coi_barcode(flow: _Flow, code: str, coi_size: float) -> None:
    coi = _coi(code)
    symbol = flow.code128("coi_barcode", code)
    flow.gap(0.3)
    coi_boxed = BoxedCheck(coi.eye_readable, coi.check_character, MONO, coi_size)
    flow.boxed("coi_text", coi_boxed, symbol, ["CHAIN OF IDENTITY", "COI"])


def _natural_width(codes: Sequence[str]) -> float:
    """Column width that fits every symbol at the 0.25 mm target module, quiet zones included."""
    return max(len(code128_modules(d)) + 2 * QUIET_ZONE_MODULES for d in codes) * TARGET_MODULE_MM


def _unbroken(text: str) -> str:
    """``text`` with no-break spaces: '5.04 × 10⁷' or 'Visit 5' is never split across lines."""
    return text.replace(" ", NBSP)


def _identity_lines(label: SyringeLabel) -> tuple[str | None, str]:
    """The name (printed large, when it is one of the study's two identifiers) and a line with the other
    identifier and the study subject id, each under its caption: exactly what the study chose."""
    others = [p for p in label.patient_identifiers if p.kind != "name"]
    if not any(p.kind == "study_subject_id" for p in others):
        others.append(PatientIdentifier("study_subject_id", label.study_subject_id))
    return label.identifier("name"), "   ".join(_unbroken(f"{p.caption}: {p.value}") for p in others)


# --- syringe -----------------------------------------------------------------------------------------


def _band_height(code: str, width: float, coi_size: float) -> float:
    """Height of a chain of identity band: the symbol with its bars, then the boxed identifier."""
    module = fit_module_mm(code, width, field="coi_barcode")
    probe = Code128Symbol(code, module, 5.0, None, 7.0)
    symbol = Code128Symbol(code, module, _bar_height(probe, True), None, 7.0)
    coi = _coi(code)
    return (
        symbol.total_height_mm
        + 0.3
        + BoxedCheck(coi.eye_readable, coi.check_character, MONO, coi_size).height_mm
    )


def _syringe(label: SyringeLabel, stock: LabelStock, scale: float) -> list[Placed]:
    """Barcodes left, text right, and the chain of identity in a band across the bottom.

    The COI is the longest symbol: in the left column it would need 0.18 mm modules, which 300 dpi
    rendering reproduces as uneven 2- and 3-dot bars that did not always decode. Across the whole label
    it keeps the 0.25 mm (3-dot) target, with the facility's name and address beside it.
    """
    area = stock.printable
    gutter = 2.0
    codes = barcode_strings(label)
    coi_size = 7.0
    band_h = _band_height(codes["coi"], area.w, coi_size)
    coi_w = (len(code128_modules(codes["coi"])) + 2 * QUIET_ZONE_MODULES) * fit_module_mm(
        codes["coi"], area.w
    )
    band = _Flow(Box(area.x, area.y, coi_w, band_h), "chain of identity band", scale)
    _coi_barcode(band, codes["coi"], coi_size)
    upper = Box(area.x, area.y + band_h + gutter, area.w, area.h - band_h - gutter)
    col_w = min(_natural_width([codes["din"], codes["product_code"], codes["expiry"]]), 0.43 * upper.w)
    left = _Flow(Box(upper.x, upper.y, col_w, upper.h), "barcode column", scale)
    _barcode_stack(left, label, din_size=8.5, coi_size=coi_size, gap=0.7, with_coi=False)

    left.gap(1.5)
    injection = _unbroken(f"Injection {label.injection_number} of {label.injections}")
    visit = _unbroken(f"Visit {label.protocol_visit}")
    left.text("injection", f"{injection}   {visit}", SANS_BOLD, 8.0, 6.0, lines=2)
    protocol = f"{_unbroken(f'Protocol {label.protocol_number}')}   {_unbroken(f'IND {label.ind_number}')}"
    left.text("protocol", protocol, SANS, 6.5, 5.5, lines=2)
    left.gap(0.5)
    left.text("route", f"Route: {label.route}", SANS, 6.5, 5.5, lines=2)
    left.text("diluent", f"Diluent: {label.diluent}", SANS, 6.5, 5.5, lines=2)
    left.text("storage", f"Storage: {label.storage}", SANS, 6.5, 5.5, lines=3)

    rx = upper.x + col_w + gutter
    right = _Flow(Box(rx, upper.y, upper.right - rx, upper.h), "text column", scale)
    right.text("product_name", label.product_name, SANS_BOLD, 9.0, 6.5, lines=2)
    right.gap(0.4)
    right.banner("autologous_statement", label.autologous_statement, 8.0, 6.0)
    right.gap(0.6)
    name, identifiers = _identity_lines(label)
    if name is not None:
        right.text("subject_name", name, SANS_BOLD, 11.0, 6.5, lines=3)
    right.text("subject_ids", identifiers, SANS, 7.5, 6.0, lines=2)
    right.gap(0.5)
    # the measured dose and what it is made of: the volume in the syringe and the final count
    dose = _unbroken(format_cells(label.dose_cells, "label"))
    right.text("dose", f"Dose: {dose} viable cells", SANS_BOLD, 8.5, 6.5, lines=2)
    right.text("volume", f"Volume: {_unbroken(format_ml(label.volume_ml))}", SANS_BOLD, 7.5, 6.0)
    concentration = _unbroken(format_cells(label.concentration_per_ml, "label"))
    right.text("concentration", f"Concentration: {concentration} viable cells/mL", SANS, 7.0, 5.5, lines=2)
    right.text("expiry_text", f"EXP: {_unbroken(label.expiry_text)}", SANS_BOLD, 7.5, 6.0, lines=2)
    right.text("handling", label.handling, SANS_BOLD, 6.5, 5.5, lines=2)
    right.gap(0.5)
    right.text("investigational_statement", label.investigational_statement, SANS, 6.0, 5.0, lines=3)
    if label.infectious_statement:
        right.text("infectious_statement", label.infectious_statement, SANS_BOLD, 6.5, 5.0, lines=2)

    fx = area.x + coi_w + gutter
    footer = _Flow(Box(fx, area.y, area.right - fx, band_h), "facility footer", scale)
    _facility_footer([footer, left, right], label, size=6.0, min_size=4.8, join=False)
    divider = _rule(
        "column_rule", Box(upper.x + col_w + gutter / 2 - 0.1, upper.y, 0.2, upper.h), vertical=True
    )
    band_rule = _rule(
        "band_rule", Box(area.x, area.y + band_h + gutter / 2 - 0.1, area.w, 0.2), vertical=False
    )
    return [*left.items, divider, *right.items, band_rule, *band.items, *footer.items]


def layout_syringe_label(label: SyringeLabel, stock: LabelStock = SYRINGE_STOCK) -> list[Placed]:
    """Lay out the final-product syringe label; LabelOverflow if it cannot fit ``stock``."""
    return _first_fit(lambda scale: _syringe(label, stock, scale), stock)


def _first_fit(build: Callable[[float], list[Placed]], stock: LabelStock) -> list[Placed]:
    register_fonts()
    error: LabelOverflow | None = None
    for scale in TEXT_SCALES:
        try:
            placed = build(scale)
            check_layout(placed, stock)
            return placed
        except LabelOverflow as exc:
            error = error or exc  # report the full-size problem: it names what is too long
    assert error is not None
    raise error


# --- shipper -----------------------------------------------------------------------------------------


def _address_block(
    flow: _Flow, prefix: str, caption: str, name: str, address: str, size: float, min_size: float
) -> None:
    lines = [line.strip() for line in address.splitlines() if line.strip()]
    flow.text(f"{prefix}_caption", caption, SANS_BOLD, 6.0, 5.0, colour=GREY)
    flow.text(f"{prefix}_name", name, SANS_BOLD, size, min_size, lines=2)
    flow.text(f"{prefix}_address", "\n".join(lines), SANS, size * 0.9, min_size, lines=len(lines) + 2)


def _shipper(label: ShipperLabel, stock: LabelStock, scale: float) -> list[Placed]:
    """Handling banner; ship-from and ship-to; DIN and COI barcodes beside the DataMatrix with the study
    subject id and the expiry; then what the product is, the temperature, the ship date and whom to call."""
    from labels.datamatrix import datamatrix_rows  # needs treepoem + ghostscript: shipper labels only

    area = stock.printable
    gutter = 2.5
    head = _Flow(area, "label", scale)
    head.banner("handling", label.handling, 11.0, 7.0, lines=2)
    head.gap(1.2)
    from_w = 0.42 * (area.w - gutter)
    sender = _Flow(Box(area.x, area.y, from_w, head.cursor - area.y), "ship-from block", scale)
    _address_block(sender, "ship_from", "SHIP FROM", label.ship_from_name, label.ship_from_address, 8.0, 6.0)
    tx = area.x + from_w + gutter
    recipient = _Flow(Box(tx, area.y, area.right - tx, head.cursor - area.y), "ship-to block", scale)
    _address_block(recipient, "ship_to", "SHIP TO", label.ship_to_name, label.ship_to_address, 10.0, 7.0)
    top = min(sender.cursor, recipient.cursor) - 1.0
    rules = [
        _rule(
            "address_rule", Box(tx - gutter / 2 - 0.1, top + 0.5, 0.2, head.cursor - top - 0.5), vertical=True
        ),
        _rule("top_rule", Box(area.x, top, area.w, 0.2), vertical=False),
    ]
    top -= 1.2

    codes = barcode_strings(label)
    col_w = min(_natural_width([codes["din"], codes["coi"]]), 0.62 * area.w)
    left = _Flow(Box(area.x, area.y, col_w, top - area.y), "barcode column", scale)
    _din_barcode(left, codes["din"], 12.0)
    left.gap(1.2)
    _coi_barcode(left, codes["coi"], 8.0)

    rx = area.x + col_w + gutter
    right = _Flow(Box(rx, area.y, area.right - rx, top - area.y), "identity column", scale)
    rows = datamatrix_rows(compound_message(label))
    n = len(rows[0]) + 2 * DataMatrixSymbol.quiet_modules
    # ST-001 §6.2.3: X from 0.25 to 1 mm, "as large as practical"; 0.6 mm keeps room beside the barcodes
    module = math.floor(min(0.6, right.area.w / n) * 100) / 100
    if module < 0.25:
        raise LabelOverflow(
            f"datamatrix: a {len(rows[0])}-module symbol needs {0.25 * n:.1f} mm; only {right.area.w:.1f} mm"
        )
    dm = DataMatrixSymbol(rows, module)
    dm_top = right.take("datamatrix", dm.height_mm)
    dm_x, dm_y = right.area.right - dm.width_mm, dm_top - dm.height_mm
    right.add(
        Placed(
            "datamatrix",
            Box(dm_x, dm_y, dm.width_mm, dm.height_mm),
            "datamatrix",
            lambda c: dm.draw(c, dm_x, dm_y),
            compound_message(label),
        )
    )
    right.gap(0.8)
    right.text("study_subject_id", f"Study ID: {label.study_subject_id}", SANS_BOLD, 9.0, 6.5, lines=2)
    if label.subject_name is not None and label.date_of_birth is not None:
        right.text("subject_name", label.subject_name, SANS_BOLD, 9.0, 6.5, lines=3)
        right.text("date_of_birth", f"DOB: {label.date_of_birth.isoformat()}", SANS, 8.0, 6.0)
    right.text("expiry_text", f"EXP: {_unbroken(label.expiry_text)}", SANS_BOLD, 8.0, 6.0, lines=2)

    below = min(left.cursor, right.cursor) - 1.2
    divider = _rule(
        "column_rule", Box(rx - gutter / 2 - 0.1, below + 0.5, 0.2, top - below - 0.5), vertical=True
    )
    body = _Flow(Box(area.x, area.y, area.w, below - area.y), "text area", scale)
    body.items.append(_rule("body_rule", Box(area.x, below, area.w, 0.2), vertical=False))
    body.gap(1.0)
    body.text("product_name", label.product_name, SANS_BOLD, 9.0, 6.5, lines=2)
    body.text("autologous_statement", label.autologous_statement, SANS_BOLD, 9.0, 6.5)
    body.gap(0.6)
    body.text("shipping_temperature", label.shipping_temperature, SANS_BOLD, 8.5, 6.0, lines=2)
    body.text("ship_date", f"Ship date: {label.ship_date.isoformat()}", SANS, 8.5, 6.0)
    contact = f"24-hour contact: {_unbroken(label.contact_phone)}"
    body.text("contact_phone", contact, SANS_BOLD, 8.5, 6.0, lines=2)
    body.gap(0.6)
    body.text("investigational_statement", label.investigational_statement, SANS, 7.0, 5.5, lines=3)
    if label.infectious_statement:
        body.text("infectious_statement", label.infectious_statement, SANS_BOLD, 7.5, 5.5, lines=2)
    return [
        *head.items,
        *sender.items,
        *recipient.items,
        *rules,
        *left.items,
        divider,
        *right.items,
        *body.items,
    ]


def layout_shipper_label(label: ShipperLabel, stock: LabelStock = SHIPPER_STOCK) -> list[Placed]:
    """Lay out the shipper label: addresses and handling, DIN and COI barcodes, the DataMatrix."""
    return _first_fit(lambda scale: _shipper(label, stock, scale), stock)


# --- container ---------------------------------------------------------------------------------------


def _container(label: ContainerLabel, stock: LabelStock, scale: float) -> list[Placed]:
    area = stock.printable
    flow = _Flow(area, "label", scale)
    flow.text("subject_name", label.subject_name, SANS_BOLD, 8.0, 5.5, lines=2)
    flow.text(
        "subject_ids",
        f"DOB {label.date_of_birth.isoformat()}   ID {label.study_subject_id}",
        SANS,
        6.5,
        5.0,
        lines=2,
    )
    flow.gap(0.2)
    symbol = flow.code128(
        "container_barcode",
        label.container_id,
        text=label.container_id,
        captions=["CONTAINER"],
        font_size=6.5,
        leaves_facility=False,
    )
    flow.gap(0.3)
    date_fit = flow.fit("label_date", f"Date {label.label_date.isoformat()}", SANS, 6.0, 5.0)
    din = label.din
    boxed = None
    if din is not None:
        main, flags = _din_text(din)
        boxed = BoxedCheck(main, din.check_character, MONO_BOLD, max(6.0, 7.0 * scale), flags=flags)
    # one row: DIN with its boxed check character on the left, the label date on the right
    row_h = max(date_fit.height_mm, boxed.height_mm if boxed else 0.0)
    row_top = flow.take("label_date", row_h)
    date_x, date_top = area.right - date_fit.width_mm, row_top - (row_h - date_fit.height_mm) / 2
    if boxed is not None:
        din_x, din_y = area.x + symbol.quiet_zone_mm, row_top - boxed.height_mm
        if din_x + boxed.width_mm + 1.0 > date_x:
            raise LabelOverflow("din_text: no room for the DIN beside the label date")
        flow.add(
            Placed(
                "din_text",
                Box(din_x, din_y, boxed.width_mm, boxed.height_mm),
                "text",
                lambda c: boxed.draw(c, din_x, din_y),
            )
        )
    flow.add(
        Placed(
            "label_date",
            Box(date_x, date_top - date_fit.height_mm, date_fit.width_mm, date_fit.height_mm),
            "text",
            lambda c: date_fit.draw(c, date_x, date_top),
        )
    )
    if label.product_code is not None:
        flow.gap(0.4)
        flow.code128(
            "product_code_barcode",
            label.product_code,
            text=isbt128.eye_readable(label.product_code),
            captions=["PRODUCT CODE", "PROD CODE"],
            font_size=6.5,
            leaves_facility=False,
        )
    flow.gap(0.2)
    flow.text("contents", label.contents, SANS, 6.5, 5.0, lines=2)
    return flow.items


def layout_container_label(label: ContainerLabel, stock: LabelStock = CONTAINER_STOCK) -> list[Placed]:
    """Lay out one in-process container label; LabelOverflow if it cannot fit ``stock``."""
    return _first_fit(lambda scale: _container(label, stock, scale), stock)


# --- PDF -------------------------------------------------------------------------------------------


def _pdf(pages: Sequence[list[Placed]], stock: LabelStock, title: str) -> bytes:
    """One label per page at the stock's exact size; ``invariant=1``: same input, same bytes."""
    buffer = io.BytesIO()
    canvas = Canvas(
        buffer, pagesize=(stock.width_mm * mm, stock.height_mm * mm), invariant=1, pageCompression=1
    )
    canvas.setTitle(title)
    canvas.setCreator("labels")
    for placed in pages:
        for element in placed:
            element.draw(canvas)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def render_container_labels(labels: Sequence[ContainerLabel], stock: LabelStock = CONTAINER_STOCK) -> bytes:
    """PDF with one container label per page, in the order given."""
    if not labels:
        raise ValueError("no container labels to render")
    return _pdf([layout_container_label(label, stock) for label in labels], stock, "Container labels")


def render_syringe_label(label: SyringeLabel, stock: LabelStock = SYRINGE_STOCK, copies: int = 1) -> bytes:
    """PDF with ``copies`` identical pages of the syringe label."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    placed = layout_syringe_label(label, stock)
    return _pdf([placed] * copies, stock, "Syringe label")


def render_shipper_label(label: ShipperLabel, stock: LabelStock = SHIPPER_STOCK) -> bytes:
    """PDF of the shipper label (DIN and COI Code 128 symbols and the DataMatrix compound message)."""
    return _pdf([layout_shipper_label(label, stock)], stock, "Shipper label")
