"""Whether a lot or a piece of equipment may be used on a given day. Pure: no database."""

from __future__ import annotations

from datetime import date


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


def equipment_problem(
    *,
    asset_tag: str,
    equipment_type: str,
    status: str,
    calibration_due: date,
    on: date,
    expected_type: str | None = None,
) -> str:
    if status != "in_service":
        return f"{asset_tag} is OUT OF SERVICE"
    if calibration_due < on:
        return f"{asset_tag} is past its calibration date ({calibration_due.isoformat()}): do not use it"
    if expected_type and expected_type.casefold() != equipment_type.casefold():
        return f"{asset_tag} is a {equipment_type}, but this field needs a {expected_type}"
    return ""
