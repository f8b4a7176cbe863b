"""Study definitions: data files in the package, validated on load with errors that name the field.

A second autologous study is a second TOML file, not new code.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labels import isbt128
from labels.data import PATIENT_IDENTIFIER_CAPTIONS

DEFAULT_STUDY = "aamsc"


class StudyDefinitionError(ValueError):
    """The study file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class Dosing:
    levels: tuple[float, ...]
    first_dose: float
    tolerance: float  # the delivered (measured) dose against the prescribed one
    min_volume_ml: float
    max_volume_ml: float
    volume_step_ml: float
    max_count_cv: float
    diluent: str
    route: str
    # The fill plan's own dose within this of the prescription, so rounding leaves the rest of `tolerance`
    # for counting error; the smallest suspension volume a syringe measures; the formulation's overage.
    planning_tolerance: float
    min_aliquot_ml: float
    overage_ml: float


@dataclass(frozen=True)
class Schedule:
    injections: int
    interval_months: int
    visit_window_days: int
    first_injection_visit: int


@dataclass(frozen=True)
class Product:
    product_description_code: str
    intermediate_description_code: str
    """The cryopreserved bank the doses are made from: printed on each cryovial."""
    collection_type: str
    stability_hours: float
    storage: str
    post_thaw_recovery: float


@dataclass(frozen=True)
class Facility:
    isbt_facility_id: str
    site_code: str
    time_zone: str


@dataclass(frozen=True)
class Release:
    viability_min_percent: float
    endotoxin_k_eu_per_kg: float


@dataclass(frozen=True)
class LabelTexts:
    autologous: str
    investigational: str
    not_evaluated: str
    handling: str
    patient_identifiers: tuple[str, str]
    """The two identifiers the syringe label prints and the bedside check matches, in printing order."""


@dataclass(frozen=True)
class Shipper:
    """The shipper label's texts and what it may show of the patient."""

    contact_phone: str
    """Answered 24 hours a day while a product is in transit."""
    temperature: str
    handling: str
    show_name_and_date_of_birth: bool
    """False: only the chain of identity and the study subject id on the outside of the package."""


@dataclass(frozen=True)
class LabelStocks:
    """(width, height, margin) in mm of the label stock for each kind of label."""

    syringe: tuple[float, float, float]
    shipper: tuple[float, float, float]
    container: tuple[float, float, float]
    cryovial: tuple[float, float, float]


@dataclass(frozen=True)
class Processes:
    """The master batch records (by code) that make this study's product."""

    collection_mbr: str  # collection to cryobank
    dose_mbr: str  # one prescribed dose, from the bank


@dataclass(frozen=True)
class StudyDefinition:
    key: str
    code: str
    short_name: str
    title: str
    protocol_number: str
    ind_number: str
    product_name: str
    subject_id_pattern: str
    subject_id_example: str
    dosing: Dosing
    schedule: Schedule
    product: Product
    facility: Facility
    release: Release
    labels: LabelTexts
    shipper: Shipper
    label_stock: LabelStocks
    processes: Processes

    def subject_id_problem(self, study_subject_id: str) -> str:
        if not re.fullmatch(self.subject_id_pattern, study_subject_id):
            return (
                f"study subject id {study_subject_id!r} does not have this study's form "
                f"(for example {self.subject_id_example})"
            )
        return ""


class _Reader:
    """Typed access to a TOML table that reports the dotted path of whatever is missing or wrong."""

    def __init__(self, source: str, data: dict[str, Any], prefix: str = "") -> None:
        self.source, self.data, self.prefix = source, data, prefix

    def fail(self, key: str, problem: str) -> StudyDefinitionError:
        return StudyDefinitionError(f"study definition {self.source}: {self.prefix}{key} {problem}")

    def table(self, key: str) -> _Reader:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, "is missing (a [table] is required)")
        return _Reader(self.source, value, f"{self.prefix}{key}.")

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        return value

    def number(self, key: str, *, low: float, high: float) -> float:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "must be a number")
        if not low <= value <= high:
            raise self.fail(key, f"is {value}, outside {low}..{high}")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def integer(self, key: str, *, low: int, high: int) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be a whole number")
        if not low <= value <= high:
            raise self.fail(key, f"is {value}, outside {low}..{high}")
        return value


def parse_definition(key: str, text: str, source: str = "") -> StudyDefinition:
    source = source or f"{key}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyDefinitionError(f"study definition {source}: not valid TOML: {exc}") from exc
    top = _Reader(source, raw)
    study = top.table("study")

    dosing_t = top.table("dosing")
    levels_raw = dosing_t.data.get("levels")
    if not isinstance(levels_raw, list) or not levels_raw:
        raise dosing_t.fail("levels", "must be a non-empty list of cell numbers")
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in levels_raw):
        raise dosing_t.fail("levels", "must hold positive numbers only")
    levels = tuple(sorted(float(v) for v in levels_raw))
    if len(set(levels)) != len(levels):
        raise dosing_t.fail("levels", "lists a dose level twice")
    first = dosing_t.number("first_dose", low=1, high=1e12)
    if first not in levels:
        raise dosing_t.fail(
            "first_dose", f"{first:g} is not one of the dose levels {[f'{v:g}' for v in levels]}"
        )
    min_ml = dosing_t.number("min_volume_ml", low=0.1, high=1000)
    max_ml = dosing_t.number("max_volume_ml", low=0.1, high=1000)
    if max_ml < min_ml:
        raise dosing_t.fail("max_volume_ml", f"({max_ml:g}) is below min_volume_ml ({min_ml:g})")
    dosing = Dosing(
        levels=levels,
        first_dose=first,
        tolerance=dosing_t.number("tolerance", low=0.0, high=0.5),
        min_volume_ml=min_ml,
        max_volume_ml=max_ml,
        volume_step_ml=dosing_t.number("volume_step_ml", low=0.001, high=max_ml),
        max_count_cv=dosing_t.number("max_count_cv", low=0.0, high=1.0),
        diluent=dosing_t.text("diluent"),
        route=dosing_t.text("route"),
        planning_tolerance=dosing_t.number("planning_tolerance", low=0.0, high=0.5),
        min_aliquot_ml=dosing_t.number("min_aliquot_ml", low=0.001, high=max_ml),
        overage_ml=dosing_t.number("overage_ml", low=0.0, high=max_ml),
    )
    if dosing.planning_tolerance > dosing.tolerance:
        raise dosing_t.fail("planning_tolerance", "is above the delivered-dose tolerance")

    sched_t = top.table("schedule")
    schedule = Schedule(
        injections=sched_t.integer("injections", low=1, high=52),
        interval_months=sched_t.integer("interval_months", low=0, high=24),
        visit_window_days=sched_t.integer("visit_window_days", low=0, high=90),
        first_injection_visit=sched_t.integer("first_injection_visit", low=1, high=100),
    )

    prod_t = top.table("product")
    collection_type = prod_t.text("collection_type")

    def product_description_code(key: str) -> str:
        code = prod_t.text(key)
        try:
            isbt128.build_product_code(code, collection_type, "00")
        except isbt128.InvalidCode as exc:
            raise prod_t.fail(key, f"does not make an ISBT 128 product code: {exc}") from exc
        return code

    pdc = product_description_code("product_description_code")
    intermediate = product_description_code("intermediate_description_code")
    if intermediate == pdc:
        raise prod_t.fail("intermediate_description_code", "must differ from the final product's code")
    product = Product(
        product_description_code=pdc,
        intermediate_description_code=intermediate,
        collection_type=collection_type,
        stability_hours=prod_t.number("stability_hours", low=0.5, high=24 * 365),
        storage=prod_t.text("storage"),
        post_thaw_recovery=prod_t.number("post_thaw_recovery", low=0.05, high=1.0),
    )

    fac_t = top.table("facility")
    facility_id = fac_t.text("isbt_facility_id")
    try:
        isbt128.build_din(facility_id, 26, 1)
    except isbt128.InvalidCode as exc:
        raise fac_t.fail("isbt_facility_id", f"is not an ISBT 128 facility id: {exc}") from exc
    zone = fac_t.text("time_zone")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise fac_t.fail("time_zone", f"{zone!r} is not a known time zone") from exc
    facility = Facility(isbt_facility_id=facility_id, site_code=fac_t.text("site_code"), time_zone=zone)

    rel_t = top.table("release")
    release = Release(
        viability_min_percent=rel_t.number("viability_min_percent", low=0, high=100),
        endotoxin_k_eu_per_kg=rel_t.number("endotoxin_k_eu_per_kg", low=0.0, high=100.0),
    )
    lab_t = top.table("labels")
    identifiers = lab_t.data.get("patient_identifiers")
    allowed = sorted(PATIENT_IDENTIFIER_CAPTIONS)
    if (
        not isinstance(identifiers, list)
        or len(identifiers) != 2
        or len(set(identifiers)) != 2
        or any(kind not in PATIENT_IDENTIFIER_CAPTIONS for kind in identifiers)
    ):
        raise lab_t.fail("patient_identifiers", f"must be two different identifiers from {allowed}")
    label_texts = LabelTexts(
        autologous=lab_t.text("autologous"),
        investigational=lab_t.text("investigational"),
        not_evaluated=lab_t.text("not_evaluated"),
        handling=lab_t.text("handling"),
        patient_identifiers=(identifiers[0], identifiers[1]),
    )
    ship_t = top.table("shipper")
    shipper = Shipper(
        contact_phone=ship_t.text("contact_phone"),
        temperature=ship_t.text("temperature"),
        handling=ship_t.text("handling"),
        show_name_and_date_of_birth=ship_t.boolean("show_name_and_date_of_birth"),
    )
    stock_t = top.table("label_stock")

    def stock(key: str) -> tuple[float, float, float]:
        raw_stock = stock_t.data.get(key)
        if (
            not isinstance(raw_stock, list)
            or len(raw_stock) != 3
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw_stock)
        ):
            raise stock_t.fail(key, "must be [width, height, margin] in mm")
        width, height, margin = (float(v) for v in raw_stock)
        if not (10 <= width <= 300 and 10 <= height <= 300 and 0 <= margin < min(width, height) / 4):
            raise stock_t.fail(key, f"{raw_stock} is not a label size in mm (10-300 mm, a small margin)")
        return width, height, margin

    label_stock = LabelStocks(
        syringe=stock("syringe"),
        shipper=stock("shipper"),
        container=stock("container"),
        cryovial=stock("cryovial"),
    )
    proc_t = top.table("processes")
    processes = Processes(collection_mbr=proc_t.text("collection_mbr"), dose_mbr=proc_t.text("dose_mbr"))
    pattern = study.text("subject_id_pattern")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise study.fail("subject_id_pattern", f"is not a valid pattern: {exc}") from exc
    example = study.text("subject_id_example")
    if not re.fullmatch(pattern, example):
        raise study.fail("subject_id_example", f"{example!r} does not match subject_id_pattern")
    ind_number = study.text("ind_number")
    if not re.fullmatch(r"[0-9]{5,6}", ind_number):
        raise study.fail("ind_number", f"{ind_number!r} is not an IND number (5 or 6 digits)")
    return StudyDefinition(
        key=key,
        code=study.text("code"),
        short_name=study.text("short_name"),
        title=study.text("title"),
        protocol_number=study.text("protocol_number"),
        ind_number=ind_number,
        product_name=study.text("product_name"),
        subject_id_pattern=pattern,
        subject_id_example=example,
        dosing=dosing,
        schedule=schedule,
        product=product,
        facility=facility,
        release=release,
        labels=label_texts,
        shipper=shipper,
        label_stock=label_stock,
        processes=processes,
    )


@lru_cache(maxsize=8)
def load_study(key: str = DEFAULT_STUDY) -> StudyDefinition:
    """Load a study shipped in ``mfg/studies/`` by its key (file name without .toml)."""
    if not re.fullmatch(r"[a-z0-9_-]+", key):
        raise StudyDefinitionError(f"study key {key!r} is not a study file name")
    resource = resources.files("mfg.studies").joinpath(f"{key}.toml")
    if not resource.is_file():
        raise StudyDefinitionError(f"no study definition named {key!r} in the package")
    return parse_definition(key, resource.read_text(encoding="utf-8"), f"{key}.toml")


def load_study_file(path: Path) -> StudyDefinition:
    return parse_definition(path.stem, path.read_text(encoding="utf-8"), path.name)
