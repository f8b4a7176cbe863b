"""Culture expansion arithmetic for the batch page and the batch record. Pure: no database, no web.

Population doublings (PD) per passage are log2(harvested / seeded), from total viable cells. A harvest
smaller than the seeding gives a negative PD: that is real data (the culture lost cells), shown, not hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


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
