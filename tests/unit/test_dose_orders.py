"""Dose-order rules without a database: the visit schedule, what may be prescribed, and the cryobank check.

Every expected figure below is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from labels.numbers import format_cells
from mfg.dosing.orders import (
    BankCheck,
    ExistingOrder,
    PlannedVisit,
    add_months,
    bank_check,
    change_reason_problem,
    duplicate_problem,
    first_dose_problem,
    injection_problem,
    level_problem,
    order_problem,
    previous_order,
    remaining_planned_doses,
    sequence_problem,
    study_level,
    visit_schedule,
    weight_problem,
)
from mfg.study.definition import load_study

STUDY = load_study()


def order(number: int, cells: float, status: str = "ordered", order_id: int | None = None) -> ExistingOrder:
    return ExistingOrder(id=order_id or number, injection_number=number, dose_cells=cells, status=status)


# --- the schedule ---------------------------------------------------------------------------------------


def test_the_study_schedule_is_four_injections_three_months_apart_from_visit_4() -> None:
    assert visit_schedule(date(2027, 1, 15), STUDY) == [
        PlannedVisit(1, 4, date(2027, 1, 15), date(2027, 1, 1), date(2027, 1, 29)),
        PlannedVisit(2, 5, date(2027, 4, 15), date(2027, 4, 1), date(2027, 4, 29)),
        PlannedVisit(3, 6, date(2027, 7, 15), date(2027, 7, 1), date(2027, 7, 29)),
        PlannedVisit(4, 7, date(2027, 10, 15), date(2027, 10, 1), date(2027, 10, 29)),
    ]


def test_a_month_end_is_clamped_and_does_not_drift() -> None:
    # 31 Jan + 3 months: April has 30 days. Counted from the first visit, July and October keep the 31st.
    dues = [v.due_date for v in visit_schedule(date(2027, 1, 31), STUDY)]
    assert dues == [date(2027, 1, 31), date(2027, 4, 30), date(2027, 7, 31), date(2027, 10, 31)]


def test_february_in_common_and_leap_years() -> None:
    # 30 Nov 2026 + 3 months = 28 Feb 2027 (2027 is common); 30 Nov 2027 + 3 = 29 Feb 2028 (leap).
    assert visit_schedule(date(2026, 11, 30), STUDY)[1].due_date == date(2027, 2, 28)
    assert visit_schedule(date(2027, 11, 30), STUDY)[1].due_date == date(2028, 2, 29)
    assert visit_schedule(date(2027, 11, 29), STUDY)[1].due_date == date(2028, 2, 29)
    # 2100 is not a leap year (divisible by 100, not by 400); 2000 was.
    assert add_months(date(2099, 11, 30), 3) == date(2100, 2, 28)
    assert add_months(date(1999, 11, 30), 3) == date(2000, 2, 29)
    # Starting on 29 Feb: the later visits fall on the 29th of their month.
    dues = [v.due_date for v in visit_schedule(date(2028, 2, 29), STUDY)]
    assert dues == [date(2028, 2, 29), date(2028, 5, 29), date(2028, 8, 29), date(2028, 11, 29)]


def test_the_schedule_crosses_year_ends() -> None:
    visits = visit_schedule(date(2027, 11, 5), STUDY)
    assert [v.due_date for v in visits] == [
        date(2027, 11, 5),
        date(2028, 2, 5),
        date(2028, 5, 5),
        date(2028, 8, 5),
    ]
    # window: 14 days either side, across the new year for a visit due on 5 January
    first = visit_schedule(date(2028, 1, 5), STUDY)[0]
    assert (first.window_start, first.window_end) == (date(2027, 12, 22), date(2028, 1, 19))
    assert add_months(date(2026, 12, 31), 2) == date(2027, 2, 28)
    assert add_months(date(2026, 12, 31), 14) == date(2028, 2, 29)


def test_the_schedule_comes_from_the_study_definition() -> None:
    monthly = dataclasses.replace(
        STUDY,
        schedule=dataclasses.replace(
            STUDY.schedule, injections=2, interval_months=1, visit_window_days=3, first_injection_visit=10
        ),
    )
    assert visit_schedule(date(2027, 3, 31), monthly) == [
        PlannedVisit(1, 10, date(2027, 3, 31), date(2027, 3, 28), date(2027, 4, 3)),
        PlannedVisit(2, 11, date(2027, 4, 30), date(2027, 4, 27), date(2027, 5, 3)),
    ]


# --- levels, first dose, weight, injection numbers ------------------------------------------------------


def test_only_the_studys_levels_can_be_prescribed() -> None:
    assert level_problem(3e7, STUDY) == (
        "3 × 10⁷ cells is not a dose level of NCT03268603: choose 1 × 10⁷, 5 × 10⁷ or 1 × 10⁸ cells"
    )
    assert level_problem(float("nan"), STUDY).startswith("nan cells is not a dose level")
    assert level_problem(float("inf"), STUDY) != ""
    assert level_problem(0.0, STUDY) != ""
    for level in (1e7, 5e7, 1e8):
        assert level_problem(level, STUDY) == ""
    # what a form posts is matched to the level: '50000000' is 5e7
    assert study_level(float("50000000"), STUDY) == 5e7
    assert study_level(5.0000001e7, STUDY) is None


def test_the_first_injection_is_always_the_first_dose() -> None:
    assert first_dose_problem(1, 1e8, STUDY) == (
        "the first injection of NCT03268603 is always 5 × 10⁷ cells, not 1 × 10⁸"
    )
    assert first_dose_problem(1, 5e7, STUDY) == ""
    assert first_dose_problem(2, 1e8, STUDY) == ""


def test_injection_numbers_stay_within_the_schedule() -> None:
    assert injection_problem(0, STUDY) == (
        "injection 0 is not in the schedule: NCT03268603 has injections 1 to 4"
    )
    assert injection_problem(5, STUDY) != ""
    assert all(injection_problem(n, STUDY) == "" for n in range(1, 5))


@pytest.mark.parametrize("weight", [19.9, 300.1, 0.0, -70.0, float("nan"), float("inf")])
def test_implausible_body_weights_are_refused(weight: float) -> None:
    assert "is not plausible (expected 20-300 kg)" in weight_problem(weight)


@pytest.mark.parametrize("weight", [20.0, 72.5, 300.0])
def test_plausible_body_weights_pass(weight: float) -> None:
    assert weight_problem(weight) == ""


# --- sequence, duplicates and the reason for a change ---------------------------------------------------


def test_visits_are_ordered_in_sequence() -> None:
    assert sequence_problem(1, []) == ""
    assert sequence_problem(2, [order(1, 5e7)]) == ""
    assert sequence_problem(3, [order(1, 5e7)]) == (
        "injection 3 comes after injection 2, which has no active order"
    )
    # a cancelled order does not open the next visit
    assert sequence_problem(2, [order(1, 5e7, "cancelled")]) != ""
    # an order in preparation or prepared still stands
    assert sequence_problem(2, [order(1, 5e7, "prepared")]) == ""


def test_one_standing_order_per_visit() -> None:
    standing = [order(1, 5e7, "in_preparation", order_id=7)]
    assert duplicate_problem(1, standing) == (
        "injection 1 already has an order (#7, in preparation, 5 × 10⁷ cells): "
        "cancel it first to prescribe this visit again"
    )
    assert duplicate_problem(1, [order(1, 5e7, "cancelled")]) == ""
    assert duplicate_problem(2, standing) == ""


def test_a_change_of_level_needs_a_reason() -> None:
    history = [order(1, 5e7)]
    assert change_reason_problem(2, 1e8, None, history) == (
        "the dose changes from 5 × 10⁷ cells (injection 1) to 1 × 10⁸: give the reason for the change"
    )
    assert change_reason_problem(2, 1e8, "   ", history) != ""
    assert change_reason_problem(2, 1e8, "well tolerated, escalate per protocol", history) == ""
    assert change_reason_problem(2, 5e7, None, history) == ""  # same level: no reason needed
    assert change_reason_problem(1, 5e7, None, []) == ""


def test_the_previous_dose_is_the_latest_standing_order_before_this_injection() -> None:
    # injection 2 was reduced to 1e7, then that order was cancelled and re-ordered at 5e7
    history = [order(1, 5e7), order(2, 1e7, "cancelled", order_id=2), order(2, 5e7, order_id=3)]
    previous = previous_order(3, history)
    assert previous is not None and previous.id == 3
    assert change_reason_problem(3, 5e7, None, history) == ""
    # re-ordering injection 2 compares with injection 1, not the cancelled 1e7
    assert previous_order(2, history[:2]) == history[0]
    assert change_reason_problem(2, 1e7, None, history[:2]) != ""
    assert previous_order(1, history) is None


def test_order_problem_reports_the_first_broken_rule() -> None:
    def problem(**changes: object) -> str:
        values: dict[str, object] = {
            "injection_number": 2,
            "dose_cells": 5e7,
            "body_weight_kg": 70.0,
            "change_reason": None,
            "existing": [order(1, 5e7)],
        } | changes
        return order_problem(STUDY, **values)  # type: ignore[arg-type]

    assert problem() == ""
    assert problem(injection_number=6).startswith("injection 6 is not in the schedule")
    assert problem(dose_cells=2e7).startswith("2 × 10⁷ cells is not a dose level")
    assert problem(injection_number=1, existing=[], dose_cells=1e7).startswith("the first injection")
    assert problem(body_weight_kg=7.0).startswith("body weight 7 kg is not plausible")
    assert problem(existing=[order(1, 5e7), order(2, 5e7)]).startswith("injection 2 already has an order")
    assert problem(injection_number=3).startswith("injection 3 comes after injection 2")
    assert problem(dose_cells=1e7).startswith("the dose changes from 5 × 10⁷")
    assert problem(dose_cells=1e7, change_reason="headache after injection 1") == ""


def test_remaining_planned_doses() -> None:
    # ordering injection 1 at 5e7, nothing else: injections 2-4 assumed at 5e7
    assert remaining_planned_doses(1, 5e7, [], 4) == [5e7, 5e7, 5e7]
    # injection 2 at 1e8 after a prepared injection 1: its vials are gone, 3 and 4 assumed at 1e8
    assert remaining_planned_doses(2, 1e8, [order(1, 5e7, "prepared")], 4) == [1e8, 1e8]
    # a standing later order counts at its own level; a cancelled one does not count
    history = [order(1, 5e7, "prepared"), order(3, 1e7), order(4, 1e8, "cancelled")]
    assert remaining_planned_doses(2, 5e7, history, 4) == [1e7, 5e7]
    # an earlier order still waiting for preparation needs its vials too
    assert remaining_planned_doses(2, 5e7, [order(1, 5e7)], 4) == [5e7, 5e7, 5e7]
    assert remaining_planned_doses(4, 5e7, [order(n, 5e7, "prepared") for n in (1, 2, 3)], 4) == []


def test_cell_numbers_read_as_a_prescriber_writes_them() -> None:
    assert [format_cells(x, "dose") for x in (1e7, 5e7, 1e8, 3.5e7, 1.05e7, 1.234e8, 9.999e7)] == [
        "1 × 10⁷",
        "5 × 10⁷",
        "1 × 10⁸",
        "3.5 × 10⁷",
        "1.05 × 10⁷",
        "1.23 × 10⁸",
        "1 × 10⁸",
    ]


# --- the cryobank ---------------------------------------------------------------------------------------

BANK = [(f"V{n:02d}", 5e7) for n in range(1, 11)]  # the closed bank of a full batch: 10 vials x 5e7 cells


def test_a_standard_dose_thaws_two_vials_and_the_bank_covers_the_schedule() -> None:
    # One vial gives 5e7 x 0.7 = 3.5e7 viable cells < 5e7; two give 7e7 >= 5e7. Each later 5e7 dose also
    # takes 2 vials: 2 + 3 x 2 = 8 of 10, 2 to spare.
    # Totals: 10 x 3.5e7 = 3.5e8 available, 4 x 5e7 = 2e8 needed.
    check = bank_check(BANK, 5e7, [5e7, 5e7, 5e7], 0.7)
    assert check == BankCheck(
        enough=True,
        covers_this_dose=True,
        vials_to_thaw=("V01", "V02"),
        thawed_viable_cells=pytest.approx(7e7),  # type: ignore[arg-type]
        dose_cells=5e7,
        remaining_doses_cells=(5e7, 5e7, 5e7),
        remaining_doses_covered=3,
        stored_vials=10,
        spare_vials=2,
        available_viable_cells=pytest.approx(3.5e8),  # type: ignore[arg-type]
        needed_viable_cells=2e8,
        recovery=0.7,
        sentence=(
            "Thaw 2 vials of 10 for this dose: 1 × 10⁸ cells frozen, 7 × 10⁷ viable after 70 % post-thaw "
            "recovery ≥ 5 × 10⁷. The 8 vials left cover the 3 doses still planned "
            "(5 × 10⁷, 5 × 10⁷, 5 × 10⁷), with 2 vials to spare."
        ),
    )


def test_whole_vials_matter_more_than_the_total() -> None:
    # 5e7 now, then three 1e8 doses: 5e7 + 3 x 1e8 = 3.5e8 needed = 10 x 3.5e7 available, so the totals
    # balance. But a 1e8 dose takes 3 vials (2 give 7e7 < 1e8, 3 give 1.05e8): 2 + 3 + 3 = 8, and the last
    # 2 vials give 7e7 < 1e8. Only 2 of the 3 remaining doses are covered.
    check = bank_check(BANK, 5e7, [1e8, 1e8, 1e8], 0.7)
    assert check.available_viable_cells == pytest.approx(check.needed_viable_cells)
    assert check.covers_this_dose and check.vials_to_thaw == ("V01", "V02")
    assert not check.enough
    assert check.remaining_doses_covered == 2 and check.spare_vials == 2
    assert check.sentence.endswith(
        "NOT ENOUGH for the rest of the schedule: the 8 vials left cover 2 of the 3 doses still planned "
        "(1 × 10⁸, 1 × 10⁸, 1 × 10⁸)."
    )


def test_a_high_dose_thaws_three_vials() -> None:
    # 1e8 / 3.5e7 = 2.86 -> 3 vials (1.05e8); 7 stay.
    check = bank_check(BANK, 1e8, [], 0.7)
    assert check.vials_to_thaw == ("V01", "V02", "V03") and check.enough
    assert check.thawed_viable_cells == pytest.approx(1.05e8)
    assert check.sentence.endswith("No other dose is planned; 7 vials stay in the bank.")


def test_a_vial_that_gives_exactly_the_dose_is_enough() -> None:
    # 5e7 x 0.7 = 3.5e7 exactly
    assert bank_check(BANK[:1], 3.5e7, [], 0.7).vials_to_thaw == ("V01",)
    # 1.1e7 x 0.7 = 7.7e6 on paper, 7699999.999999999 in binary: still one vial, not two
    assert 1.1e7 * 0.7 < 7.7e6
    assert bank_check([("A", 1.1e7), ("B", 1.1e7)], 7.7e6, [], 0.7).vials_to_thaw == ("A",)
    # and three vials give 2.31e7 (binary: 23099999.999999996) for a dose of 2.31e7
    three = [("A", 1.1e7), ("B", 1.1e7), ("C", 1.1e7)]
    assert bank_check(three, 2.31e7, [], 0.7).vials_to_thaw == ("A", "B", "C")
    # 1e7 needs 1 vial of the 10
    assert bank_check(BANK, 1e7, [1e7, 1e7, 1e7], 0.7).spare_vials == 6


def test_vials_are_taken_in_the_order_given() -> None:
    # A: 2e7 x 0.5 = 1e7 < 5e7; A + B: (2e7 + 1e8) x 0.5 = 6e7 >= 5e7. C alone then gives 5e7 for the next.
    vials = [("A", 2e7), ("B", 1e8), ("C", 1e8)]
    check = bank_check(vials, 5e7, [5e7], 0.5)
    assert check.vials_to_thaw == ("A", "B")
    assert check.enough and check.spare_vials == 0


def test_a_bank_too_small_for_this_dose_offers_no_vials() -> None:
    # the only vial gives 3.5e7 < 1e8
    check = bank_check(BANK[:1], 1e8, [1e8], 0.7)
    assert (check.covers_this_dose, check.enough, check.vials_to_thaw) == (False, False, ())
    assert check.sentence == (
        "NOT ENOUGH for this dose: the only stored vial gives 3.5 × 10⁷ viable cells after 70 % post-thaw "
        "recovery, less than 1 × 10⁸."
    )
    # two vials: 7e7 < 1e8
    two = bank_check(BANK[:2], 1e8, [], 0.7)
    assert two.sentence.startswith("NOT ENOUGH for this dose: all 2 stored vials")
    empty = bank_check([], 5e7, [5e7], 0.7)
    assert not empty.covers_this_dose and empty.stored_vials == 0
    assert empty.sentence == "No cryovials are stored: the bank cannot supply this dose of 5 × 10⁷."


@pytest.mark.parametrize("recovery", [0.0, -0.1, 1.5])
def test_a_recovery_outside_zero_to_one_is_a_programming_error(recovery: float) -> None:
    with pytest.raises(ValueError, match="post-thaw recovery"):
        bank_check(BANK, 5e7, [], recovery)
