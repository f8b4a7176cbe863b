"""What a label says (frozen dataclasses of plain values, no database objects) and the stock it prints on.

Validation here keeps a label from contradicting itself: each code must parse as the ISBT 128 structure
its field names, and the printed expiry text must begin with the date and time encoded in the expiry
barcode, so text and barcode cannot disagree.

The syringe label says what the syringe holds (the measured dose, volume and concentration) and who it is
for (the study's two patient identifiers). The shipper label is for the outside of a package in transit:
where it goes, how to handle it, and no name or date of birth unless the study allows them there.

The shipper's DataMatrix carries an ISBT 128 compound message (data structure 023) built as ICCBBA's
Standard Technical Specification ST-001 v6.2.2 §2.4.23 defines it; see ``compound_message``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from labels import isbt128
from labels.layout import Box, LabelError
from labels.numbers import superscript_powers

__all__ = [
    "CONTAINER_STOCK",
    "COMPOUND_UNDEFINED_SEQUENCE",
    "CRYOVIAL_STOCK",
    "PATIENT_IDENTIFIER_CAPTIONS",
    "SHIPPER_STOCK",
    "SYRINGE_STOCK",
    "ContainerLabel",
    "LabelStock",
    "PatientIdentifier",
    "ShipperLabel",
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
# Cryogenic stock: a bank vial also carries the intermediate product's code (a second Code 128), which
# does not fit under the container barcode on 2 x 1 in.
CRYOVIAL_STOCK = LabelStock("cryovial label 2 x 1.5 in", 50.8, 38.1, 1.5)

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


def _positive(obj: object, *fields: str) -> None:
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise LabelError(f"{type(obj).__name__}.{name} must be a number, got {value!r}")
        if value <= 0:
            raise LabelError(f"{type(obj).__name__}.{name} must be positive, got {value!r}")


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
    product_code: str | None = None
    """ISBT 128 product code (003) of the product the container holds, printed as a second Code 128:
    a bank cryovial carries the intermediate product's code."""

    def __post_init__(self) -> None:
        _required(self, "container_id", "subject_name", "study_subject_id", "contents")
        _date(self, "date_of_birth", "label_date")
        if not all(32 < ord(ch) < 127 for ch in self.container_id):
            raise LabelError(
                f"ContainerLabel.container_id must be printable ASCII, got {self.container_id!r}"
            )
        if self.din_code is not None:
            _structure(self, "din_code", isbt128.Din)
        if self.product_code is not None:
            if self.din_code is None:
                raise LabelError("ContainerLabel.product_code needs the DIN it belongs to")
            _structure(self, "product_code", isbt128.ProductCode)

    @property
    def din(self) -> isbt128.Din | None:
        return None if self.din_code is None else parse_din(self.din_code)


@dataclass(frozen=True)
class PatientIdentifier:
    """One patient identifier as a label prints it: ``kind`` from PATIENT_IDENTIFIER_CAPTIONS, ``value``
    as text (a date of birth as 1961-04-12)."""

    kind: str
    value: str

    def __post_init__(self) -> None:
        if self.kind not in PATIENT_IDENTIFIER_CAPTIONS:
            raise LabelError(
                f"PatientIdentifier.kind {self.kind!r} is not one of {sorted(PATIENT_IDENTIFIER_CAPTIONS)}"
            )
        _required(self, "value")

    @property
    def caption(self) -> str:
        return PATIENT_IDENTIFIER_CAPTIONS[self.kind]


DOSE_CONSISTENCY = 0.01
"""The printed dose may differ from concentration × volume by rounding only."""


@dataclass(frozen=True)
class SyringeLabel:
    """Final product label (DESIGN.md §8): what is in the syringe, for whom, and for which injection."""

    product_name: str
    din_code: str
    product_code: str
    expiry_code: str
    expiry_text: str
    """Printed as given, e.g. '2026-11-26 18:30 CST'; must start with the encoded date and time."""
    coi_code: str
    patient_identifiers: tuple[PatientIdentifier, ...]
    """The study's two identifiers (name and date of birth by default) that the bedside check matches."""
    study_subject_id: str
    """Always printed, whether or not it is one of the two identifiers."""
    dose_cells: float
    """The measured dose: viable cells in the syringe (final count × volume in the syringe)."""
    volume_ml: float
    """The volume in the syringe."""
    concentration_per_ml: float
    """Viable cells per mL measured at the final count."""
    injection_number: int
    injections: int
    protocol_visit: int
    protocol_number: str
    ind_number: str
    handling: str
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
            "study_subject_id",
            "protocol_number",
            "ind_number",
            "handling",
            "diluent",
            "storage",
            "route",
            "autologous_statement",
            "investigational_statement",
            "facility_name",
        )
        if self.infectious_statement is not None:
            _required(self, "infectious_statement")
        _address(self, "facility_address")
        _structure(self, "din_code", isbt128.Din)
        _structure(self, "product_code", isbt128.ProductCode)
        _structure(self, "coi_code", isbt128.ChainOfIdentity)
        _expiry(self)
        kinds = [p.kind for p in self.patient_identifiers]
        if len(kinds) != 2 or len(set(kinds)) != 2:
            raise LabelError(f"SyringeLabel.patient_identifiers must be two different kinds, got {kinds}")
        _positive(self, "dose_cells", "volume_ml", "concentration_per_ml")
        if abs(self.concentration_per_ml * self.volume_ml / self.dose_cells - 1) > DOSE_CONSISTENCY:
            raise LabelError(
                f"SyringeLabel: the dose {self.dose_cells:.4g} is not the concentration "
                f"{self.concentration_per_ml:.4g}/mL times the volume {self.volume_ml:g} mL"
            )
        for name in ("injection_number", "injections", "protocol_visit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LabelError(f"SyringeLabel.{name} must be a whole number from 1, got {value!r}")
        if self.injection_number > self.injections:
            raise LabelError(
                f"SyringeLabel: injection {self.injection_number} of {self.injections} does not exist"
            )

    @property
    def address_lines(self) -> list[str]:
        return _lines(self.facility_address)

    def identifier(self, kind: str) -> str | None:
        return next((p.value for p in self.patient_identifiers if p.kind == kind), None)


@dataclass(frozen=True)
class ShipperLabel:
    """The outside of a package in transit: ship-from and ship-to, handling, a 24-hour contact, the DIN and
    chain of identity barcodes and the DataMatrix. Only the COI and the study subject id identify the
    patient, unless the study allows the name and date of birth (both given, or neither)."""

    product_name: str
    din_code: str
    product_code: str
    expiry_code: str
    expiry_text: str
    coi_code: str
    study_subject_id: str
    ship_from_name: str
    ship_from_address: str
    ship_to_name: str
    ship_to_address: str
    contact_phone: str
    """Answered 24 hours a day while the package is in transit."""
    shipping_temperature: str
    ship_date: date
    handling: str
    """Must tell the carrier not to X-ray the package; the study's text."""
    autologous_statement: str
    investigational_statement: str
    infectious_statement: str | None
    subject_name: str | None = None
    date_of_birth: date | None = None

    def __post_init__(self) -> None:
        _required(
            self,
            "product_name",
            "expiry_text",
            "study_subject_id",
            "ship_from_name",
            "ship_to_name",
            "contact_phone",
            "shipping_temperature",
            "handling",
            "autologous_statement",
            "investigational_statement",
        )
        if self.infectious_statement is not None:
            _required(self, "infectious_statement")
        _address(self, "ship_from_address")
        _address(self, "ship_to_address")
        _date(self, "ship_date")
        _structure(self, "din_code", isbt128.Din)
        _structure(self, "product_code", isbt128.ProductCode)
        _structure(self, "coi_code", isbt128.ChainOfIdentity)
        _expiry(self)
        if (self.subject_name is None) != (self.date_of_birth is None):
            raise LabelError("ShipperLabel: print the subject's name and date of birth together, or neither")
        if self.subject_name is not None:
            _required(self, "subject_name")
            _date(self, "date_of_birth")


def _address(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str) or not _lines(value):
        raise LabelError(f"{type(obj).__name__}.{name} must be non-empty text, got {value!r}")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _expiry(label: SyringeLabel | ShipperLabel) -> None:
    expiry = _structure(label, "expiry_code", isbt128.ExpirationDateTime)
    if not label.expiry_text.startswith(expiry.eye_readable):
        raise LabelError(
            f"{type(label).__name__}.expiry_text {label.expiry_text!r} does not start with the encoded "
            f"expiry {expiry.eye_readable!r}"
        )


def barcode_strings(label: SyringeLabel | ShipperLabel) -> dict[str, str]:
    """The ISBT 128 data structures of a final product label: the syringe's four Code 128 symbols, and the
    content of the shipper's DataMatrix (which prints only the DIN and COI as Code 128)."""
    return {
        "din": label.din_code,
        "product_code": label.product_code,
        "expiry": label.expiry_code,
        "coi": label.coi_code,
    }


def compound_message(label: SyringeLabel | ShipperLabel) -> str:
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
