"""Reading a master batch record file: TOML parsed and validated into ``mbr.MasterBatchRecord``, with errors
that name the step and the field. Pure: no database.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from typing import Any

from mfg.process.mbr import (
    BATCH_CLOSED_STATUSES,
    CONTAINER_KINDS,
    FIELD_TYPES,
    KEY_PATTERN,
    PROCESS_ROLES,
    STEP_ROLES,
    CreatesDef,
    FieldDef,
    MasterBatchRecord,
    MbrDefinitionError,
    StageDef,
    StepDef,
)


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


# fmt: off
_FIELD_SETTINGS = frozenset((
    "key", "label", "type", "unit", "min", "max", "required", "critical", "options", "accept", "expected",
    "material", "equipment_type", "container_kind", "consume", "since", "help", "plan", "computes",
))
_STEP_SETTINGS = frozenset((
    "key", "title", "instructions", "fields", "roles", "after", "critical", "repeat_min", "repeat_max",
    "creates", "consumes_open", "at_workstation", "closes_batch", "role",
))
# fmt: on


def _field_problem(raw: dict[str, Any], kind: str) -> str:
    """What is wrong with a field's settings for its type, or ""."""
    options = {str(o) for o in raw.get("options", ())}
    accept = {str(o) for o in raw.get("accept", ())}
    problems = [
        (kind == "choice" and not options, "a choice field needs options"),
        (bool(accept - options), f"accept lists values that are not options: {sorted(accept - options)}"),
        (kind == "lot" and not raw.get("material"), "a lot field names its material"),
        (
            kind == "equipment" and not raw.get("equipment_type"),
            "an equipment field names its equipment_type",
        ),
        (
            kind in ("container", "container_list") and raw.get("container_kind") not in CONTAINER_KINDS,
            f"container_kind must be one of {', '.join(CONTAINER_KINDS)}",
        ),
        (
            kind == "elapsed_hours"
            and not re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+", raw.get("since", "")),
            "an elapsed_hours field names the datetime it counts from: since = 'stage.step.field'",
        ),
        (
            raw.get("expected") is not None and not isinstance(raw.get("expected"), bool),
            "expected must be true or false",
        ),
        (
            bool(raw.get("plan")) and (kind != "number" or not KEY_PATTERN.match(str(raw["plan"]))),
            "plan names a quantity of the capability's plan, on a number field",
        ),
        (
            (kind == "computed") != bool(raw.get("computes"))
            or not KEY_PATTERN.match(str(raw.get("computes", "x"))),
            "a computed field, and only a computed field, names what it computes: computes = '...'",
        ),
        (bool(set(raw) - _FIELD_SETTINGS), f"unknown settings {sorted(set(raw) - _FIELD_SETTINGS)}"),
    ]
    return next((problem for wrong, problem in problems if wrong), "")


def _field(raw: dict[str, Any], where: str) -> FieldDef:
    key = _str(raw, "key", where)
    where = f"{where} field {key}"
    if not KEY_PATTERN.match(key):
        raise _fail(where, "key must be lower-case letters, digits and '_'")
    kind = _str(raw, "type", where)
    if kind not in FIELD_TYPES:
        raise _fail(where, f"type {kind!r} is not one of {', '.join(FIELD_TYPES)}")
    low, high = _number(raw.get("min"), where), _number(raw.get("max"), where)
    if low is not None and high is not None and low > high:
        raise _fail(where, f"min {low:g} is above max {high:g}")
    problem = _field_problem(raw, kind)
    if problem:
        raise _fail(where, problem)
    return FieldDef(
        key=key,
        label=_str(raw, "label", where),
        type=kind,
        unit=str(raw.get("unit", "")),
        low=low,
        high=high,
        required=bool(raw.get("required", True)),
        critical=bool(raw.get("critical", False)),
        options=tuple(str(o) for o in raw.get("options", ())),
        accept=tuple(str(o) for o in raw.get("accept", ())),
        expected=raw.get("expected"),
        material=str(raw.get("material", "")),
        equipment_type=str(raw.get("equipment_type", "")),
        container_kind=str(raw.get("container_kind", "")),
        consume=bool(raw.get("consume", False)),
        since=str(raw.get("since", "")),
        help=str(raw.get("help", "")),
        plan=str(raw.get("plan", "")),
        computes=str(raw.get("computes", "")),
    )


def _creates(step_raw: dict[str, Any], fields: tuple[FieldDef, ...], where: str) -> tuple[CreatesDef, ...]:
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
    return tuple(creates)


def _step(step_raw: dict[str, Any], stage_key: str, previous: str, seen: dict[str, StepDef]) -> StepDef:
    key = f"{stage_key}.{_str(step_raw, 'key', f'stage {stage_key} step')}"
    where = f"step {key}"
    if key in seen:
        raise _fail(where, "is defined twice")
    unknown = set(step_raw) - _STEP_SETTINGS
    if unknown:
        raise _fail(where, f"unknown settings {sorted(unknown)}")
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
    repeat_min, repeat_max = int(step_raw.get("repeat_min", 1)), int(step_raw.get("repeat_max", 1))
    # repeat_min = 0: an optional step (done only when needed, such as a pre-dilution)
    if not 0 <= repeat_min <= repeat_max or repeat_max < 1:
        raise _fail(where, "needs 0 <= repeat_min <= repeat_max and repeat_max >= 1")
    return StepDef(
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
        creates=_creates(step_raw, fields, where),
        consumes_open=str(step_raw.get("consumes_open", "")),
        at_workstation=bool(step_raw.get("at_workstation", True)),
        closes_batch=bool(step_raw.get("closes_batch", False)),
        role=_step_role(step_raw, fields, where, seen),
    )


def _step_role(
    step_raw: dict[str, Any], fields: tuple[FieldDef, ...], where: str, seen: dict[str, StepDef]
) -> str:
    role = step_raw.get("role", "")
    if not role:
        return ""
    if role not in PROCESS_ROLES:
        raise _fail(where, f"role {role!r} is not one of {', '.join(PROCESS_ROLES)}")
    if any(s.role == role for s in seen.values()):
        raise _fail(where, f"role {role!r} is already played by another step")
    keys = {f.key for f in fields}
    missing = [key for key in PROCESS_ROLES[role] if key not in keys]
    if missing:
        raise _fail(where, f"a {role!r} step records {', '.join(missing)}")
    return str(role)


def _stages(raw: dict[str, Any], source: str) -> tuple[StageDef, ...]:
    stages: list[StageDef] = []
    previous = ""
    seen: dict[str, StepDef] = {}
    for stage_raw in raw.get("stages", ()):
        stage_key = _str(stage_raw, "key", "stage")
        stage_steps: list[StepDef] = []
        for step_raw in stage_raw.get("steps", ()):
            step = _step(step_raw, stage_key, previous, seen)
            seen[step.key] = step
            stage_steps.append(step)
            previous = step.key
        if not stage_steps:
            raise _fail(f"stage {stage_key}", "has no steps")
        name = _str(stage_raw, "name", f"stage {stage_key}")
        stages.append(StageDef(key=stage_key, name=name, steps=tuple(stage_steps)))
    if not stages:
        raise _fail(source, "has no stages")
    _check_elapsed_references(seen)
    return tuple(stages)


def _check_elapsed_references(seen: dict[str, StepDef]) -> None:
    for step in seen.values():
        for f in step.fields:
            if f.type != "elapsed_hours":
                continue
            ref_step, _, ref_field = f.since.rpartition(".")
            target = seen.get(ref_step)
            if target is None or not any(x.key == ref_field and x.type == "datetime" for x in target.fields):
                raise _fail(f"step {step.key} field {f.key}", f"since {f.since!r} is not a datetime field")


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
    closed_status = str(head.get("closed_status", "cryobanked"))
    if closed_status not in BATCH_CLOSED_STATUSES:
        raise _fail("[mbr]", f"closed_status must be one of {', '.join(BATCH_CLOSED_STATUSES)}")
    capability = head.get("capability", "")
    if not isinstance(capability, str) or (capability and not KEY_PATTERN.match(capability)):
        raise _fail("[mbr]", "capability must be a lower-case name")
    return MasterBatchRecord(
        code=_str(head, "code", "[mbr]"),
        version=version,
        title=_str(head, "title", "[mbr]"),
        study=_str(head, "study", "[mbr]"),
        stages=_stages(raw, source),
        late_entry_minutes=late,
        source_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        capability=capability,
        closed_status=closed_status,
    )
