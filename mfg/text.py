"""Text a service stores, checked against its column before the database sees it.

PostgreSQL refuses a value longer than its ``VARCHAR(n)`` with an error (a 500 at the request boundary) and
SQLite stores it whole: either way the rule belongs to the domain, with a refusal that names the field.
Characters that print as nothing or reorder what is shown (a byte-order mark, a right-to-left override, a
zero-width space, control characters) are refused too: a record must read as it was typed.

Scan codes (reagent lot labels, asset tags, workstation codes) carry only what a barcode carries: printable
ASCII. "NaN" is a code like any other; it is never read as a number.
"""

from __future__ import annotations

import unicodedata

from mfg.errors import ValidationRefused

# Joiners are part of how some scripts are written; other format characters are invisible or reorder text.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})
_LINE_BREAKS = frozenset({"\n", "\r", "\t"})
# Control (Cc), format (Cf), surrogate (Cs), private use (Co), unassigned (Cn), line and paragraph separators
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: free text in TEXT columns (reasons, assessments, investigations): no column limit, but a bound all the same
FREE_TEXT_MAX = 4000


def _unprintable(value: str, *, multiline: bool) -> str | None:
    for char in value:
        if multiline and char in _LINE_BREAKS:
            continue
        if char in _ALLOWED_FORMAT:
            continue
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def _refusal(message: str, entity_type: str, entity_id: str) -> ValidationRefused:
    return ValidationRefused(message, entity_type=entity_type, entity_id=entity_id)


def checked_text(
    value: str | None,
    field_label: str,
    max_length: int,
    *,
    required: bool = True,
    multiline: bool = False,
    entity_type: str = "",
    entity_id: str = "",
) -> str:
    """``value`` stripped, or a refusal naming ``field_label``: empty when required, longer than
    ``max_length`` characters, or holding a character that does not print (line breaks only if
    ``multiline``)."""
    text = (value or "").strip()
    if required and not text:
        raise _refusal(f"{field_label} is required", entity_type, entity_id)
    if len(text) > max_length:
        raise _refusal(
            f"{field_label} is longer than {max_length} characters ({len(text)} typed)",
            entity_type,
            entity_id,
        )
    bad = _unprintable(text, multiline=multiline)
    if bad is not None:
        raise _refusal(
            f"{field_label} contains a character that does not print (U+{ord(bad):04X} "
            f"{unicodedata.name(bad, 'unnamed')}): type it again",
            entity_type,
            entity_id,
        )
    return text


def scan_code(
    value: str | None, field_label: str, max_length: int, *, entity_type: str = "", entity_id: str = ""
) -> str:
    """A code a barcode carries: printable ASCII (spaces inside only), at most ``max_length`` characters."""
    code = checked_text(value, field_label, max_length, entity_type=entity_type, entity_id=entity_id)
    bad = next((c for c in code if not " " <= c <= "~"), None)
    if bad is not None:
        raise _refusal(
            f"{field_label} {code!r} has a character a barcode does not carry (U+{ord(bad):04X} "
            f"{unicodedata.name(bad, 'unnamed')}): only printable ASCII",
            entity_type,
            entity_id,
        )
    return code
