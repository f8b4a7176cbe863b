"""Code 128 and DataMatrix symbols drawn as vector rectangles on a reportlab canvas.

Code 128 uses python-barcode only for the encoding (start code, code-set switching, check symbol), so the
symbol is the one zbarimg was seen to decode; reportlab then draws each bar at an exact multiple of the
module width, with no raster image in between. Dimensions follow ICCBBA ST-001 §6.1.3: module (X) 0.25 mm
target, 0.17 mm minimum, quiet zones of at least 10 X, bar height at least 5 mm (and 15 % of the symbol
length, ISO/IEC 15417 Annex G, for labels that leave the facility), eye-readable text left-justified
below the bars without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from barcode.codex import Code128
from reportlab.lib.colors import Color, black
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from labels.fonts import MONO, SANS, check_printable
from labels.layout import ASCENT, LINE_HEIGHT, Box, LabelOverflow, pt_to_mm, text_width_mm

__all__ = [
    "MIN_HEIGHT_MM",
    "MIN_MODULE_MM",
    "QUIET_ZONE_MODULES",
    "CAPTION_SIZE",
    "TARGET_MODULE_MM",
    "Code128Symbol",
    "DataMatrixSymbol",
    "code128_modules",
    "code128_width_mm",
    "draw_code128",
    "fit_module_mm",
]

TARGET_MODULE_MM = 0.25
MIN_MODULE_MM = 0.17
MODULE_STEP_MM = 0.01
QUIET_ZONE_MODULES = 10
MIN_HEIGHT_MM = 5.0
TOP_CLEARANCE_MM = 0.5
"""Blank space reserved above the bars: nothing may print in contact with them (ST-001 §6.1.3)."""
TEXT_GAP_MM = 0.4
"""Between the bars and the eye-readable line: 'immediately below, but not touching'."""
DEFAULT_FONT_SIZE = 7.0
"""DejaVu Sans Mono capitals at 7 pt are 1.8 mm high: within ST-001 §7.4.2.1's 2 mm maximum."""
CAPTION_SIZE = 5.0
CAPTION_GAP_MM = 1.0
CAPTION_GREY = Color(0.35, 0.35, 0.35)


@lru_cache(maxsize=256)
def code128_modules(data: str) -> str:
    """The symbol as a string of modules ('1' bar, '0' space), without quiet zones."""
    modules: list[str] = Code128(data).build()
    if len(modules) != 1 or set(modules[0]) - {"0", "1"}:
        raise RuntimeError(f"python-barcode returned an unexpected Code 128 encoding for {data!r}")
    return modules[0]


def code128_width_mm(data: str, module_mm: float = TARGET_MODULE_MM) -> float:
    """Width of the symbol alone (no quiet zones)."""
    return len(code128_modules(data)) * module_mm


def fit_module_mm(
    data: str, max_width_mm: float, *, target: float = TARGET_MODULE_MM, field: str = "barcode"
) -> float:
    """Largest module width from ``target`` down to 0.17 mm (0.01 mm steps) at which the symbol and its
    quiet zones fit ``max_width_mm``; LabelOverflow if even 0.17 mm is too wide."""
    count = len(code128_modules(data)) + 2 * QUIET_ZONE_MODULES
    steps = round((target - MIN_MODULE_MM) / MODULE_STEP_MM)
    for i in range(steps + 1):
        module = round(target - i * MODULE_STEP_MM, 4)
        if count * module <= max_width_mm + 1e-9:
            return module
    raise LabelOverflow(
        f"{field}: Code 128 of {data!r} needs {count * MIN_MODULE_MM:.1f} mm at the 0.17 mm minimum module "
        f"width (quiet zones included); only {max_width_mm:.1f} mm available"
    )


def _bar_runs(modules: str) -> list[tuple[int, int]]:
    """(start, length) of each bar, so each bar is one rectangle rather than one per module."""
    runs, start = [], None
    for i, m in enumerate(modules + "0"):
        if m == "1" and start is None:
            start = i
        elif m == "0" and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@dataclass(frozen=True)
class Code128Symbol:
    """A Code 128 symbol with quiet zones and an optional eye-readable line; measures before drawing."""

    data: str
    module_mm: float = TARGET_MODULE_MM
    height_mm: float = 8.0
    text: str | None = None
    font_size: float = DEFAULT_FONT_SIZE
    caption: str | None = None
    """A small data label ('PROD CODE', 'EXP') printed right-aligned on the eye-readable line (ST-001 §7.4
    asks for data labels where a code's purpose is not apparent)."""

    def __post_init__(self) -> None:
        if self.module_mm < MIN_MODULE_MM - 1e-9:
            raise ValueError(
                f"Code 128 module width {self.module_mm} mm is below the {MIN_MODULE_MM} mm minimum"
            )
        if self.height_mm < MIN_HEIGHT_MM - 1e-9:
            raise ValueError(
                f"Code 128 bar height {self.height_mm} mm is below the {MIN_HEIGHT_MM} mm minimum"
            )
        if self.text is not None:
            check_printable(self.text, MONO, "barcode text")
            # eye-readable text must not run past the last bar
            if text_width_mm(self.text, MONO, self.font_size) > self.symbol_width_mm + 1e-9:
                raise LabelOverflow(f"barcode text {self.text!r} is wider than its symbol")
        if self.caption is not None and not self.caption_fits(self.caption):
            raise LabelOverflow(f"barcode caption {self.caption!r} does not fit beside {self.text!r}")

    def caption_fits(self, caption: str) -> bool:
        """Whether ``caption`` fits right-aligned under the bars, clear of the eye-readable text."""
        if self.text is None:
            return False
        free = self.symbol_width_mm - text_width_mm(self.text, MONO, self.font_size) - CAPTION_GAP_MM
        return text_width_mm(caption, SANS, CAPTION_SIZE) <= free

    @property
    def modules(self) -> str:
        return code128_modules(self.data)

    @property
    def symbol_width_mm(self) -> float:
        return len(self.modules) * self.module_mm

    @property
    def quiet_zone_mm(self) -> float:
        return QUIET_ZONE_MODULES * self.module_mm

    @property
    def width_mm(self) -> float:
        return self.symbol_width_mm + 2 * self.quiet_zone_mm

    @property
    def text_height_mm(self) -> float:
        return TEXT_GAP_MM + pt_to_mm(self.font_size * LINE_HEIGHT) if self.text is not None else 0.0

    @property
    def total_height_mm(self) -> float:
        return self.text_height_mm + self.height_mm + TOP_CLEARANCE_MM

    def draw(self, canvas: Canvas, x: float, y: float) -> Box:
        """Draw with the bottom-left of the reserved box (quiet zones, text line) at ``(x, y)``."""
        left = x + self.quiet_zone_mm
        bars_y = y + self.text_height_mm
        canvas.saveState()
        canvas.setFillColor(black)
        for start, length in _bar_runs(self.modules):
            canvas.rect(
                (left + start * self.module_mm) * mm,
                bars_y * mm,
                length * self.module_mm * mm,
                self.height_mm * mm,
                stroke=0,
                fill=1,
            )
        if self.text is not None:
            baseline = y + pt_to_mm(self.font_size * (LINE_HEIGHT - ASCENT))
            canvas.setFont(MONO, self.font_size)
            canvas.drawString(left * mm, baseline * mm, self.text)
            if self.caption:
                canvas.setFont(SANS, CAPTION_SIZE)
                canvas.setFillColor(CAPTION_GREY)
                canvas.drawRightString((left + self.symbol_width_mm) * mm, baseline * mm, self.caption)
        canvas.restoreState()
        return Box(x, y, self.width_mm, self.total_height_mm)


def draw_code128(
    canvas: Canvas,
    x_mm: float,
    y_mm: float,
    data: str,
    *,
    module_mm: float = TARGET_MODULE_MM,
    height_mm: float = 8.0,
    text: str | None = None,
    font_size: float = DEFAULT_FONT_SIZE,
    caption: str | None = None,
) -> Box:
    """Draw ``data`` as Code 128 with the reserved box's bottom-left at ``(x_mm, y_mm)``.

    The returned Box covers both quiet zones, a 0.5 mm clearance above the bars and the text line below.
    """
    symbol = Code128Symbol(data, module_mm, height_mm, text, font_size, caption)
    return symbol.draw(canvas, x_mm, y_mm)


@dataclass(frozen=True)
class DataMatrixSymbol:
    """A DataMatrix ECC 200 symbol from its module matrix (rows top to bottom, '1' dark).

    ST-001 §6.2.3: X between 0.25 and 1 mm, quiet zone at least X (2X to 4X recommended; 2X used here).
    """

    rows: tuple[str, ...]
    module_mm: float = 0.5
    quiet_modules: int = 2

    def __post_init__(self) -> None:
        if not 0.25 - 1e-9 <= self.module_mm <= 1.0 + 1e-9:
            raise ValueError(f"DataMatrix module {self.module_mm} mm is outside 0.25-1 mm (ST-001 §6.2.3)")

    @property
    def width_mm(self) -> float:
        return (len(self.rows[0]) + 2 * self.quiet_modules) * self.module_mm

    @property
    def height_mm(self) -> float:
        return (len(self.rows) + 2 * self.quiet_modules) * self.module_mm

    def draw(self, canvas: Canvas, x: float, y: float) -> Box:
        q, m = self.quiet_modules, self.module_mm
        top = y + self.height_mm - q * m
        canvas.saveState()
        canvas.setFillColor(black)
        for r, row in enumerate(self.rows):
            row_y = top - (r + 1) * m
            for start, length in _bar_runs(row):
                canvas.rect((x + (q + start) * m) * mm, row_y * mm, length * m * mm, m * mm, stroke=0, fill=1)
        canvas.restoreState()
        return Box(x, y, self.width_mm, self.height_mm)
