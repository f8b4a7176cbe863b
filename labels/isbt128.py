"""ISBT 128 data structures used on this project's labels, and the Mod 37-2 check character.

Pure functions and frozen dataclasses only, so labels, scanners and tests share one strict definition.

Decisions (kept here so callers know what to expect):

* ``parse`` takes exactly the scanned string: no whitespace is stripped, so a trailing newline or a
  space is an error. Scanner suffixes must be removed by whoever reads the scanner.
* DIN and chain-of-identity years are the two-digit ISBT year (0-99); four-digit years are refused,
  not reduced, so a caller cannot silently pass the wrong field.
* Date/times (``cyyjjjhhmm``) map ``cyy`` to the one year in 1900..2899 ending in those three digits
  (``cyy >= 900`` -> ``1000 + cyy``, else ``2000 + cyy``). Values are naive wall-clock datetimes in the
  facility's local time (ISBT carries no zone; the label prints the zone as text). Builders truncate
  to the minute; the dataclass constructors require minute precision.
* Eye-readable text omits data identifiers and check characters (the label prints the check
  character separately, boxed): DIN ``W1234 26 000042 00``, product code ``S1234 1 00``,
  date/time ``2026-11-26 14:30``, chain of identity ``W1234 26 ABC123``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, TypeVar

from stdnum.iso7064 import mod_37_2

__all__ = [
    "AUTOLOGOUS_USE_ONLY",
    "ChainOfIdentity",
    "CollectionDateTime",
    "Din",
    "ExpirationDateTime",
    "InvalidCode",
    "IsbtStructure",
    "ProductCode",
    "build_coi",
    "build_collection",
    "build_din",
    "build_expiration",
    "build_product_code",
    "check_flags",
    "din_check_character",
    "eye_readable",
    "parse",
    "parse_coi_identifier",
]

AUTOLOGOUS_USE_ONLY = "1"
"""Type-of-collection character meaning 'for autologous use only'."""

_DIGITS = frozenset(string.digits)
_UPPER = frozenset(string.ascii_uppercase)
_LOWER = frozenset(string.ascii_lowercase)
_ALNUM_UPPER = _DIGITS | _UPPER
# ST-001: the first character of a facility identification number is A-N, P-Z or 1-9 (no O, no 0, which a
# reader cannot tell apart).
_FACILITY_FIRST = (_UPPER - {"O"}) | (_DIGITS - {"0"})
_COLLECTION_TYPE = _DIGITS | _UPPER | _LOWER
_MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"

DIN_ID = "="
PRODUCT_CODE_ID = "=<"
EXPIRATION_ID = "&>"
COLLECTION_ID = "&*"
COI_ID = "&/CH"


class InvalidCode(ValueError):
    """A code or part that is not a valid ISBT 128 structure; the message names the structure and part."""


def _require(structure: str, part: str, text: str, allowed: frozenset[str], expected: str) -> None:
    """Raise naming the first character of ``text`` outside ``allowed``."""
    for ch in text:
        if ch not in allowed:
            raise InvalidCode(f"{structure}: bad character {ch!r} in {part} (expected {expected})")


def _digits(structure: str, part: str, text: str) -> int:
    """Parse ASCII digits only (``int`` would also accept Unicode digits, signs and underscores)."""
    _require(structure, part, text, _DIGITS, "digits 0-9")
    return int(text)


def _check_int(structure: str, part: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidCode(f"{structure}: {part} must be an integer {low}..{high}, got {value!r}")


def _check_str(structure: str, part: str, value: object, length: int) -> str:
    if not isinstance(value, str) or len(value) != length:
        plural = "" if length == 1 else "s"
        raise InvalidCode(f"{structure}: {part} must be {length} character{plural}, got {value!r}")
    return value


def _check_facility_id(structure: str, facility_id: object) -> None:
    text = _check_str(structure, "facility id", facility_id, 5)
    if text[0] not in _FACILITY_FIRST:
        raise InvalidCode(
            f"{structure}: facility id must start with A-N, P-Z or 1-9, got {text[0]!r} in {text!r}"
        )
    _require(structure, "facility id", text[1:], _DIGITS, "digits 0-9 after the first character")


def _check_character(structure: str, data: str) -> str:
    _check_str(structure, "check data", data, 13)
    _require(structure, "check data", data, _ALNUM_UPPER, "0-9 or A-Z")
    return mod_37_2.calc_check_digit(data, alphabet=_MOD37_ALPHABET)


def din_check_character(din: str) -> str:
    """ISO/IEC 7064 Mod 37-2 check character of a 13-character DIN (no '=', no flags)."""
    return _check_character("DIN", din)


# DIN flag characters (ST-001, table of flag types): two digits. 00-59 are type 1 and 2 (process control,
# facility use); 60-96 are type 3, 60 + the Mod 37-2 value of the DIN's check character, so that a scan can be
# checked without the eye-readable box; 97-99 are not assigned.
LAST_PLAIN_FLAG = 59
CHECK_FLAG_BASE = 60


def check_flags(din: str) -> str:
    """The type-3 flags of a 13-character DIN: 60 + the value of its check character (``60``-``96``)."""
    return f"{CHECK_FLAG_BASE + _MOD37_ALPHABET.index(din_check_character(din)):02d}"


def _check_flags(din: str, flags: str) -> None:
    value = _digits("DIN", "flags", flags)
    if value <= LAST_PLAIN_FLAG:
        return
    if value >= CHECK_FLAG_BASE + len(_MOD37_ALPHABET):
        raise InvalidCode(f"DIN: flags {flags} are not assigned (97-99 are reserved)")
    expected = check_flags(din)
    if flags != expected:
        raise InvalidCode(
            f"DIN: type-3 flags {flags} do not match the DIN's check character "
            f"{din_check_character(din)!r} (expected {expected})"
        )


def _check_length(structure: str, content: str, expected: str, allowed: tuple[int, ...]) -> None:
    if len(content) not in allowed:
        raise InvalidCode(f"{structure}: expected {expected}, got {len(content)}")


@dataclass(frozen=True)
class Din:
    """Donation identification number, data structure 001 (``=`` + DIN + 2 flag characters)."""

    facility_id: str
    year: int
    sequence: int
    flags: str = "00"

    def __post_init__(self) -> None:
        _check_facility_id("DIN", self.facility_id)
        _check_int("DIN", "year", self.year, 0, 99)
        _check_int("DIN", "sequence number", self.sequence, 1, 999_999)
        _check_str("DIN", "flags", self.flags, 2)
        _check_flags(self.din, self.flags)

    @property
    def din(self) -> str:
        return f"{self.facility_id}{self.year:02d}{self.sequence:06d}"

    @property
    def check_character(self) -> str:
        return din_check_character(self.din)

    @property
    def code(self) -> str:
        return f"{DIN_ID}{self.din}{self.flags}"

    @property
    def eye_readable(self) -> str:
        return f"{self.facility_id} {self.year:02d} {self.sequence:06d} {self.flags}"


def build_din(facility_id: str, year: int, sequence: int, flags: str = "00") -> Din:
    """Build a DIN; ``year`` is the two-digit ISBT year (0-99)."""
    return Din(facility_id, year, sequence, flags)


def _parse_din(content: str) -> Din:
    _check_length("DIN", content, "15 characters after '=' (13-character DIN + 2 flags)", (15,))
    _check_facility_id("DIN", content[:5])
    year = _digits("DIN", "year", content[5:7])
    sequence = _digits("DIN", "sequence number", content[7:13])
    return Din(content[:5], year, sequence, content[13:])


@dataclass(frozen=True)
class ProductCode:
    """Product code, data structure 003 (``=<`` + description code + collection type + division)."""

    product_description_code: str
    collection_type: str
    division: str = "00"

    def __post_init__(self) -> None:
        s = "product code"
        pdc = _check_str(s, "product description code", self.product_description_code, 5)
        _require(s, "product description code", pdc[0], _UPPER, "a letter A-Z first")
        _require(s, "product description code", pdc[1:], _DIGITS, "4 digits after the letter")
        _check_str(s, "type of collection", self.collection_type, 1)
        _require(s, "type of collection", self.collection_type, _COLLECTION_TYPE, "0-9, A-Z or a-z")
        div = _check_str(s, "division", self.division, 2)
        if div[0] not in _UPPER | {"0"} or div[1] not in _LOWER | {"0"}:
            raise InvalidCode(f"{s}: bad division {div!r} (first character A-Z or '0', second a-z or '0')")

    @property
    def code(self) -> str:
        return f"{PRODUCT_CODE_ID}{self.product_description_code}{self.collection_type}{self.division}"

    @property
    def eye_readable(self) -> str:
        return f"{self.product_description_code} {self.collection_type} {self.division}"


def build_product_code(
    product_description_code: str, collection_type: str, division: str = "00"
) -> ProductCode:
    """Build a product code; ``division`` "00" means undivided."""
    return ProductCode(product_description_code, collection_type, division)


def _parse_product_code(content: str) -> ProductCode:
    _check_length("product code", content, "8 characters after '=<'", (8,))
    return ProductCode(content[:5], content[5], content[6:])


@dataclass(frozen=True)
class _IsbtDateTime:
    """Shared ``cyyjjjhhmm`` form; ``value`` is naive facility-local wall-clock time, minute precision."""

    value: datetime

    IDENTIFIER: ClassVar[str] = ""
    STRUCTURE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        s, v = self.STRUCTURE, self.value
        if not isinstance(v, datetime):
            raise InvalidCode(f"{s}: expected a datetime, got {v!r}")
        if v.tzinfo is not None:
            raise InvalidCode(f"{s}: expected a naive facility-local datetime, got zone {v.tzinfo}")
        if v.second or v.microsecond:
            raise InvalidCode(f"{s}: {v.isoformat()} has seconds; ISBT 128 carries minutes only")
        if not 1900 <= v.year <= 2899:
            raise InvalidCode(f"{s}: year {v.year} is outside 1900..2899")

    @property
    def code(self) -> str:
        v = self.value
        return f"{self.IDENTIFIER}{v.year % 1000:03d}{v.timetuple().tm_yday:03d}{v.hour:02d}{v.minute:02d}"

    @property
    def eye_readable(self) -> str:
        return f"{self.value:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class ExpirationDateTime(_IsbtDateTime):
    """Expiration date and time, data structure 005 (``&>cyyjjjhhmm``)."""

    IDENTIFIER: ClassVar[str] = EXPIRATION_ID
    STRUCTURE: ClassVar[str] = "expiration date/time"


@dataclass(frozen=True)
class CollectionDateTime(_IsbtDateTime):
    """Collection date and time, data structure 007 (``&*cyyjjjhhmm``)."""

    IDENTIFIER: ClassVar[str] = COLLECTION_ID
    STRUCTURE: ClassVar[str] = "collection date/time"


def _to_minute(dt: datetime) -> datetime:
    if not isinstance(dt, datetime):
        raise InvalidCode(f"date/time: expected a datetime, got {dt!r}")
    return dt.replace(second=0, microsecond=0)


def build_expiration(dt: datetime) -> ExpirationDateTime:
    """Expiration at ``dt`` (naive, facility-local), truncated to the minute."""
    return ExpirationDateTime(_to_minute(dt))


def build_collection(dt: datetime) -> CollectionDateTime:
    """Collection at ``dt`` (naive, facility-local), truncated to the minute."""
    return CollectionDateTime(_to_minute(dt))


_DT = TypeVar("_DT", bound=_IsbtDateTime)


def _parse_datetime(cls: type[_DT], content: str) -> _DT:
    s = cls.STRUCTURE
    _check_length(s, content, f"10 digits (cyyjjjhhmm) after {cls.IDENTIFIER!r}", (10,))
    _digits(s, "cyyjjjhhmm", content)
    cyy, day, hour, minute = int(content[:3]), int(content[3:6]), int(content[6:8]), int(content[8:])
    year = 1000 + cyy if cyy >= 900 else 2000 + cyy
    days_in_year = (datetime(year + 1, 1, 1) - datetime(year, 1, 1)).days
    if not 1 <= day <= days_in_year:
        raise InvalidCode(f"{s}: day of year {day:03d} does not exist in {year}")
    if hour > 23:
        raise InvalidCode(f"{s}: hour {hour:02d} is out of range 00-23")
    if minute > 59:
        raise InvalidCode(f"{s}: minute {minute:02d} is out of range 00-59")
    return cls(datetime(year, 1, 1, hour, minute) + timedelta(days=day - 1))


@dataclass(frozen=True)
class ChainOfIdentity:
    """Chain of identity identifier, data structure 040 in this project's form (``&/CH`` + 13 characters,
    a fixed length).

    The Mod 37-2 check character is printed beside the identifier and is not part of the barcode data: a
    scanned 040 with a fourteenth character is refused, like any other length. Typed identifiers (with or
    without the boxed check character) go through ``parse_coi_identifier``.
    """

    facility_id: str
    year: int
    serial: str

    def __post_init__(self) -> None:
        s = "chain of identity"
        _check_facility_id(s, self.facility_id)
        _check_int(s, "year", self.year, 0, 99)
        _check_str(s, "serial", self.serial, 6)
        _require(s, "serial", self.serial, _ALNUM_UPPER, "0-9 or A-Z")

    @property
    def identifier(self) -> str:
        return f"{self.facility_id}{self.year:02d}{self.serial}"

    @property
    def check_character(self) -> str:
        return _check_character("chain of identity", self.identifier)

    @property
    def code(self) -> str:
        return f"{COI_ID}{self.identifier}"

    @property
    def eye_readable(self) -> str:
        return f"{self.facility_id} {self.year:02d} {self.serial}"


def build_coi(facility_id: str, year: int, serial: str) -> ChainOfIdentity:
    """Build a chain of identity identifier; ``year`` is two-digit (0-99)."""
    return ChainOfIdentity(facility_id, year, serial)


def _parse_coi(content: str) -> ChainOfIdentity:
    s = "chain of identity"
    expected = "exactly 13 characters after '&/CH' (the check character is not encoded)"
    _check_length(s, content, expected, (13,))
    _check_facility_id(s, content[:5])
    return ChainOfIdentity(content[:5], _digits(s, "year", content[5:7]), content[7:13])


def parse_coi_identifier(typed: str) -> ChainOfIdentity:
    """A chain of identity identifier as a person types it from the label: the 13 characters, optionally
    followed by the boxed check character, which must then be right."""
    s = "chain of identity"
    _check_length(s, typed, "13 characters (14 with the check character)", (13, 14))
    coi = _parse_coi(typed[:13])
    if len(typed) == 14 and typed[13] != coi.check_character:
        raise InvalidCode(f"{s}: wrong check character, expected {coi.check_character!r}, got {typed[13]!r}")
    return coi


IsbtStructure = Din | ProductCode | ExpirationDateTime | CollectionDateTime | ChainOfIdentity


def parse(code: str) -> IsbtStructure:
    """Parse one scanned ISBT 128 data structure exactly as given (no whitespace stripping)."""
    if not isinstance(code, str):
        raise InvalidCode(f"code must be a string, got {type(code).__name__}")
    if not code:
        raise InvalidCode("empty code: no data identifier")
    if code.startswith(PRODUCT_CODE_ID):
        return _parse_product_code(code[2:])
    if code.startswith(DIN_ID) and (len(code) == 1 or (code[1].isascii() and code[1].isalnum())):
        return _parse_din(code[1:])
    if code.startswith(EXPIRATION_ID):
        return _parse_datetime(ExpirationDateTime, code[2:])
    if code.startswith(COLLECTION_ID):
        return _parse_datetime(CollectionDateTime, code[2:])
    if code.startswith("&/"):
        if code[2:4] != "CH":
            raise InvalidCode(f"chain of identity: expected 'CH' after '&/', got {code[2:4]!r}")
        return _parse_coi(code[4:])
    raise InvalidCode(f"unknown data identifier {code[:2]!r}")


def eye_readable(value: IsbtStructure | str) -> str:
    """Text printed under a barcode: no data identifier, no check character. Accepts a code string too."""
    return (parse(value) if isinstance(value, str) else value).eye_readable
