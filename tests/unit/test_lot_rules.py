"""Which lot decisions QA or QC may sign: once, from quarantine; never a rejected or an expired lot back."""

from __future__ import annotations

from datetime import date

import pytest

from mfg.materials.rules import lot_status_problem

TODAY = date(2026, 11, 28)


def _problem(status: str, new_status: str, expiry_date: date = date(2027, 6, 1)) -> str:
    return lot_status_problem(
        name="Collagenase type I",
        lot_number="Q1",
        status=status,
        new_status=new_status,
        expiry_date=expiry_date,
        on=TODAY,
    )


@pytest.mark.parametrize("new_status", ["released", "rejected"])
def test_a_quarantined_lot_is_released_or_rejected(new_status: str) -> None:
    assert _problem("quarantined", new_status) == ""


def test_a_lot_is_released_through_its_expiry_day_and_not_after() -> None:
    assert _problem("quarantined", "released", expiry_date=TODAY) == ""
    assert _problem("quarantined", "released", expiry_date=date(2026, 11, 27)) == (
        "lot Q1 of Collagenase type I EXPIRED on 2026-11-27: an expired lot cannot be released"
    )
    assert _problem("quarantined", "rejected", expiry_date=date(2026, 11, 27)) == ""


@pytest.mark.parametrize(
    ("status", "new_status", "says"),
    [
        ("rejected", "released", "was REJECTED: a rejected lot is quarantined for good"),
        ("rejected", "rejected", "was REJECTED: a rejected lot is quarantined for good"),
        ("rejected", "quarantined", "a lot goes from quarantine to released or rejected only"),
        ("released", "released", "lot Q1 of Collagenase type I is already released"),
        ("released", "quarantined", "a lot goes from quarantine to released or rejected only"),
        ("quarantined", "quarantined", "a lot goes from quarantine to released or rejected only"),
    ],
)
def test_every_other_change_is_refused_with_its_reason(status: str, new_status: str, says: str) -> None:
    assert says in _problem(status, new_status)


def test_a_rejected_lot_names_the_way_out() -> None:
    assert _problem("rejected", "released").endswith("receive a new lot")


def test_a_released_lot_can_still_be_rejected() -> None:
    """A supplier's recall or a failed test must stop a released lot's use before it expires."""
    assert _problem("released", "rejected") == ""
