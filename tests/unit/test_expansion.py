"""Culture expansion arithmetic: population doublings, the growth table, cell counts and the growth curve."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labels.numbers import format_cells
from mfg.process.expansion import (
    GrowthRow,
    Passage,
    doubling_time_hours,
    growth_table,
    population_doublings,
)
from mfg.web.charts import growth_curve_svg

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _at(days: float) -> datetime:
    return START + timedelta(days=days)


def _three_passages() -> list[Passage]:
    # P0: 1e6 -> 8e6 over 96 h (days 0 -> 4):     PD = log2(8) = 3,   DT = 96 / 3 = 32 h
    # P1: 2e6 -> 8e6 over 72 h (days 4 -> 7):     PD = log2(4) = 2,   DT = 72 / 2 = 36 h
    # P2: 1e6 -> 2e7 over 108 h (days 7 -> 11.5): PD = log2(20) = 4.321928…, DT = 108 / 4.321928 = 24.98885 h
    # Given out of order on purpose: the table sorts by passage number.
    return [
        Passage(2, 1.0e6, _at(7), 2.0e7, _at(11.5), 93.0),
        Passage(0, 1.0e6, _at(0), 8.0e6, _at(4), 95.0),
        Passage(1, 2.0e6, _at(4), 8.0e6, _at(7), 94.0),
    ]


# ------------------------------------------------------------------------------------------ doublings, time


def test_eightfold_growth_is_three_doublings_in_32_hours_over_96_hours() -> None:
    # 8.0e6 / 1.0e6 = 8 = 2^3 -> PD 3 exactly; 96 h / 3 = 32 h.
    assert population_doublings(1.0e6, 8.0e6) == 3.0
    assert doubling_time_hours(1.0e6, 8.0e6, 96) == 32.0


def test_fortyfold_growth() -> None:
    # 1.0e7 / 2.5e5 = 40; log2(40) = 5.321928094887363
    assert population_doublings(2.5e5, 1.0e7) == pytest.approx(5.321928094887363, rel=1e-12)


@pytest.mark.parametrize("seeded, harvested", [(4.0e6, 1.0e6), (1.0e6, 1.0e6)])
def test_no_growth_has_no_doubling_time(seeded: float, harvested: float) -> None:
    # 1e6 / 4e6 = 1/4 -> PD = -2 (a real, reportable loss); equal counts -> PD 0. Neither has a doubling time.
    assert population_doublings(seeded, harvested) == math.log2(harvested / seeded)
    assert doubling_time_hours(seeded, harvested, 72) is None


@pytest.mark.parametrize("bad", [0, -1.0e6, math.nan, math.inf])
@pytest.mark.parametrize("which", ["seeded", "harvested"])
def test_cell_counts_must_be_positive_and_finite(bad: float, which: str) -> None:
    args = {"seeded": 1.0e6, "harvested": 8.0e6, which: bad}
    with pytest.raises(ValueError, match=f"{which} cells must be a positive, finite number"):
        population_doublings(**args)
    with pytest.raises(ValueError, match=f"{which} cells"):
        doubling_time_hours(**args, hours=96)


@pytest.mark.parametrize("hours", [0, -5, math.nan])
def test_time_in_culture_must_be_positive(hours: float) -> None:
    with pytest.raises(ValueError, match="positive, finite number of hours"):
        doubling_time_hours(1.0e6, 8.0e6, hours)


# --------------------------------------------------------------------------------------------- growth table


def test_three_passage_table_by_hand() -> None:
    p0, p1, p2 = growth_table(_three_passages())
    assert [r.number for r in (p0, p1, p2)] == [0, 1, 2]
    assert [r.label for r in (p0, p1, p2)] == ["P0", "P1", "P2"]
    assert (p0.population_doublings, p1.population_doublings) == (3.0, 2.0)
    assert p2.population_doublings == pytest.approx(4.321928094887363, rel=1e-12)
    # cumulative PD: 3 -> 3 + 2 = 5 -> 5 + 4.321928 = 9.321928
    assert (p0.cumulative_doublings, p1.cumulative_doublings) == (3.0, 5.0)
    assert p2.cumulative_doublings == pytest.approx(9.321928094887363, rel=1e-12)
    assert (p0.doubling_time_hours, p1.doubling_time_hours) == (32.0, 36.0)
    assert p2.doubling_time_hours == pytest.approx(24.98884702125399, rel=1e-12)
    # days from P0's seeding to each harvest: 4, 7, 11.5
    assert [r.days_in_culture for r in (p0, p1, p2)] == [4.0, 7.0, 11.5]
    # cumulative cells: 1e6 × 8 = 8e6; × 4 = 3.2e7; × 20 = 6.4e8 (had every cell been kept)
    assert [r.cumulative_cells for r in (p0, p1, p2)] == [8.0e6, 3.2e7, 6.4e8]
    # the passage fields are carried through
    assert (p2.seeded_cells, p2.harvested_cells, p2.viability_percent) == (1.0e6, 2.0e7, 93.0)
    assert (p2.seeded_at, p2.harvested_at) == (_at(7), _at(11.5))


def test_a_billion_cells_in_about_three_weeks() -> None:
    # How the lab reports it: five passages of 4-fold growth (PD 2 each), 4+4+4+4+5 = 21 days.
    # Cumulative PD = 5 × 2 = 10; cumulative cells = 1e6 × 4^5 = 1.024e9 -> "1.02 × 10⁹".
    days = [0, 4, 8, 12, 16, 21]
    passages = [Passage(n, 1.0e6, _at(days[n]), 4.0e6, _at(days[n + 1]), 95.0) for n in range(5)]
    rows = growth_table(passages)
    assert rows[-1].days_in_culture == 21.0
    assert rows[-1].cumulative_doublings == 10.0
    assert rows[-1].cumulative_cells == 1.024e9
    assert format_cells(rows[-1].cumulative_cells) == "1.02 × 10⁹"


def test_empty_table() -> None:
    assert growth_table([]) == []


def test_a_loss_is_kept_in_the_table() -> None:
    # 1e6 -> 5e5: PD = log2(0.5) = -1; cumulative -1; no doubling time; cumulative cells 5e5.
    (row,) = growth_table([Passage(0, 1.0e6, _at(0), 5.0e5, _at(3), 80.0)])
    assert row.population_doublings == -1.0
    assert row.cumulative_doublings == -1.0
    assert row.doubling_time_hours is None
    assert row.cumulative_cells == 5.0e5


def test_duplicate_passage_numbers_are_refused() -> None:
    passages = [*_three_passages(), Passage(1, 1.0e6, _at(12), 2.0e6, _at(14), 90.0)]
    with pytest.raises(ValueError, match="duplicate passage numbers: P1"):
        growth_table(passages)


@pytest.mark.parametrize("harvest_day", [3.0, 4.0])
def test_harvest_not_after_seeding_is_refused(harvest_day: float) -> None:
    passages = [*_three_passages()[1:], Passage(2, 1.0e6, _at(7), 2.0e7, _at(harvest_day), 93.0)]
    with pytest.raises(ValueError, match="passage P2: harvested at .* not after it was seeded"):
        growth_table(passages)


@pytest.mark.parametrize("seeded, harvested", [(0.0, 8.0e6), (1.0e6, -8.0e6), (math.nan, 8.0e6)])
def test_bad_counts_in_the_table_name_the_passage(seeded: float, harvested: float) -> None:
    with pytest.raises(ValueError, match="passage P3: .*cells must be a positive, finite number"):
        growth_table([Passage(3, seeded, _at(0), harvested, _at(4), 95.0)])


def test_naive_datetimes_and_impossible_viability_are_refused() -> None:
    naive = datetime(2026, 3, 2, 9, 0)
    with pytest.raises(ValueError, match="passage P0: seeded_at must be a timezone-aware"):
        growth_table([Passage(0, 1.0e6, naive, 8.0e6, _at(4), 95.0)])
    with pytest.raises(ValueError, match="passage P0: viability must be between 0 and 100"):
        growth_table([Passage(0, 1.0e6, _at(0), 8.0e6, _at(4), 105.0)])
    with pytest.raises(ValueError, match="passage number must be an integer 0 or above"):
        growth_table([Passage(-1, 1.0e6, _at(0), 8.0e6, _at(4), 95.0)])


# ------------------------------------------------------------------------------------------------ cells


@pytest.mark.parametrize(
    "n, text",
    [
        (1.02e7, "1.02 × 10⁷"),
        (6.4e8, "6.40 × 10⁸"),
        (1.0e9, "1.00 × 10⁹"),
        (1.5e10, "1.50 × 10¹⁰"),
        (9.996e6, "1.00 × 10⁷"),  # rounds up into the next power of ten
        (999.6, "1.00 × 10³"),
        (1234, "1.23 × 10³"),
        (512, "512"),
        (12.5, "12.5"),
        (0, "0"),
    ],
)
def test_format_cells(n: float, text: str) -> None:
    assert format_cells(n) == text


@pytest.mark.parametrize(
    ("bad", "shown"), [(-1.0, "-1"), (-5e7, "-5e+07"), (math.nan, "nan"), (math.inf, "inf")]
)
def test_an_impossible_count_is_shown_as_recorded_not_refused(bad: float, shown: str) -> None:
    # A negative cells-per-vial once made the batch page fail for good (a 500 on every later visit).
    assert format_cells(bad) == shown


# ------------------------------------------------------------------------------------------ growth curve


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root[0].tag == f"{SVG}title" and root[1].tag == f"{SVG}desc"
    return root


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_growth_curve_is_self_contained_accessible_svg() -> None:
    svg = growth_curve_svg(growth_table(_three_passages()))
    root = _parse(svg)
    assert "<script" not in svg and 'href="http' not in svg and "<style" not in svg and "@import" not in svg
    assert "href" not in svg
    circles = list(root.iter(f"{SVG}circle"))
    assert len(circles) == 3
    texts = _texts(root)
    assert {"P0", "P1", "P2", "Days in culture", "Cumulative population doublings"} <= set(texts)
    assert "P2 harvested on day 11.5: 9.32 cumulative doublings" in (root[1].text or "")
    # Numbers in the markup are short: no float noise such as 0.30000000000000004.
    assert not re.search(r"\d\.\d{3,}", svg)


def test_growth_curve_goes_up_for_a_growing_culture() -> None:
    rows = growth_table(_three_passages())
    root = _parse(growth_curve_svg(rows))
    ys = [float(c.get("cy", "nan")) for c in root.iter(f"{SVG}circle")]
    xs = [float(c.get("cx", "nan")) for c in root.iter(f"{SVG}circle")]
    # SVG y grows downward: the highest cumulative PD (P2) has the smallest y; later harvests lie right.
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == 3
    assert xs == sorted(xs) and len(set(xs)) == 3
    # The line starts at the origin (day 0, PD 0), below and left of P0.
    polyline = next(root.iter(f"{SVG}polyline"))
    points = [tuple(map(float, p.split(","))) for p in (polyline.get("points") or "").split()]
    assert len(points) == 4
    assert points[0][0] < xs[0] and points[0][1] > ys[0]


def test_growth_curve_tick_labels_are_round() -> None:
    root = _parse(growth_curve_svg(growth_table(_three_passages())))
    numbers = [t for t in _texts(root) if re.fullmatch(r"-?\d+(\.\d+)?", t)]
    # y: 0..10 by 2 (cumulative PD 9.32); x: 0..12 by 2 (11.5 days)
    assert numbers == ["0", "2", "4", "6", "8", "10", "0", "2", "4", "6", "8", "10", "12"]


def test_growth_curve_escapes_text() -> None:
    svg = growth_curve_svg(growth_table(_three_passages()), title='Batch <B&1> "x"')
    root = _parse(svg)
    assert root[0].text == 'Batch <B&1> "x"'
    assert "<B&1>" not in svg and "&lt;B&amp;1&gt;" in svg


def test_growth_curve_shows_a_loss_below_zero() -> None:
    rows = growth_table(
        [
            Passage(0, 1.0e6, _at(0), 4.0e6, _at(4), 95.0),  # PD 2
            Passage(1, 2.0e6, _at(4), 2.5e5, _at(7), 60.0),  # PD log2(1/8) = -3 -> cumulative -1
        ]
    )
    root = _parse(growth_curve_svg(rows))
    ys = [float(c.get("cy", "nan")) for c in root.iter(f"{SVG}circle")]
    assert ys[1] > ys[0]
    assert "-1" in _texts(root)


def test_empty_growth_curve_says_so() -> None:
    svg = growth_curve_svg([])
    root = _parse(svg)
    assert "No passages recorded yet" in _texts(root)
    assert not list(root.iter(f"{SVG}circle"))


def test_growth_curve_is_deterministic() -> None:
    rows = growth_table(_three_passages())
    assert growth_curve_svg(rows) == growth_curve_svg(list(reversed(rows)))


def test_growth_curve_refuses_a_tiny_canvas() -> None:
    with pytest.raises(ValueError, match="at least 240"):
        growth_curve_svg([], width=100)


# ------------------------------------------------------------------------------------------- properties

_counts = st.floats(min_value=1.0e3, max_value=1.0e10, allow_nan=False, allow_infinity=False)


def _passages(pairs: list[tuple[float, float]], hours: list[int]) -> list[Passage]:
    passages, t = [], START
    for n, ((seeded, harvested), h) in enumerate(zip(pairs, hours, strict=False)):
        passages.append(Passage(n, seeded, t, harvested, t + timedelta(hours=h), 90.0))
        t += timedelta(hours=h)
    return passages


_tables = st.lists(st.tuples(_counts, _counts), min_size=1, max_size=8).flatmap(
    lambda pairs: st.tuples(
        st.just(pairs), st.lists(st.integers(1, 400), min_size=len(pairs), max_size=len(pairs))
    )
)


@given(_tables)
def test_cumulative_doublings_are_the_sum_and_undo_to_the_harvest(table: tuple[list, list[int]]) -> None:
    pairs, hours = table
    rows = growth_table(_passages(pairs, hours))
    pds = [r.population_doublings for r in rows]
    assert rows[-1].cumulative_doublings == pytest.approx(math.fsum(pds), rel=1e-9, abs=1e-9)
    for row, (seeded, harvested) in zip(rows, pairs, strict=True):
        assert 2**row.population_doublings * seeded == pytest.approx(harvested, rel=1e-9)
        assert (row.doubling_time_hours is None) == (row.population_doublings <= 0)
    # cumulative cells = first seeding × 2^(cumulative PD)
    expected_cells = pairs[0][0] * 2 ** rows[-1].cumulative_doublings
    assert rows[-1].cumulative_cells == pytest.approx(expected_cells, rel=1e-6)
    assert rows[-1].days_in_culture == pytest.approx(sum(hours) / 24)


@given(_tables)
def test_growth_curve_is_well_formed_for_any_table(table: tuple[list, list[int]]) -> None:
    rows: list[GrowthRow] = growth_table(_passages(*table))
    svg = growth_curve_svg(rows)
    root = _parse(svg)
    assert len(list(root.iter(f"{SVG}circle"))) == len(rows)
    assert not re.search(r"\d\.\d{3,}|nan|inf", svg)
    assert svg == growth_curve_svg(rows)
    # every point lies inside the canvas
    for c in root.iter(f"{SVG}circle"):
        assert 0 <= float(c.get("cx", "-1")) <= 640 and 0 <= float(c.get("cy", "-1")) <= 320


@given(st.floats(min_value=0, max_value=1.0e15, allow_nan=False))
def test_format_cells_reads_back_within_rounding(n: float) -> None:
    text = format_cells(n)
    superscripts = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
    if " × 10" in text:
        mantissa, exponent = text.split(" × 10")
        value = float(mantissa) * 10 ** int(exponent.translate(superscripts))
        assert 1.0 <= float(mantissa) < 10.0
    else:
        value = float(text)
    assert value == pytest.approx(n, rel=5e-3, abs=5e-3)
