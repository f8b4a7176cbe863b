"""What a label says (frozen dataclasses of plain values, no database objects) and the stock it prints on.

Validation here keeps a label from contradicting itself: each code must parse as the ISBT 128 structure
its field names, and the printed expiry text must begin with the date and time encoded in the expiry
barcode, so text and barcode cannot disagree.

The shipper's DataMatrix carries an ISBT 128 compound message (data structure 023) built as ICCBBA's
Standard Technical Specification ST-001 v6.2.2 §2.4.23 defines it; see ``compound_message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from labels import isbt128
from labels.layout import Box, LabelError
from labels.numbers import superscript_powers

__all__ = [
    "CONTAINER_STOCK",
    "COMPOUND_UNDEFINED_SEQUENCE",
    "PATIENT_IDENTIFIER_CAPTIONS",
    "SHIPPER_STOCK",
    "SYRINGE_STOCK",
    "ContainerLabel",
    "LabelStock",
    "SyringeLabel",
    "barcode_strings",
    "compound_message",
    "display_dose",
]

COMPOUND_UNDEFINED_SEQUENCE = "000"
"""ST-001 §2.4.23: ``bbb`` = 000 is an 'undefined message' (count given, order not); ICCBBA encourages it."""


@dataclass(frozen=True)
class LabelStock:
    """Label stock in mm; ``margin_mm`` is the unprintable (or kept-clear) border on every side."""

    name: str
    width_mm: float
    height_mm: float
    margin_mm: float

    def __post_init__(self) -> None:
        if min(self.width_mm, self.height_mm) <= 2 * self.margin_mm or self.margin_mm < 0:
            raise ValueError(f"label stock {self.name!r}: margins leave no printable area")

    @property
    def printable(self) -> Box:
        m = self.margin_mm
        return Box(m, m, self.width_mm - 2 * m, self.height_mm - 2 * m)


SYRINGE_STOCK = LabelStock("syringe flag label 4 x 3 in", 101.6, 76.2, 2.0)
SHIPPER_STOCK = LabelStock("shipper/bag label 4 x 4 in", 101.6, 101.6, 2.5)
CONTAINER_STOCK = LabelStock("container label 2 x 1 in", 50.8, 25.4, 1.5)

PATIENT_IDENTIFIER_CAPTIONS = {
    "name": "Name",
    "date_of_birth": "DOB",
    "medical_record_number": "MRN",
    "study_subject_id": "Study ID",
}
"""The patient identifiers a study may choose for its syringe label (and the bedside check), with the
caption each is printed under."""


def _required(obj: object, *fields: str) -> None:
    for name in fields:
        value = getattr(obj, name)
        if not isinstance(value, str) or not value.strip():
            raise LabelError(f"{type(obj).__name__}.{name} must be non-empty text, got {value!r}")
        if "\n" in value or "\r" in value:
            raise LabelError(f"{type(obj).__name__}.{name} must be a single line, got {value!r}")


def _date(obj: object, *fields: str) -> None:
    for name in fields:
        if not isinstance(getattr(obj, name), date):
            raise LabelError(f"{type(obj).__name__}.{name} must be a date, got {getattr(obj, name)!r}")


def parse_din(code: str) -> isbt128.Din:
    parsed = isbt128.parse(code)
    if not isinstance(parsed, isbt128.Din):
        raise LabelError(f"{code!r} is not a DIN")
    return parsed


def _structure(obj: object, name: str, expected: type) -> isbt128.IsbtStructure:
    code = getattr(obj, name)
    try:
        parsed = isbt128.parse(code)
    except isbt128.InvalidCode as exc:
        raise LabelError(f"{type(obj).__name__}.{name}: {exc}") from exc
    if not isinstance(parsed, expected):
        raise LabelError(f"{type(obj).__name__}.{name}: {code!r} is not a {expected.__name__}")
    return parsed


@dataclass(frozen=True)
class ContainerLabel:
    """In-process container (tube, flask, cryovial): Code 128 of the container id plus identity text."""

    container_id: str
    din_code: str | None
    subject_name: str
    date_of_birth: date
    study_subject_id: str
    contents: str
    label_date: date

    def __post_init__(self) -> None:
        _required(self, "container_id", "subject_name", "study_subject_id", "contents")
        _date(self, "date_of_birth", "label_date")
        if not all(32 < ord(ch) < 127 for ch in self.container_id):
            raise LabelError(
                f"ContainerLabel.container_id must be printable ASCII, got {self.container_id!r}"
            )
        if self.din_code is not None:
            _structure(self, "din_code", isbt128.Din)

    @property
    def din(self) -> isbt128.Din | None:
        return None if self.din_code is None else parse_din(self.din_code)


@dataclass(frozen=True)
class SyringeLabel:
    """Final product label (DESIGN.md §8), used for the syringe and, with a DataMatrix, the shipper/bag."""

    product_name: str
    din_code: str
    product_code: str
    expiry_code: str
    expiry_text: str
    """Printed as given, e.g. '2026-11-26 18:30 CST'; must start with the encoded date and time."""
    coi_code: str
    subject_name: str
    date_of_birth: date
    study_subject_id: str
    dose_text: str
    """e.g. '5.0 × 10^7 viable cells'; '10^N' is printed with a superscript exponent."""
    volume_text: str
    diluent: str
    storage: str
    route: str
    autologous_statement: str
    investigational_statement: str
    infectious_statement: str | None
    facility_name: str
    facility_address: str
    """One or more lines separated by newlines."""

    def __post_init__(self) -> None:
        _required(
            self,
            "product_name",
            "expiry_text",
            "subject_name",
            "study_subject_id",
            "dose_text",
            "volume_text",
            "diluent",
            "storage",
            "route",
            "autologous_statement",
            "investigational_statement",
            "facility_name",
        )
        if self.infectious_statement is not None:
            _required(self, "infectious_statement")
        if not isinstance(self.facility_address, str) or not self.facility_address.strip():
            raise LabelError(
                f"SyringeLabel.facility_address must be non-empty text, got {self.facility_address!r}"
            )
        _date(self, "date_of_birth")
        _structure(self, "din_code", isbt128.Din)
        _structure(self, "product_code", isbt128.ProductCode)
        _structure(self, "coi_code", isbt128.ChainOfIdentity)
        expiry = _structure(self, "expiry_code", isbt128.ExpirationDateTime)
        if not self.expiry_text.startswith(expiry.eye_readable):
            raise LabelError(
                f"SyringeLabel.expiry_text {self.expiry_text!r} does not start with the encoded expiry "
                f"{expiry.eye_readable!r}"
            )

    @property
    def address_lines(self) -> list[str]:
        return [line.strip() for line in self.facility_address.splitlines() if line.strip()]


def barcode_strings(label: SyringeLabel) -> dict[str, str]:
    """The exact data encoded in the four Code 128 symbols of a syringe or shipper label."""
    return {
        "din": label.din_code,
        "product_code": label.product_code,
        "expiry": label.expiry_code,
        "coi": label.coi_code,
    }


def compound_message(label: SyringeLabel) -> str:
    """ISBT 128 compound message (data structure 023) for the shipper label's DataMatrix.

    ICCBBA ST-001 v6.2.2 §2.4.23: ``=+aabbb`` where ``aa`` is the number of data structures that follow
    and ``bbb`` = 000 marks an undefined (unordered) message; the structures follow with their data
    identifiers and no separators.
    """
    structures = list(barcode_strings(label).values())
    return f"=+{len(structures):02d}{COMPOUND_UNDEFINED_SEQUENCE}{''.join(structures)}"


def display_dose(text: str) -> str:
    """'5.0 × 10^7 cells' -> '5.0 × 10⁷ cells': real superscript digits that pdftotext extracts as such."""
    return superscript_powers(text)
