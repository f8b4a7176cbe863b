"""Fill arithmetic: dose D and replicate viable counts in, suspension + lactated Ringer's volumes out.

Every hand case writes the arithmetic out in the comment, with the defaults of the AAMSC study unless said
otherwise: min 5.0 mL, max 10.0 mL, 0.1 mL steps, count CV limit 10 %, planning tolerance +-5 %, smallest
measurable volume 0.5 mL, no overage.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mfg.dosing import DoseRefused, FillPlan, plan_fill
from mfg.dosing.rules import drawn_volume_range
from mfg.errors import ValidationRefused

REASONS = {"parameter", "dose", "too_few_counts", "bad_count", "count_cv", "too_dilute", "too_concentrated"}
OTHER_STUDY = {"min_volume_ml": 2.0, "max_volume_ml": 20.0, "volume_step_ml": 0.05}


def _volumes(plan: FillPlan) -> tuple[float, float, float]:
    return plan.suspension_ml, plan.diluent_ml, plan.final_volume_ml


def _refusal(dose: float, counts: list[float], **parameters: float) -> DoseRefused:
    with pytest.raises(DoseRefused) as caught:
        plan_fill(dose, counts, **parameters)
    assert caught.value.reason in REASONS
    return caught.value


# --------------------------------------------------------------------------------------------- hand cases


def test_dose_equal_to_the_minimum_volume() -> None:
    # C = (1e7 + 1e7 + 1e7) / 3 = 1e7 /mL, CV 0 %; D/C = 5e7 / 1e7 = 5.0 mL -> 5.0 mL
    # delivered 1e7 x 5.0 = 5e7 (+0 %); final = max(5.0, 5.0) = 5.0 mL; diluent 5.0 - 5.0 = 0.0 mL
    plan = plan_fill(5e7, [1.0e7, 1.0e7, 1.0e7])
    assert _volumes(plan) == (5.0, 0.0, 5.0)
    assert plan.expected_dose_cells == 5e7
    assert plan.mean_concentration_per_ml == 1e7
    assert plan.count_cv == 0.0
    assert plan.deviation_fraction == 0.0


def test_small_suspension_is_made_up_to_the_minimum_volume() -> None:
    # C = 2e7 /mL; D/C = 5e7 / 2e7 = 2.5 mL; final = max(5.0, 2.5) = 5.0 mL; diluent = 5.0 - 2.5 = 2.5 mL
    plan = plan_fill(5e7, [2.0e7, 2.0e7])
    assert _volumes(plan) == (2.5, 2.5, 5.0)
    assert plan.expected_dose_cells == 5e7


def test_large_suspension_needs_no_diluent() -> None:
    # C = 1.25e7 /mL; D/C = 1e8 / 1.25e7 = 8.0 mL; final = max(5.0, 8.0) = 8.0 mL; diluent 0.0 mL
    plan = plan_fill(1e8, [1.25e7, 1.25e7])
    assert _volumes(plan) == (8.0, 0.0, 8.0)
    assert plan.expected_dose_cells == 1e8


def test_rounding_to_the_step_costs_a_little_dose() -> None:
    # C = 3e6 /mL; D/C = 1e7 / 3e6 = 3.333.. mL -> 3.3 mL
    # delivered 3e6 x 3.3 = 9.9e6 = 1e7 x (1 - 0.01): -1 %, inside +-10 %
    # final = max(5.0, 3.3) = 5.0 mL; diluent = 5.0 - 3.3 = 1.7 mL
    plan = plan_fill(1e7, [3e6, 3e6])
    assert _volumes(plan) == (3.3, 1.7, 5.0)
    assert plan.expected_dose_cells == pytest.approx(9.9e6, rel=1e-12)
    assert plan.deviation_fraction == pytest.approx(-0.01, rel=1e-9)


def test_mean_and_sample_cv_of_three_counts_and_the_words_for_the_screen() -> None:
    # C = (1.02e7 + 1.00e7 + 1.04e7) / 3 = 3.06e7 / 3 = 1.02e7 /mL
    # deviations 0, -2e5, +2e5; squares 0 + 4e10 + 4e10 = 8e10; / (n - 1 = 2) = 4e10; sd = 2e5
    # CV = 2e5 / 1.02e7 = 1.96 % -> shown 2.0 %
    # D/C = 5e7 / 1.02e7 = 4.9019.. mL -> 4.9 mL; delivered 1.02e7 x 4.9 = 4.998e7 (-0.04 %)
    # final = max(5.0, 4.9) = 5.0 mL; diluent 0.1 mL
    plan = plan_fill(5e7, [1.02e7, 1.00e7, 1.04e7])
    assert _volumes(plan) == (4.9, 0.1, 5.0)
    assert plan.mean_concentration_per_ml == pytest.approx(1.02e7, rel=1e-12)
    assert plan.count_cv == pytest.approx(2e5 / 1.02e7, rel=1e-9)
    assert plan.expected_dose_cells == pytest.approx(4.998e7, rel=1e-12)
    assert plan.explanation() == list(plan.steps)
    # Issue 9: no e-notation on the technician's screen.
    assert plan.steps == (
        "C = mean of 3 counts = 1.02 × 10⁷ viable cells/mL (CV 2.0 %)",
        "suspension = 5 × 10⁷ / 1.02 × 10⁷ ≈ 4.902 mL → 4.9 mL (0.1 mL steps, half-way rounds up)",
        "in the syringe = 1.02 × 10⁷ × 4.9 = 5.00 × 10⁷ (-0.04 %, planning tolerance ±5.0 %)",
        "final volume = max(5.0, 4.9) = 5.0 mL; LR diluent = 0.1 mL",
    )
    assert not any("e7" in line or "e+" in line for line in plan.steps)


def test_cv_uses_the_sample_standard_deviation_and_the_limit_itself_is_accepted() -> None:
    # counts 9e6, 1e7, 1.1e7: mean 1e7; squares 1e12 + 0 + 1e12 = 2e12
    # sample sd = sqrt(2e12 / 2) = 1e6 -> CV = 10.0 % exactly: at the limit, not above it: accepted
    # (the population sd, sqrt(2e12 / 3) = 8.16e5, would say 8.2 %)
    plan = plan_fill(5e7, [9e6, 1e7, 1.1e7])
    assert plan.count_cv == pytest.approx(0.10, rel=1e-12)
    assert _volumes(plan) == (5.0, 0.0, 5.0)
    # the same counts against a 9 % limit: refused, although the population CV (8.2 %) would pass
    refusal = _refusal(5e7, [9e6, 1e7, 1.1e7], max_count_cv=0.09)
    assert "CV 10.0 % above limit 9.0 %" in str(refusal)


def test_half_way_rounds_up() -> None:
    # C = 2e7 /mL; D/C = 4.9e7 / 2e7 = 2.45 mL exactly, half-way between 2.4 and 2.5: rounds up to 2.5 mL
    # (Python's round(24.5) is 24, banker's rounding, which would have given 2.4 mL)
    # delivered 2e7 x 2.5 = 5e7 = 4.9e7 x 1.0204: +2.0 %; final 5.0 mL; diluent 2.5 mL
    assert round(4.9e7 / 2e7 / 0.1) == 24
    plan = plan_fill(4.9e7, [2e7, 2e7])
    assert _volumes(plan) == (2.5, 2.5, 5.0)
    assert plan.expected_dose_cells == 5e7
    assert plan.deviation_fraction == pytest.approx(5e7 / 4.9e7 - 1, rel=1e-12)
    assert "= 2.45 mL → 2.5 mL" in plan.steps[1]
    # D/C = 1.05e7 / 1e7 = 1.05 mL -> 1.1 mL (round-half-even: 1.0); delivered 1.1e7, +4.8 %
    plan = plan_fill(1.05e7, [1e7, 1e7])
    assert plan.suspension_ml == 1.1
    assert plan.expected_dose_cells == pytest.approx(1.1e7, rel=1e-12)


def test_half_way_above_the_maximum_is_refused() -> None:
    # D/C = 1.004e8 / 1e7 = 10.04 mL -> 10.0 mL: the maximum itself is allowed
    # delivered 1e8 (-0.4 %); final = max(5.0, 10.0) = 10.0 mL; diluent 0.0
    plan = plan_fill(1.004e8, [1e7, 1e7])
    assert _volumes(plan) == (10.0, 0.0, 10.0)
    # D/C = 1.005e8 / 1e7 = 10.05 mL -> half-way up to 10.1 mL > 10.0 mL: too dilute
    # (round-half-even would have said 10.0 mL and filled it)
    refusal = _refusal(1.005e8, [1e7, 1e7])
    assert refusal.reason == "too_dilute"
    assert "10.05 mL" in str(refusal)
    assert "10.1 mL" in str(refusal)


def test_tolerance_boundary_for_small_volumes() -> None:
    # Under the old ±10 % these were planned; rounding must not use up the delivered-dose tolerance.
    # D/C = 5.5e6 / 1e7 = 0.55 mL -> 0.6 mL; in the syringe 6e6 = +9.1 %: outside the ±5 % planning tolerance
    refusal = _refusal(5.5e6, [1e7, 1e7])
    assert refusal.reason == "too_concentrated"
    assert "+9.1 %" in str(refusal) and "planning tolerance" in str(refusal)
    # the way out: at most 5.5e6 x 5.0 / (5.0 x 1.0 mL) = 5.5e6 /mL (1.0 mL = step / (2 x tol): within 5 %)
    assert "pre-dilute to at most 5.50 × 10⁶ viable cells/mL and count again" in str(refusal)
    # the old ±10 % still plans it when asked to
    plan = plan_fill(5.5e6, [1e7, 1e7], tolerance=0.10)
    assert _volumes(plan) == (0.6, 4.4, 5.0)
    assert plan.deviation_fraction == pytest.approx(6e6 / 5.5e6 - 1, rel=1e-12)


def test_the_reviewers_case_is_no_longer_planned() -> None:
    # The issue: 0.5 mL at 2.2e7 cells/mL (+10.0 %) was planned for 1e7 cells.
    # D/C = 1e7 / 2.2e7 = 0.4545.. mL -> 0.5 mL; 2.2e7 x 0.5 = 1.1e7 = +10.0 % > 5 %
    refusal = _refusal(1e7, [2.2e7, 2.2e7])
    assert refusal.reason == "too_concentrated"
    assert "+10.0 %" in str(refusal)
    assert "pre-dilute to at most 1.00 × 10⁷ viable cells/mL" in str(refusal)
    # following the advice works: 1e7 /mL gives D/C = 1.0 mL exactly
    assert plan_fill(1e7, [1e7, 1e7]).suspension_ml == 1.0


def test_below_the_smallest_measurable_volume_is_refused_with_the_dilution_to_make() -> None:
    # D/C = 2e7 / 5e7 = 0.4 mL exactly: no rounding error, but 0.4 mL < 0.5 mL cannot be measured
    refusal = _refusal(2e7, [5e7, 5e7])
    assert refusal.reason == "too_concentrated"
    assert "smallest measurable volume 0.5 mL" in str(refusal)
    # at most 2e7 x 5 / (5 x max(0.5, 1.0)) = 2e7 /mL
    assert "pre-dilute to at most 2.00 × 10⁷ viable cells/mL and count again" in str(refusal)
    # a study that measures 0.1 mL (and tolerates the rounding) plans it
    assert plan_fill(2e7, [5e7, 5e7], min_aliquot_ml=0.1).suspension_ml == 0.4


def test_the_overage_is_formulated_at_the_same_concentration() -> None:
    # C = 2e7 /mL, D = 5e7: D/C = 2.5 mL; the syringe holds max(5.0, 2.5) = 5.0 mL;
    # formulated F = 5.0 + 0.5 = 5.5 mL; suspension = 2.5 x 5.5 / 5.0 = 2.75 mL -> 2.8 mL (half-way up);
    # diluent = 5.5 - 2.8 = 2.7 mL; in the syringe 2e7 x 2.8 x 5.0 / 5.5 = 5.0909e7 (+1.8 %)
    plan = plan_fill(5e7, [2e7, 2e7], overage_ml=0.5)
    assert _volumes(plan) == (2.8, 2.7, 5.5)
    assert plan.syringe_ml == 5.0 and plan.overage_ml == 0.5
    assert plan.expected_dose_cells == pytest.approx(2e7 * 2.8 * 5.0 / 5.5, rel=1e-12)
    assert "formulated = 5.0 + 0.5 mL overage = 5.5 mL" in plan.steps[1]
    # large volumes: D/C = 1e8 / 1.25e7 = 8.0 mL in the syringe, 8.5 mL formulated, all suspension
    plan = plan_fill(1e8, [1.25e7, 1.25e7], overage_ml=0.5)
    assert _volumes(plan) == (8.5, 0.0, 8.5)
    assert plan.syringe_ml == 8.0
    assert plan.expected_dose_cells == pytest.approx(1e8, rel=1e-12)


def test_without_an_overage_results_within_5_percent_are_unchanged() -> None:
    for dose, counts in [(5e7, [1e7, 1e7]), (5e7, [2e7, 2e7]), (1e8, [1.25e7, 1.25e7]), (1e7, [3e6, 3e6])]:
        new, old = plan_fill(dose, counts), plan_fill(dose, counts, tolerance=0.10)
        assert _volumes(new) == _volumes(old)
        assert new.expected_dose_cells == old.expected_dose_cells
        assert new.syringe_ml == new.final_volume_ml


def test_another_study_parameters_are_honoured() -> None:
    # min 2 mL, max 20 mL, 0.05 mL steps
    # D/C = 1e8 / 5e6 = 20.0 mL: refused under the defaults (max 10), filled here; final 20.0, diluent 0
    plan = plan_fill(1e8, [5e6, 5e6], **OTHER_STUDY)
    assert _volumes(plan) == (20.0, 0.0, 20.0)
    # D/C = 1e7 / 3e6 = 3.333.. mL; / 0.05 = 66.67 -> 67 steps = 3.35 mL; delivered 1.005e7 (+0.5 %)
    # final = max(2.0, 3.35) = 3.35 mL; diluent 0
    plan = plan_fill(1e7, [3e6, 3e6], **OTHER_STUDY)
    assert _volumes(plan) == (3.35, 0.0, 3.35)
    assert plan.expected_dose_cells == pytest.approx(1.005e7, rel=1e-12)
    assert "(0.05 mL steps" in plan.steps[1]
    # D/C = 5e6 / 5e6 = 1.0 mL; final = max(2.0, 1.0) = 2.0 mL; diluent 1.0 mL
    plan = plan_fill(5e6, [5e6, 5e6], **OTHER_STUDY)
    assert _volumes(plan) == (1.0, 1.0, 2.0)
    # D/C = 3.325e7 / 1e7 = 3.325 mL = 66.5 steps of 0.05 -> half-way up to 67 steps = 3.35 mL
    plan = plan_fill(3.325e7, [1e7, 1e7], **OTHER_STUDY)
    assert plan.suspension_ml == 3.35
    # the defaults refuse the 20 mL case
    assert _refusal(1e8, [5e6, 5e6]).reason == "too_dilute"


def test_the_plan_is_frozen() -> None:
    plan = plan_fill(5e7, [1e7, 1e7])
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.suspension_ml = 6.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------- refusals


def test_refusal_is_a_value_error_and_a_visible_refusal() -> None:
    refusal = _refusal(5e7, [1e7])
    assert isinstance(refusal, ValueError)
    assert isinstance(refusal, ValidationRefused)


@pytest.mark.parametrize("counts", [[], [1e7]])
def test_fewer_than_two_counts(counts: list[float]) -> None:
    refusal = _refusal(5e7, counts)
    assert refusal.reason == "too_few_counts"
    assert "at least 2" in str(refusal)
    assert "recount" in str(refusal)


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (0.0, "0 cells/mL"),
        (-1e7, "-1.0e7 cells/mL"),
        (math.nan, "not a number (NaN)"),
        (math.inf, "infinity"),
        (-math.inf, "minus infinity"),
    ],
)
def test_a_count_that_is_not_positive_and_finite(bad: float, shown: str) -> None:
    refusal = _refusal(5e7, [1e7, bad, 1e7])
    assert refusal.reason == "bad_count"
    assert f"viable count 2 of 3 is {shown}:" in str(refusal)
    assert "recount" in str(refusal)


def test_counts_that_disagree() -> None:
    # mean 1.25e7; sample sd = |1.5e7 - 1e7| / sqrt(2) = 3.536e6; CV = 28.3 % > 10 %
    refusal = _refusal(5e7, [1e7, 1.5e7])
    assert refusal.reason == "count_cv"
    assert str(refusal) == "counts disagree, CV 28.3 % above limit 10.0 %: recount"


def test_too_dilute() -> None:
    # C = 5e6 /mL; D/C = 1e8 / 5e6 = 20.0 mL > 10.0 mL
    refusal = _refusal(1e8, [5e6, 5e6])
    assert refusal.reason == "too_dilute"
    assert str(refusal).startswith("too dilute: D/C = 20.00 mL")
    assert "exceeds the maximum 10.0 mL" in str(refusal)
    assert "concentrate and recount" in str(refusal)


def test_too_concentrated_rounds_to_nothing() -> None:
    # C = 1e9 /mL; D/C = 1e7 / 1e9 = 0.01 mL: far below the smallest measurable volume
    refusal = _refusal(1e7, [1e9, 1e9])
    assert refusal.reason == "too_concentrated"
    assert "too concentrated to measure" in str(refusal)
    assert "(= 0.01 mL) is below the smallest measurable volume 0.5 mL" in str(refusal)
    assert "pre-dilute to at most 1.00 × 10⁷ viable cells/mL and count again" in str(refusal)


def test_too_concentrated_rounding_misses_the_dose() -> None:
    # with a 0.1 mL smallest volume: C = 7e7 /mL; D/C = 1e7 / 7e7 = 0.1428.. mL -> 0.1 mL; 7e6 = -30 %
    refusal = _refusal(1e7, [7e7, 7e7], min_aliquot_ml=0.1)
    assert refusal.reason == "too_concentrated"
    assert "(≈ 0.143 mL) rounds to 0.1 mL" in str(refusal)
    assert "-30.0 %" in str(refusal)
    assert "pre-dilute to at most" in str(refusal)
    # and upwards: D/C = 1.5e7 / 1e8 = 0.15 mL -> 0.2 mL; delivered 2e7 = +33 %
    refusal = _refusal(1.5e7, [1e8, 1e8], min_aliquot_ml=0.1)
    assert refusal.reason == "too_concentrated"
    assert "+33.3 %" in str(refusal)


@pytest.mark.parametrize("dose", [0.0, -5e7, math.nan, math.inf])
def test_dose_must_be_positive_and_finite(dose: float) -> None:
    refusal = _refusal(dose, [1e7, 1e7])
    assert refusal.reason == "dose"
    assert "dose" in str(refusal)
    assert "positive finite" in str(refusal)


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"min_volume_ml": 12.0}, "minimum volume 12 mL is above the maximum volume 10 mL"),
        ({"volume_step_ml": 0.0}, "volume step (volume_step_ml) must be a positive finite number"),
        ({"volume_step_ml": -0.1}, "volume step (volume_step_ml) must be a positive finite number"),
        ({"volume_step_ml": math.nan}, "volume step (volume_step_ml) must be a positive finite number"),
        ({"volume_step_ml": 20.0}, "larger than the maximum volume"),
        ({"volume_step_ml": 1e-6}, "too fine"),
        ({"min_volume_ml": 5.05}, "not a whole number of 0.1 mL steps"),
        ({"max_volume_ml": math.inf}, "maximum volume (max_volume_ml) must be a positive finite number"),
        ({"min_volume_ml": 0.0}, "minimum volume (min_volume_ml) must be a positive finite number"),
        ({"max_count_cv": -0.1}, "count CV limit"),
        ({"max_count_cv": math.nan}, "count CV limit"),
        ({"tolerance": 1.0}, "planning tolerance"),
        ({"tolerance": -0.01}, "planning tolerance"),
        ({"min_aliquot_ml": 0.0}, "smallest measurable volume (min_aliquot_ml) must be a positive"),
        ({"min_aliquot_ml": 11.0}, "smallest measurable volume 11 mL is above the maximum volume"),
        ({"overage_ml": -0.5}, "overage (overage_ml) must be 0 or a whole number of 0.1 mL steps"),
        ({"overage_ml": 0.25}, "overage (overage_ml) must be 0 or a whole number"),
        ({"overage_ml": math.nan}, "overage (overage_ml)"),
    ],
)
def test_nonsensical_parameters(parameters: dict[str, float], words: str) -> None:
    refusal = _refusal(5e7, [1e7, 1e7], **parameters)
    assert refusal.reason == "parameter"
    assert words in str(refusal)


@pytest.mark.parametrize("counts", ["1e7", None, 5, [True, 1e7], ["1e7", 1e7]])
def test_counts_that_are_not_numbers(counts: object) -> None:
    with pytest.raises(DoseRefused):
        plan_fill(5e7, counts)  # type: ignore[arg-type]


def test_integers_and_decimals_are_accepted() -> None:
    plan = plan_fill(50_000_000, [Decimal("1e7"), 10_000_000])
    assert _volumes(plan) == (5.0, 0.0, 5.0)


# --------------------------------------------------------------------------------------------- properties

doses = st.floats(min_value=1e6, max_value=1e9)


@st.composite
def replicate_counts(draw: st.DrawFn, spread: float = 0.2) -> list[float]:
    """2 to 5 counts in [1e5, 1e9], each within +-spread of a common value."""
    centre = draw(st.floats(min_value=1e5, max_value=1e9))
    factors = draw(st.lists(st.floats(1 - spread, 1 + spread), min_size=2, max_size=5))
    return [min(1e9, max(1e5, centre * f)) for f in factors]


def _is_multiple(value: float, step: float) -> bool:
    return abs(value / step - round(value / step)) < 1e-6


def _check_plan(plan: FillPlan, dose: float, counts: list[float], parameters: dict[str, float]) -> None:
    lowest = parameters.get("min_volume_ml", 5.0)
    highest = parameters.get("max_volume_ml", 10.0)
    step = parameters.get("volume_step_ml", 0.1)
    tolerance = parameters.get("tolerance", 0.05)
    assert abs(plan.expected_dose_cells - dose) / dose <= tolerance + 1e-12
    assert lowest <= plan.final_volume_ml <= highest
    assert 0 < plan.suspension_ml <= highest
    assert plan.diluent_ml >= 0
    assert abs(plan.suspension_ml + plan.diluent_ml - plan.final_volume_ml) < 1e-9
    assert plan.final_volume_ml == max(lowest, plan.suspension_ml)
    assert _is_multiple(plan.suspension_ml, step)
    assert _is_multiple(plan.diluent_ml, step)
    # the suspension is the step nearest D / C
    mean = sum(counts) / len(counts)
    assert abs(plan.suspension_ml - dose / mean) <= step / 2 + 1e-9
    assert plan.expected_dose_cells == pytest.approx(mean * plan.suspension_ml, rel=1e-9)
    assert plan.count_cv <= 0.10 + 1e-12
    assert len(plan.steps) == 4


@pytest.mark.parametrize("parameters", [{}, OTHER_STUDY], ids=["defaults", "other-study"])
@settings(max_examples=300, deadline=None)
@given(dose=doses, counts=replicate_counts())
def test_a_plan_meets_the_rule_or_a_refusal_is_raised(
    parameters: dict[str, float], dose: float, counts: list[float]
) -> None:
    try:
        plan = plan_fill(dose, counts, **parameters)
    except DoseRefused as refusal:
        assert refusal.reason in {"count_cv", "too_dilute", "too_concentrated"}
        return
    _check_plan(plan, dose, counts, parameters)


@pytest.mark.parametrize("parameters", [{}, OTHER_STUDY], ids=["defaults", "other-study"])
@settings(max_examples=300, deadline=None)
@given(counts=replicate_counts(spread=0.03), target_ml=st.floats(min_value=0.0001, max_value=25.0))
def test_a_plan_exactly_when_the_volume_is_measurable(
    parameters: dict[str, float], counts: list[float], target_ml: float
) -> None:
    """Counts that agree and D/C between 1 mL and the maximum always give a plan; far outside, never."""
    highest = parameters.get("max_volume_ml", 10.0)
    step = parameters.get("volume_step_ml", 0.1)
    mean = sum(counts) / len(counts)
    dose = mean * target_ml
    ratio = dose / mean
    assume(min(abs(ratio - 1.0), abs(ratio - (highest + step / 2)), abs(ratio - step / 2)) > 1e-6)
    if 1.0 <= ratio <= highest:
        _check_plan(plan_fill(dose, counts, **parameters), dose, counts, parameters)
    elif ratio > highest + step / 2:
        assert _refusal(dose, counts, **parameters).reason == "too_dilute"
    elif ratio < step / 2:
        assert _refusal(dose, counts, **parameters).reason == "too_concentrated"


anything = st.one_of(st.floats(), st.integers(min_value=-(10**30), max_value=10**30))


@settings(max_examples=500, deadline=None)
@given(
    dose=anything,
    counts=st.lists(anything, max_size=6),
    lowest=anything,
    highest=anything,
    step=anything,
    cv_limit=anything,
    tolerance=anything,
)
def test_any_input_gives_a_plan_or_a_refusal_never_a_crash(
    dose: float,
    counts: list[float],
    lowest: float,
    highest: float,
    step: float,
    cv_limit: float,
    tolerance: float,
) -> None:
    try:
        plan = plan_fill(
            dose,
            counts,
            min_volume_ml=lowest,
            max_volume_ml=highest,
            volume_step_ml=step,
            max_count_cv=cv_limit,
            tolerance=tolerance,
        )
    except DoseRefused as refusal:
        assert refusal.reason in REASONS
        assert str(refusal)
        return
    assert lowest <= plan.final_volume_ml <= highest
    assert plan.suspension_ml > 0
    assert plan.diluent_ml >= 0


extreme = st.one_of(
    st.floats(),
    st.floats(min_value=1e-320, max_value=1e308),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.decimals(allow_nan=True),
)
study_parameters = st.fixed_dictionaries(
    {
        "min_volume_ml": st.sampled_from([5.0, 2.0, 0.001, 1e-300, 1, 1e300]),
        "max_volume_ml": st.sampled_from([10.0, 20.0, 1000, 1e-290, 1e308]),
        "volume_step_ml": st.sampled_from([0.1, 0.05, 0.001, 0.3, 1, 1e-296, 1e299]),
        "max_count_cv": st.sampled_from([0.10, 0.0, 1.0, 1e300]),
        "tolerance": st.sampled_from([0.10, 0.0, 0.5, 0.999999]),
    }
)


@settings(max_examples=500, deadline=None)
@given(dose=extreme, counts=st.lists(extreme, min_size=2, max_size=5), parameters=study_parameters)
def test_extreme_numbers_give_a_plan_or_a_refusal_never_a_crash(
    dose: float, counts: list[float], parameters: dict[str, float]
) -> None:
    try:
        plan = plan_fill(dose, counts, **parameters)
    except DoseRefused as refusal:
        assert refusal.reason in REASONS
        return
    assert plan.suspension_ml > 0
    assert plan.diluent_ml >= 0
    assert len(plan.steps) == 4


@settings(max_examples=300, deadline=None)
@given(dose=doses, counts=replicate_counts(spread=0.05), overage=st.sampled_from([0.1, 0.5, 1.0]))
def test_with_an_overage_the_syringe_holds_the_dose(dose: float, counts: list[float], overage: float) -> None:
    try:
        plan = plan_fill(dose, counts, overage_ml=overage)
    except DoseRefused as refusal:
        assert refusal.reason in {"count_cv", "too_dilute", "too_concentrated"}
        return
    mean = sum(counts) / len(counts)
    assert plan.final_volume_ml == pytest.approx(plan.syringe_ml + overage, abs=1e-9)
    assert 5.0 <= plan.syringe_ml <= 10.0
    assert plan.suspension_ml >= 0.5
    assert abs(plan.suspension_ml + plan.diluent_ml - plan.final_volume_ml) < 1e-9
    # what the syringe holds, at the formulation's concentration, is the planned dose, within ±5 %
    in_syringe = mean * plan.suspension_ml / plan.final_volume_ml * plan.syringe_ml
    assert plan.expected_dose_cells == pytest.approx(in_syringe, rel=1e-9)
    assert abs(in_syringe / dose - 1) <= 0.05 + 1e-12


# --------------------------------------------------------------------------------------------- the fill


def _range(plan: FillPlan, drawn: str) -> tuple[float, float]:
    return drawn_volume_range(plan, drawn, tolerance=0.05, min_volume_ml=5.0, max_volume_ml=10.0)


def test_a_drawn_volume_is_checked_by_the_dose_it_gives() -> None:
    # 1.0 mL plan at 1e7 /mL for 1e7 cells: ±5 % of the dose is 0.95 to 1.05 mL, not 0.9 to 1.1 (one step)
    plan = plan_fill(1e7, [1e7, 1e7])
    assert _range(plan, "suspension_ml") == (0.95, 1.05)
    # 3.6 mL at 1.4e7 /mL for 5e7: 4.75e7 / 1.4e7 = 3.3929 (up to 3.393) to 5.25e7 / 1.4e7 = 3.75
    plan = plan_fill(5e7, [1.4e7, 1.4e7])
    assert _range(plan, "suspension_ml") == (3.393, 3.75)
    # without an overage the diluent does not change the dose: the syringe's 5 to 10 mL bound it
    assert _range(plan, "diluent_ml") == (1.4, 6.4)


def test_with_an_overage_the_diluent_changes_the_dose_too() -> None:
    # 2.8 mL at 2e7 /mL + 2.7 mL LR = 5.5 mL, 0.5 mL leaves: the syringe holds 2e7 x 2.8 x 5.0 / 5.5
    plan = plan_fill(5e7, [2e7, 2e7], overage_ml=0.5)
    low, high = _range(plan, "diluent_ml")
    assert low == 2.7  # the syringe's 5.0 mL minimum: 5.0 + 0.5 - 2.8
    # at the upper bound, the dose in the syringe is 1.05 x 5e7
    held = 2e7 * 2.8 * (2.8 + high - 0.5) / (2.8 + high)
    assert held == pytest.approx(5.25e7, rel=1e-3)
    low, high = _range(plan, "suspension_ml")
    for volume, dose in ((low, 4.75e7), (high, 5.25e7)):
        assert 2e7 * volume * (volume + 2.7 - 0.5) / (volume + 2.7) == pytest.approx(dose, rel=1e-3)


def test_only_the_planned_volumes_have_a_range() -> None:
    with pytest.raises(ValueError, match="not 'cells'"):
        _range(plan_fill(5e7, [1e7, 1e7]), "cells")
