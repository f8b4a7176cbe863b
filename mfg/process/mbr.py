"""Master batch records as versioned data: stages, ordered steps, fields with units and acceptance ranges.

A data file in ``mfg/process/definitions/`` is parsed and validated here (pure: no database). A batch executes
one approved version; the stored text of that version, not the file, is what the batch keeps using.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

FIELD_TYPES = (
    "number",
    "choice",
    "text",
    "datetime",
    "lot",
    "equipment",
    "container",
    "container_list",
    "check",
    "elapsed_hours",
    "delivered_dose",
    "label_reconciliation",
)
# Filled in by the system when the step is recorded, never typed.
COMPUTED_TYPES = ("elapsed_hours", "delivered_dose", "label_reconciliation")
# Dose preparation: number fields whose acceptance range is the fill plan's volume, +- one volume step.
PLAN_KEYS = ("suspension_ml", "diluent_ml")
CONTAINER_KINDS = ("tissue_tube", "culture_flask", "cryovial", "syringe", "shipper", "sample_tube")
STEP_ROLES = ("technician", "supervisor", "qc_analyst", "coordinator")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class MbrDefinitionError(ValueError):
    """The MBR file is wrong; the message names the step and field."""


def _fmt(value: float) -> str:
    # Cell numbers read as 1.00 × 10⁵, everything else as typed.
    if abs(value) >= 1e5:
        from mfg.process.expansion import format_cells

        return format_cells(value)
    return f"{value:g}"


@dataclass(frozen=True)
class FieldDef:
    key: str
    label: str
    type: str
    unit: str = ""
    low: float | None = (
        None  # acceptance range: outside it the value is still recorded, and a deviation opens
    )
    high: float | None = None
    required: bool = True
    critical: bool = False  # out of range stops the batch until a supervisor assesses the deviation
    options: tuple[str, ...] = ()
    accept: tuple[str, ...] = ()  # choice values within specification (empty: any option is acceptable)
    expected: bool | None = None  # check fields: the answer that is within specification
    material: str = ""  # lot fields: what the lot must be
    equipment_type: str = ""
    container_kind: str = ""
    consume: bool = False  # container fields: the scanned container is used up by the step
    since: str = ""  # elapsed_hours: "step_key.field_key" of the datetime it counts from
    plan: str = ""  # number fields checked against the fill plan (PLAN_KEYS)
    plan: str = ""  # number fields checked against the fill plan (PLAN_KEYS)
    help: str = ""

    @property
    def range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{_fmt(self.low)}–{_fmt(self.high)} {self.unit}".strip()
        if self.low is not None:
            return f"≥ {_fmt(self.low)} {self.unit}".strip()
        if self.high is not None:
            return f"≤ {_fmt(self.high)} {self.unit}".strip()
        if self.accept:
            return " / ".join(self.accept)
        if self.expected is not None:
            return "yes" if self.expected else "no"
        return ""


@dataclass(frozen=True)
class CreatesDef:
    kind: str
    contents: str  # may hold {iteration} and {field_key} placeholders
    count: int = 1
    count_field: str = ""  # take the count from a number field of the step


@dataclass(frozen=True)
class StepDef:
    key: str  # "stage.step"
    stage: str
    title: str
    instructions: str
    fields: tuple[FieldDef, ...]
    roles: tuple[str, ...]
    after: tuple[str, ...]
    critical: bool = False  # needs a second person's "verified" signature
    repeat_min: int = 1
    repeat_max: int = 1
    creates: tuple[CreatesDef, ...] = ()
    consumes_open: str = ""  # container kind whose open containers of the batch this step uses up
    at_workstation: bool = True  # lab steps happen at a cabinet holding the batch (line clearance)
    closes_batch: bool = False  # completing it ends the batch (the bank is closed)

    def field(self, key: str) -> FieldDef:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(f"step {self.key} has no field {key}")


@dataclass(frozen=True)
class StageDef:
    key: str
    name: str
    steps: tuple[StepDef, ...]


@dataclass(frozen=True)
class MasterBatchRecord:
    code: str
    version: int
    title: str
    study: str
    stages: tuple[StageDef, ...]
    late_entry_minutes: int
    source_sha256: str = ""
    _index: dict[str, StepDef] = field(default_factory=dict, compare=False, repr=False)

    @property
    def steps(self) -> tuple[StepDef, ...]:
        return tuple(step for stage in self.stages for step in stage.steps)

    def step(self, key: str) -> StepDef:
        if not self._index:
            self._index.update({s.key: s for s in self.steps})
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"the master batch record has no step {key!r}") from None

    def successors(self, key: str) -> tuple[str, ...]:
        return tuple(s.key for s in self.steps if key in s.after)


def _fail(where: str, problem: str) -> MbrDefinitionError:
    return MbrDefinitionError(f"master batch record: {where}: {problem}")


def _number(raw: Any, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise _fail(where, f"{raw!r} is not a number")
    return float(raw)


def _str(table: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = table.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(where, f"{key} must be a non-empty string")
    return value.strip()


def _field(raw: dict[str, Any], where: str) -> FieldDef:
    key = _str(raw, "key", where)
    where = f"{where} field {key}"
    if not _KEY.match(key):
        raise _fail(where, "key must be lower-case letters, digits and '_'")
    kind = _str(raw, "type", where)
    if kind not in FIELD_TYPES:
        raise _fail(where, f"type {kind!r} is not one of {', '.join(FIELD_TYPES)}")
    low, high = _number(raw.get("min"), where), _number(raw.get("max"), where)
    if low is not None and high is not None and low > high:
        raise _fail(where, f"min {low:g} is above max {high:g}")
    options = tuple(str(o) for o in raw.get("options", ()))
    accept = tuple(str(o) for o in raw.get("accept", ()))
    if kind == "choice" and not options:
        raise _fail(where, "a choice field needs options")
    if set(accept) - set(options):
        raise _fail(where, f"accept lists values that are not options: {sorted(set(accept) - set(options))}")
    if kind == "lot" and not raw.get("material"):
        raise _fail(where, "a lot field names its material")
    if kind == "equipment" and not raw.get("equipment_type"):
        raise _fail(where, "an equipment field names its equipment_type")
    if kind in ("container", "container_list") and raw.get("container_kind") not in CONTAINER_KINDS:
        raise _fail(where, f"container_kind must be one of {', '.join(CONTAINER_KINDS)}")
    if kind == "elapsed_hours" and not re.fullmatch(
        r"[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+", raw.get("since", "")
    ):
        raise _fail(
            where, "an elapsed_hours field names the datetime it counts from: since = 'stage.step.field'"
        )
    expected = raw.get("expected")
    if expected is not None and not isinstance(expected, bool):
        raise _fail(where, "expected must be true or false")
    known = {
        "key",
        "label",
        "type",
        "unit",
        "min",
        "max",
        "required",
        "critical",
        "options",
        "accept",
        "expected",
        "material",
        "equipment_type",
        "container_kind",
        "consume",
        "since",
        "help",
        "plan",
    }
    if raw.get("plan") and (kind != "number" or raw["plan"] not in PLAN_KEYS):
        raise _fail(where, f"plan must be one of {', '.join(PLAN_KEYS)} on a number field")
    if raw.get("plan") and (kind != "number" or raw["plan"] not in PLAN_KEYS):
        raise _fail(where, f"plan must be one of {', '.join(PLAN_KEYS)} on a number field")
    unknown = set(raw) - known
    if unknown:
        raise _fail(where, f"unknown settings {sorted(unknown)}")
    return FieldDef(
        key=key,
        label=_str(raw, "label", where),
        type=kind,
        unit=str(raw.get("unit", "")),
        low=low,
        high=high,
        required=bool(raw.get("required", True)),
        critical=bool(raw.get("critical", False)),
        options=options,
        accept=accept,
        expected=expected,
        material=str(raw.get("material", "")),
        equipment_type=str(raw.get("equipment_type", "")),
        container_kind=str(raw.get("container_kind", "")),
        consume=bool(raw.get("consume", False)),
        since=str(raw.get("since", "")),
        help=str(raw.get("help", "")),
        plan=str(raw.get("plan", "")),
    )


def parse_mbr(text: str, source: str = "MBR file") -> MasterBatchRecord:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MbrDefinitionError(f"master batch record {source}: not valid TOML: {exc}") from exc
    head = raw.get("mbr")
    if not isinstance(head, dict):
        raise _fail(source, "the [mbr] table is missing")
    version = head.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail("[mbr]", "version must be a whole number from 1")
    late = head.get("late_entry_minutes", 30)
    if not isinstance(late, int) or late < 1:
        raise _fail("[mbr]", "late_entry_minutes must be a whole number of minutes")
    stages: list[StageDef] = []
    previous: str = ""
    seen: dict[str, StepDef] = {}
    for stage_raw in raw.get("stages", ()):
        stage_key = _str(stage_raw, "key", "stage")
        stage_steps: list[StepDef] = []
        for step_raw in stage_raw.get("steps", ()):
            local = _str(step_raw, "key", f"stage {stage_key} step")
            key = f"{stage_key}.{local}"
            where = f"step {key}"
            if key in seen:
                raise _fail(where, "is defined twice")
            fields = tuple(_field(f, where) for f in step_raw.get("fields", ()))
            if len({f.key for f in fields}) != len(fields):
                raise _fail(where, "has two fields with the same key")
            roles = tuple(step_raw.get("roles", ("technician", "supervisor")))
            if not roles or set(roles) - set(STEP_ROLES):
                raise _fail(where, f"roles must be from {', '.join(STEP_ROLES)}")
            after_raw = step_raw.get("after")
            after = tuple(after_raw) if after_raw is not None else ((previous,) if previous else ())
            for predecessor in after:
                if predecessor not in seen:
                    raise _fail(where, f"comes after {predecessor!r}, which is not an earlier step")
            creates = []
            for c in step_raw.get("creates", ()):
                if c.get("kind") not in CONTAINER_KINDS:
                    raise _fail(where, f"creates an unknown container kind {c.get('kind')!r}")
                count_field = str(c.get("count_field", ""))
                if count_field and not any(f.key == count_field and f.type == "number" for f in fields):
                    raise _fail(where, f"count_field {count_field!r} is not a number field of the step")
                creates.append(
                    CreatesDef(
                        kind=c["kind"],
                        contents=_str(c, "contents", where),
                        count=int(c.get("count", 1)),
                        count_field=count_field,
                    )
                )
            repeat_min, repeat_max = int(step_raw.get("repeat_min", 1)), int(step_raw.get("repeat_max", 1))
            if not 1 <= repeat_min <= repeat_max:
                raise _fail(where, "needs 1 <= repeat_min <= repeat_max")
            step = StepDef(
                key=key,
                stage=stage_key,
                title=_str(step_raw, "title", where),
                instructions=_str(step_raw, "instructions", where),
                fields=fields,
                roles=roles,
                after=after,
                critical=bool(step_raw.get("critical", False)),
                repeat_min=repeat_min,
                repeat_max=repeat_max,
                creates=tuple(creates),
                consumes_open=str(step_raw.get("consumes_open", "")),
                at_workstation=bool(step_raw.get("at_workstation", True)),
                closes_batch=bool(step_raw.get("closes_batch", False)),
            )
            seen[key] = step
            stage_steps.append(step)
            previous = key
        if not stage_steps:
            raise _fail(f"stage {stage_key}", "has no steps")
        stages.append(
            StageDef(
                key=stage_key, name=_str(stage_raw, "name", f"stage {stage_key}"), steps=tuple(stage_steps)
            )
        )
    if not stages:
        raise _fail(source, "has no stages")
    for step in seen.values():
        for f in step.fields:
            if f.type == "elapsed_hours":
                ref_step, _, ref_field = f.since.rpartition(".")
                target = seen.get(ref_step)
                if target is None or not any(
                    x.key == ref_field and x.type == "datetime" for x in target.fields
                ):
                    raise _fail(
                        f"step {step.key} field {f.key}", f"since {f.since!r} is not a datetime field"
                    )
    return MasterBatchRecord(
        code=_str(head, "code", "[mbr]"),
        version=version,
        title=_str(head, "title", "[mbr]"),
        study=_str(head, "study", "[mbr]"),
        stages=tuple(stages),
        late_entry_minutes=late,
        source_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def packaged_mbr_text(name: str = "aamsc") -> str:
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise MbrDefinitionError(f"{name!r} is not an MBR file name")
    resource = resources.files("mfg.process.definitions").joinpath(f"{name}.toml")
    if not resource.is_file():
        raise MbrDefinitionError(f"no master batch record named {name!r} in the package")
    return resource.read_text(encoding="utf-8")
