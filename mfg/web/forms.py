"""Reading form fields into typed values; a malformed field is a refusal that names the field."""

from __future__ import annotations

import re
from datetime import date

from flask import abort, request

from mfg.errors import ValidationRefused

# Record ids are INTEGER columns: PostgreSQL refuses anything larger, SQLite anything beyond 64 bits.
LARGEST_ID = 2**31 - 1


def text(name: str, label: str, *, required: bool = True, max_length: int = 500) -> str:
    value = request.form.get(name, "").strip()
    if required and not value:
        raise ValidationRefused(f"{label} is required")
    if len(value) > max_length:
        raise ValidationRefused(f"{label} is longer than {max_length} characters")
    return value


# Python's fromisoformat also takes week dates (2026-W48-5) and compact ones (20261127): not what a date
# input sends, and not what a person means.
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date(name: str, label: str) -> date:
    raw = text(name, label, max_length=20)
    try:
        if not DATE_PATTERN.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ValidationRefused(f"{label} {raw!r} is not a date (use YYYY-MM-DD)") from exc


def whole_number(name: str, label: str) -> int:
    raw = text(name, label, max_length=20)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationRefused(f"{label} {raw!r} is not a whole number") from exc
    if abs(value) > LARGEST_ID:
        raise ValidationRefused(f"{label} {raw!r} is out of range")
    return value


def page_cursor(name: str) -> int | None:
    """A paging cursor in the query string ("events before id N"): None when absent or not a whole number (the
    first page), the largest id when beyond it; a 400 when it can name no record (zero or negative), never the
    database's out-of-range error."""
    raw = request.args.get(name, "").strip()
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        return None
    # beyond 20 digits the number is out of range either way (and int() refuses thousands of digits)
    value = int(raw) if len(digits) <= 20 else (-1 if raw.startswith("-") else LARGEST_ID)
    if value < 1:
        abort(400, description=f"{name}={raw[:20]} names no record: ids start at 1")
    return min(value, LARGEST_ID)
