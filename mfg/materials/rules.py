"""Whether a lot or a piece of equipment may be used on a given day. Pure: no database."""

from __future__ import annotations

from datetime import date, timedelta


def lot_problem(
    *, name: str, lot_number: str, status: str, expiry_date: date, on: date, expected_name: str | None = None
) -> str:
    """Empty when usable, else the reason the terminal shows."""
    if status == "quarantined":
        return f"lot {lot_number} of {name} is QUARANTINED: it has not been released by QA"
    if status == "rejected":
        return f"lot {lot_number} of {name} was REJECTED: do not use it"
    if status != "released":
        return f"lot {lot_number} of {name} has status {status!r}"
    if expiry_date < on:
        return f"lot {lot_number} of {name} EXPIRED on {expiry_date.isoformat()}"
    if expected_name and expected_name.casefold() not in name.casefold():
        return f"lot {lot_number} is {name}, but this field needs {expected_name}"
    return ""


def lot_status_problem(
    *, name: str, lot_number: str, status: str, new_status: str, expiry_date: date, on: date
) -> str:
    """Empty when a lot may go from ``status`` to ``new_status`` on ``on``, else why not.

    QA or QC decide once, from quarantine: released or rejected. A released lot may still be rejected (a
    supplier's recall, a failed test): the bench then refuses it. A rejected lot never comes back (a second
    opinion on the same vials is how bad material gets used), and an expired lot is never released."""
    lot = f"lot {lot_number} of {name}"
    if new_status not in ("released", "rejected"):
        return f"a lot goes from quarantine to released or rejected only, not to {new_status}"
    if status == "rejected":
        return (
            f"{lot} was REJECTED: a rejected lot is quarantined for good and is never released or "
            "decided again; receive a new lot"
        )
    if new_status == "released" and expiry_date < on:
        return f"{lot} EXPIRED on {expiry_date.isoformat()}: an expired lot cannot be released"
    if status == new_status:
        return f"{lot} is already {status}"
    if status == "released" and new_status == "rejected":
        return ""
    if status != "quarantined":
        return f"{lot} is {status}: only a quarantined lot is released or rejected"
    return ""


def equipment_problem(
    *,
    asset_tag: str,
    equipment_type: str,
    status: str,
    calibration_due: date | None,
    on: date,
    expected_type: str | None = None,
) -> str:
    if status != "in_service":
        return f"{asset_tag} is OUT OF SERVICE"
    if calibration_due is None:
        return f"{asset_tag} has no calibration on record: do not use it"
    if calibration_due < on:
        return f"{asset_tag} is past its calibration date ({calibration_due.isoformat()}): do not use it"
    if expected_type and expected_type.casefold() != equipment_type.casefold():
        return f"{asset_tag} is a {equipment_type}, but this field needs a {expected_type}"
    return ""


def calibration_problem(
    *,
    asset_tag: str,
    calibration_due: date | None,
    latest_result: str | None,
    latest_certificate: str = "",
    latest_on: date | None = None,
    on: date,
) -> str:
    """Empty when the item's calibration is current on ``on`` (its latest calibration passed and is not yet
    due), else why it may not go (back) into service."""
    if latest_result is None:
        return f"{asset_tag} has no calibration on record: record one first"
    if latest_result != "pass":
        when = latest_on.isoformat() if latest_on else "?"
        return (
            f"{asset_tag} failed its latest calibration ({latest_certificate}, {when}): "
            "record a passing calibration first"
        )
    if calibration_due is None or calibration_due < on:
        due = calibration_due.isoformat() if calibration_due else "?"
        return f"{asset_tag} is past its calibration date ({due}): record a new calibration first"
    return ""


#: no calibration interval is longer; a date further off is a typing error
MAX_CALIBRATION_INTERVAL_DAYS = 5 * 366


def calibration_entry_problem(*, result: str, calibrated_on: date, next_due: date | None, on: date) -> str:
    """Empty when a calibration as typed can be recorded on ``on``, else what is wrong with it."""
    if result not in ("pass", "fail"):
        return f"calibration result must be pass or fail, not {result!r}"
    if calibrated_on > on:
        return f"calibration date {calibrated_on.isoformat()} is in the future"
    if calibrated_on < on - timedelta(days=MAX_CALIBRATION_INTERVAL_DAYS):
        return f"calibration date {calibrated_on.isoformat()} is more than five years ago: check the year"
    if result == "fail":
        return "" if next_due is None else "a failed calibration has no next due date: leave it empty"
    if next_due is None:
        return "the next due date is required for a passing calibration"
    if next_due <= calibrated_on:
        return f"next due date {next_due.isoformat()} must come after the calibration date"
    if next_due > calibrated_on + timedelta(days=MAX_CALIBRATION_INTERVAL_DAYS):
        # 0001-01-01 to 9999-12-31 would count as calibrated for ever
        return f"next due date {next_due.isoformat()} is more than five years after the calibration: check it"
    return ""
