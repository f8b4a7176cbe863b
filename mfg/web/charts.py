"""Charts drawn by the web layer from numbers the domain computes: the growth curve of a batch's expansion
(cumulative population doublings against days in culture), as a self-contained SVG with no script.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from mfg.process.expansion import GrowthRow

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
