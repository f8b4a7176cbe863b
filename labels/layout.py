"""Geometry and text fitting for labels, in millimetres with reportlab's origin (bottom-left of the page).

Text never leaves its space silently: ``fit_text`` shrinks a line down to a minimum size, then wraps at
spaces (never inside a word), and raises ``LabelOverflow`` naming the field when even that does not fit.
A clipped label could hide a digit of a name or an expiry, so refusing to print is the only safe answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from labels.fonts import check_printable, register_fonts

__all__ = [
    "ASCENT",
    "LINE_HEIGHT",
    "Box",
    "BoxedCheck",
    "FittedText",
    "LabelError",
    "LabelOverflow",
    "fit_text",
    "pt_to_mm",
    "text_width_mm",
]

PT_MM = 25.4 / 72
LINE_HEIGHT = 1.2
"""Line box height in em: DejaVu's accents reach ~0.95 em above the baseline and descenders ~0.24 below."""
ASCENT = 0.95
"""Baseline position below the top of a line box, in em."""
SIZE_STEP = 0.25


class LabelError(ValueError):
    """A label cannot be produced from the data given."""


class LabelOverflow(LabelError):
    """Content does not fit its space on the label stock; the message names the field."""


def pt_to_mm(points: float) -> float:
    return points * PT_MM


def text_width_mm(text: str, font: str, size: float) -> float:
    register_fonts()
    return pt_to_mm(pdfmetrics.stringWidth(text, font, size))


@dataclass(frozen=True)
class Box:
    """Axis-aligned rectangle in mm; ``(x, y)`` is the bottom-left corner."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def top(self) -> float:
        return self.y + self.h

    def contains(self, other: Box, tolerance: float = 1e-6) -> bool:
        return (
            other.x >= self.x - tolerance
            and other.y >= self.y - tolerance
            and other.right <= self.right + tolerance
            and other.top <= self.top + tolerance
        )

    def overlaps(self, other: Box, tolerance: float = 1e-6) -> bool:
        """True if the interiors intersect (touching edges do not count)."""
        return (
            self.x < other.right - tolerance
            and other.x < self.right - tolerance
            and self.y < other.top - tolerance
            and other.y < self.top - tolerance
        )

    def inset(self, d: float) -> Box:
        return Box(self.x + d, self.y + d, self.w - 2 * d, self.h - 2 * d)


@dataclass(frozen=True)
class FittedText:
    """Text broken into lines at one font size, ready to draw."""

    lines: tuple[str, ...]
    font: str
    size: float

    @property
    def line_height_mm(self) -> float:
        return pt_to_mm(self.size * LINE_HEIGHT)

    @property
    def height_mm(self) -> float:
        return self.line_height_mm * len(self.lines)

    @property
    def width_mm(self) -> float:
        return max(text_width_mm(line, self.font, self.size) for line in self.lines)

    def draw(self, canvas: Canvas, x: float, top: float, *, align: str = "left", width: float = 0.0) -> None:
        """Draw with the first line's box starting at ``top``; ``width`` is needed for centre/right."""
        canvas.setFont(self.font, self.size)
        for i, line in enumerate(self.lines):
            baseline = top - i * self.line_height_mm - pt_to_mm(self.size * ASCENT)
            if align == "left":
                canvas.drawString(x * mm, baseline * mm, line)
            elif align == "right":
                canvas.drawRightString((x + width) * mm, baseline * mm, line)
            else:
                canvas.drawCentredString((x + width / 2) * mm, baseline * mm, line)


def _sizes(max_size: float, min_size: float) -> list[float]:
    sizes = []
    size = max_size
    while size > min_size + 1e-9:
        sizes.append(size)
        size -= SIZE_STEP
    sizes.append(min_size)
    return sizes


def _wrap(text: str, font: str, size: float, width: float) -> list[str] | None:
    """Greedy word wrap at spaces; explicit newlines are kept as line breaks. None if a word alone is wider
    than ``width``: a word is never split (a broken name or address could be misread as two). No-break
    spaces (U+00A0) keep a number with its power of ten, or a caption with its value, on one line."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            if not word:
                continue
            if text_width_mm(word, font, size) > width:
                return None
            candidate = f"{current} {word}" if current else word
            if text_width_mm(candidate, font, size) <= width:
                current = candidate
                continue
            lines.append(current)
            current = word
        if current:
            lines.append(current)
    return lines


def fit_text(
    text: str,
    font: str,
    max_width_mm: float,
    max_size: float,
    min_size: float,
    *,
    max_lines: int = 1,
    field: str = "text",
) -> FittedText:
    """Fit ``text`` into ``max_width_mm``: one line shrunk from ``max_size`` to ``min_size`` if possible,
    else wrapped at spaces into at most ``max_lines`` lines at the largest size that allows it. A word
    wider than the line shrinks the text; it is never split.

    Raises LabelOverflow naming ``field`` if it does not fit; the text is never truncated.
    """
    if min_size > max_size:
        max_size = min_size
    check_printable(text, font, field)
    if not text.strip():
        raise LabelError(f"{field}: is empty")
    if "\n" not in text:
        single = text.strip()
        for size in _sizes(max_size, min_size):
            if text_width_mm(single, font, size) <= max_width_mm:
                return FittedText((single,), font, size)
    if max_lines > 1:
        for size in _sizes(max_size, min_size):
            lines = _wrap(text, font, size, max_width_mm)
            if lines is not None and len(lines) <= max_lines:
                return FittedText(tuple(lines), font, size)
    widest = max(re.split(r"[ \n]+", text.strip()), key=lambda word: text_width_mm(word, font, min_size))
    if text_width_mm(widest, font, min_size) > max_width_mm:
        raise LabelOverflow(
            f"{field}: the word {widest!r} is wider than a line of {max_width_mm:.1f} mm at {min_size:g} pt"
            " (words are never split)"
        )
    raise LabelOverflow(
        f"{field}: {text!r} does not fit in {max_lines} line(s) of {max_width_mm:.1f} mm "
        f"at {min_size:g} pt or more"
    )


@dataclass(frozen=True)
class BoxedCheck:
    """An eye-readable identifier followed by its check character printed inside a drawn square.

    ICCBBA ST-001 §7.5 prints the keyboard-entry check character boxed beside the DIN so that nobody
    mistakes it for part of the number; the chain of identity identifier follows the same convention here.
    """

    text: str
    check: str
    font: str
    size: float
    check_font: str = ""
    flags: str = ""
    """DIN flag characters to print small and rotated 90° clockwise (ST-001 §7.4.1); "" prints none."""

    GAP = 0.8  # mm between the text, the flags and the box

    @property
    def _check_font(self) -> str:
        return self.check_font or self.font

    @property
    def _flag_size(self) -> float:
        return self.size * 0.55

    @property
    def side_mm(self) -> float:
        """Side of the square: the line height of the text, so the box sits on the same line."""
        return pt_to_mm(self.size * LINE_HEIGHT)

    @property
    def _flags_w(self) -> float:
        # rotated text: its line height becomes its width
        return pt_to_mm(self._flag_size * LINE_HEIGHT) + self.GAP if self.flags else 0.0

    @property
    def width_mm(self) -> float:
        return text_width_mm(self.text, self.font, self.size) + self.GAP + self._flags_w + self.side_mm

    @property
    def height_mm(self) -> float:
        return self.side_mm

    def draw(self, canvas: Canvas, x: float, y: float) -> Box:
        """Draw with the bottom-left corner at ``(x, y)``; return the box used."""
        h = self.side_mm
        baseline = y + h - pt_to_mm(self.size * ASCENT)
        canvas.setFont(self.font, self.size)
        canvas.drawString(x * mm, baseline * mm, self.text)
        cursor = x + text_width_mm(self.text, self.font, self.size) + self.GAP
        if self.flags:
            canvas.saveState()
            fh = pt_to_mm(self._flag_size * LINE_HEIGHT)
            # rotate 90° clockwise about the flag cell's top-left corner so the text reads downwards
            canvas.translate(cursor * mm, (y + h) * mm)
            canvas.rotate(-90)
            canvas.setFont(self.font, self._flag_size)
            canvas.drawString(0, -pt_to_mm(self._flag_size * ASCENT) * mm, self.flags)
            canvas.restoreState()
            cursor += fh + self.GAP
        canvas.saveState()
        canvas.setLineWidth(0.6)
        canvas.rect(cursor * mm, y * mm, h * mm, h * mm, stroke=1, fill=0)
        canvas.setFont(self._check_font, self.size * 0.85)
        check_baseline = y + (h - pt_to_mm(self.size * 0.85 * 0.73)) / 2
        canvas.drawCentredString((cursor + h / 2) * mm, check_baseline * mm, self.check)
        canvas.restoreState()
        return Box(x, y, self.width_mm, h)
