"""Culture expansion arithmetic for the batch page and the batch record. Pure: no database, no web.

Population doublings (PD) per passage are log2(harvested / seeded), from total viable cells. A harvest
smaller than the seeding gives a negative PD: that is real data (the culture lost cells), shown, not hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


@dataclass(frozen=True)
class Passage:
    """One passage as recorded at the bench: P0 is the primary culture, then P1, P2, …"""

    number: int
    seeded_cells: float
    seeded_at: datetime  # timezone-aware (UTC)
    harvested_cells: float  # total viable cells harvested
    harvested_at: datetime
    viability_percent: float

    @property
    def label(self) -> str:
        return f"P{self.number}"


@dataclass(frozen=True)
class GrowthRow:
    """A passage with its computed growth figures, as the batch page and the batch record show them."""

    number: int
    seeded_cells: float
    seeded_at: datetime
    harvested_cells: float
    harvested_at: datetime
    viability_percent: float
    population_doublings: float
    cumulative_doublings: float
    doubling_time_hours: float | None  # None when the passage did not grow (PD <= 0)
    days_in_culture: float  # from the first passage's seeding to this passage's harvest
    cumulative_cells: float  # theoretical yield had every harvested cell been kept and reseeded

    @property
    def label(self) -> str:
        return f"P{self.number}"


def _require_positive(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a positive, finite number of cells, got {value!r}")
    return number


def population_doublings(seeded: float, harvested: float) -> float:
    """log2(harvested / seeded). Negative when fewer cells were harvested than seeded (allowed: real data)."""
    s = _require_positive(seeded, "seeded cells")
    h = _require_positive(harvested, "harvested cells")
    return math.log2(h / s)


def doubling_time_hours(seeded: float, harvested: float, hours: float) -> float | None:
    """Hours per population doubling, or None when PD <= 0.

    With no net growth the culture never doubled, so a doubling time is undefined: a negative or infinite
    "doubling time" would mislead on the batch page, hence None (shown as "—").
    """
    duration = float(hours)
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"time in culture must be a positive, finite number of hours, got {hours!r}")
    pd = population_doublings(seeded, harvested)
    if pd <= 0:
        return None
    return duration / pd


def _validate(passage: Passage) -> None:
    name = f"passage P{passage.number}"
    for field in ("seeded_at", "harvested_at"):
        moment = getattr(passage, field)
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise ValueError(f"{name}: {field} must be a timezone-aware datetime (UTC), got {moment!r}")
    if passage.harvested_at <= passage.seeded_at:
        raise ValueError(
            f"{name}: harvested at {passage.harvested_at.isoformat()}, which is not after it was seeded "
            f"at {passage.seeded_at.isoformat()}"
        )
    viability = float(passage.viability_percent)
    if not (math.isfinite(viability) and 0 <= viability <= 100):
        raise ValueError(f"{name}: viability must be between 0 and 100 %, got {passage.viability_percent!r}")


def growth_table(passages: Sequence[Passage]) -> list[GrowthRow]:
    """Rows in passage order with PD, cumulative PD, doubling time, days in culture and cumulative cells.

    Raises ValueError naming the passage for duplicate numbers, a harvest not after its seeding, naive
    datetimes, impossible viability, or non-positive / non-finite cell counts.
    """
    numbers = [p.number for p in passages]
    for p in passages:
        if isinstance(p.number, bool) or not isinstance(p.number, int) or p.number < 0:
            raise ValueError(f"passage number must be an integer 0 or above, got {p.number!r}")
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise ValueError("duplicate passage numbers: " + ", ".join(f"P{n}" for n in duplicates))
    ordered = sorted(passages, key=lambda p: p.number)
    rows: list[GrowthRow] = []
    if not ordered:
        return rows
    for p in ordered:
        _validate(p)
    start = ordered[0].seeded_at
    cumulative_pd = 0.0
    cumulative_cells = float(ordered[0].seeded_cells)
    for p in ordered:
        try:
            pd = population_doublings(p.seeded_cells, p.harvested_cells)
        except ValueError as exc:
            raise ValueError(f"passage P{p.number}: {exc}") from None
        hours = (p.harvested_at - p.seeded_at).total_seconds() / 3600
        cumulative_pd += pd
        # The ratio first: multiplying counts of 10^9 together first could overflow for long expansions.
        cumulative_cells *= p.harvested_cells / p.seeded_cells
        rows.append(
            GrowthRow(
                number=p.number,
                seeded_cells=p.seeded_cells,
                seeded_at=p.seeded_at,
                harvested_cells=p.harvested_cells,
                harvested_at=p.harvested_at,
                viability_percent=p.viability_percent,
                population_doublings=pd,
                cumulative_doublings=cumulative_pd,
                doubling_time_hours=doubling_time_hours(p.seeded_cells, p.harvested_cells, hours),
                days_in_culture=(p.harvested_at - start).total_seconds() / 86400,
                cumulative_cells=cumulative_cells,
            )
        )
    return rows


def format_cells(n: float) -> str:
    """Cell counts as the lab writes them: three significant figures, "1.02 × 10⁷" (superscript exponent).

    Counts below 1000 are written plainly ("512", "0"). Plain spaces around "×"; the page keeps the value on
    one line with CSS if it needs to. Negative or non-finite counts raise ValueError.
    """
    value = float(n)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a cell count must be a finite number, 0 or above, got {n!r}")
    mantissa, exponent_text = f"{value:.2e}".split("e")  # rounding first: 999.6 becomes 1.00e+03
    exponent = int(exponent_text)
    if exponent < 3:
        return f"{float(f'{value:.3g}'):g}"
    return f"{mantissa} × 10{str(exponent).translate(_SUPERSCRIPT)}"


# ---------------------------------------------------------------------------------------------- growth curve

_FONT = 'font-family="sans-serif"'
_INK = "#222222"
_GRID = "#dddddd"
_LINE = "#1f5fa8"


def _num(value: float) -> str:
    """Coordinates with at most two decimals, no trailing zeros, never "-0": stable, readable markup."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _ticks(low: float, high: float, target: int) -> tuple[list[float], int, float, float]:
    """Round ticks (1, 2 or 5 × 10^k) covering [low, high]: the ticks, their decimals, the padded domain."""
    if high - low <= 0:
        high = low + 1
    raw = (high - low) / max(target, 1)
    exponent = math.floor(math.log10(raw))
    fraction = raw / 10**exponent
    nice = 1 if fraction <= 1 else 2 if fraction <= 2 else 5 if fraction <= 5 else 10
    if nice == 10:
        nice, exponent = 1, exponent + 1
    step = nice * 10.0**exponent
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    decimals = max(0, -exponent)
    ticks = [round(k * step, decimals) for k in range(first, last + 1)]
    return ticks, decimals, first * step, last * step


def _label(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _open_svg(width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]


def growth_curve_svg(
    rows: Sequence[GrowthRow],
    *,
    width: int = 640,
    height: int = 320,
    title: str = "Cumulative population doublings",
) -> str:
    """Cumulative PD against days in culture as self-contained SVG: no script, no style sheet, no links.

    The curve starts at the origin (day 0, PD 0) and has one circle per passage at its harvest, labelled P0,
    P1, … The <desc> repeats the data as text for screen readers. Same rows, same string.
    """
    if width < 240 or height < 160:
        raise ValueError(f"the growth curve needs at least 240 × 160 pixels, got {width} × {height}")
    ordered = sorted(rows, key=lambda r: r.number)
    if not ordered:
        parts = _open_svg(width, height, title, "No passages recorded yet.")
        parts.append(
            f'<text x="{_num(width / 2)}" y="24" text-anchor="middle" {_FONT} font-size="15" '
            f'font-weight="bold" fill="{_INK}">{escape(title)}</text>'
        )
        parts.append(
            f'<text x="{_num(width / 2)}" y="{_num(height / 2)}" text-anchor="middle" {_FONT} '
            f'font-size="14" fill="#666666">No passages recorded yet</text>'
        )
        parts.append("</svg>")
        return "\n".join(parts)

    last = ordered[-1]
    desc = (
        f"{len(ordered)} passage{'s' if len(ordered) != 1 else ''} over {last.days_in_culture:.1f} days in "
        f"culture, {last.cumulative_doublings:.2f} cumulative population doublings. "
        + "; ".join(
            f"{r.label} harvested on day {r.days_in_culture:.1f}: {r.cumulative_doublings:.2f} cumulative "
            f"doublings"
            for r in ordered
        )
        + "."
    )

    left, right, top, bottom = 64.0, 24.0, 40.0, 52.0
    plot_w, plot_h = width - left - right, height - top - bottom
    days = [r.days_in_culture for r in ordered]
    pds = [r.cumulative_doublings for r in ordered]
    # Axes span at least one day and one doubling: finer ticks than that only print noise.
    x_ticks, x_dec, x_lo, x_hi = _ticks(min(0.0, *days), max(1.0, *days), max(2, int(plot_w // 90)))
    y_ticks, y_dec, y_lo, y_hi = _ticks(min(0.0, *pds), max(1.0, *pds), max(2, int(plot_h // 40)))

    def sx(day: float) -> float:
        return left + (day - x_lo) / (x_hi - x_lo) * plot_w

    def sy(pd: float) -> float:  # SVG y grows downward: more doublings, smaller y
        return top + plot_h - (pd - y_lo) / (y_hi - y_lo) * plot_h

    x0, x1, y0, y1 = _num(left), _num(left + plot_w), _num(top), _num(top + plot_h)
    parts = _open_svg(width, height, title, desc)
    parts.append(
        f'<text x="{_num(width / 2)}" y="24" text-anchor="middle" {_FONT} font-size="15" font-weight="bold" '
        f'fill="{_INK}">{escape(title)}</text>'
    )
    for tick in y_ticks:
        y = _num(sy(tick))
        colour = "#999999" if tick == 0 and y_lo < 0 else _GRID  # the zero line matters once PD went negative
        parts.append(f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="{colour}" stroke-width="1"/>')
        parts.append(
            f'<line x1="{_num(left - 5)}" y1="{y}" x2="{x0}" y2="{y}" stroke="{_INK}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_num(left - 8)}" y="{_num(sy(tick) + 4)}" text-anchor="end" {_FONT} font-size="11" '
            f'fill="{_INK}">{_label(tick, y_dec)}</text>'
        )
    for tick in x_ticks:
        x = _num(sx(tick))
        parts.append(
            f'<line x1="{x}" y1="{y1}" x2="{x}" y2="{_num(top + plot_h + 5)}" stroke="{_INK}" '
            f'stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{x}" y="{_num(top + plot_h + 18)}" text-anchor="middle" {_FONT} font-size="11" '
            f'fill="{_INK}">{_label(tick, x_dec)}</text>'
        )
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="{_INK}" stroke-width="1.5"/>')
    parts.append(f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="{_INK}" stroke-width="1.5"/>')
    parts.append(
        f'<text x="{_num(left + plot_w / 2)}" y="{_num(height - 10)}" text-anchor="middle" {_FONT} '
        f'font-size="12" fill="{_INK}">Days in culture</text>'
    )
    y_mid = _num(top + plot_h / 2)
    parts.append(
        f'<text x="16" y="{y_mid}" transform="rotate(-90 16 {y_mid})" text-anchor="middle" {_FONT} '
        f'font-size="12" fill="{_INK}">Cumulative population doublings</text>'
    )
    points = " ".join(f"{_num(sx(d))},{_num(sy(p))}" for d, p in [(0.0, 0.0), *zip(days, pds, strict=True)])
    parts.append(f'<polyline points="{points}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
    for row in ordered:
        cx, cy = sx(row.days_in_culture), sy(row.cumulative_doublings)
        tooltip = (
            f"{row.label}: day {row.days_in_culture:.1f}, PD {row.population_doublings:.2f}, "
            f"cumulative PD {row.cumulative_doublings:.2f}"
        )
        parts.append(
            f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="4" fill="{_LINE}" stroke="#ffffff" stroke-width="1">'
            f"<title>{escape(tooltip)}</title></circle>"
        )
        parts.append(
            f'<text x="{_num(cx)}" y="{_num(cy - 9)}" text-anchor="middle" {_FONT} font-size="11" '
            f'fill="{_INK}">{escape(row.label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
