"""When a piece of equipment may be used, or go back in service, and what a calibration record must say."""

from __future__ import annotations

from datetime import date

import pytest

from mfg.materials.rules import calibration_entry_problem, calibration_problem, equipment_problem

TODAY = date(2026, 11, 28)


def _usable(calibration_due: date | None, status: str = "in_service") -> str:
    return equipment_problem(
        asset_tag="CEN-01",
        equipment_type="centrifuge",
        status=status,
        calibration_due=calibration_due,
        on=TODAY,
    )


def test_the_bench_uses_equipment_in_service_through_its_due_day() -> None:
    assert _usable(TODAY) == ""
    assert _usable(date(2026, 11, 27)) == "CEN-01 is past its calibration date (2026-11-27): do not use it"
    assert _usable(None) == "CEN-01 has no calibration on record: do not use it"
    assert _usable(TODAY, status="out_of_service") == "CEN-01 is OUT OF SERVICE"


@pytest.mark.parametrize(
    ("due", "latest", "problem"),
    [
        (TODAY, "pass", ""),
        (None, None, "CEN-01 has no calibration on record: record one first"),
        (
            date(2027, 1, 1),
            "fail",
            "CEN-01 failed its latest calibration (CAL-7, 2026-11-20): record a passing",
        ),
        (
            date(2026, 11, 1),
            "pass",
            "CEN-01 is past its calibration date (2026-11-01): record a new calibration",
        ),
    ],
)
def test_back_in_service_only_with_a_current_passing_calibration(
    due: date | None, latest: str | None, problem: str
) -> None:
    found = calibration_problem(
        asset_tag="CEN-01",
        calibration_due=due,
        latest_result=latest,
        latest_certificate="CAL-7",
        latest_on=date(2026, 11, 20),
        on=TODAY,
    )
    assert found.startswith(problem) and bool(found) == bool(problem)


@pytest.mark.parametrize(
    ("result", "calibrated_on", "next_due", "problem"),
    [
        ("pass", TODAY, date(2027, 11, 28), ""),
        ("fail", TODAY, None, ""),
        ("pass", date(2026, 11, 29), date(2027, 11, 29), "calibration date 2026-11-29 is in the future"),
        ("pass", TODAY, None, "the next due date is required for a passing calibration"),
        ("pass", TODAY, TODAY, "next due date 2026-11-28 must come after the calibration date"),
        ("fail", TODAY, date(2027, 1, 1), "a failed calibration has no next due date: leave it empty"),
        ("PASS", TODAY, date(2027, 1, 1), "calibration result must be pass or fail, not 'PASS'"),
    ],
)
def test_what_a_calibration_record_must_say(
    result: str, calibrated_on: date, next_due: date | None, problem: str
) -> None:
    found = calibration_entry_problem(result=result, calibrated_on=calibrated_on, next_due=next_due, on=TODAY)
    assert found == problem


def test_implausible_calibration_dates_are_refused() -> None:
    """A red-team review: calibrated 0001-01-01, due 9999-12-31, counted as calibrated for ever."""
    on = date(2026, 11, 28)
    assert "more than five years ago" in calibration_entry_problem(
        result="pass", calibrated_on=date(1, 1, 1), next_due=date(9999, 12, 31), on=on
    )
    assert "more than five years after the calibration" in calibration_entry_problem(
        result="pass", calibrated_on=on, next_due=date(9999, 12, 31), on=on
    )
    assert (
        calibration_entry_problem(result="pass", calibrated_on=on, next_due=date(2027, 11, 28), on=on) == ""
    )
