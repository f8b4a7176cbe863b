"""Master batch records as versioned data: stages, ordered steps, fields with units and acceptance ranges.

A data file in ``mfg/process/definitions/`` is parsed and validated here (pure: no database). A batch executes
one approved version; the stored text of that version, not the file, is what the batch keeps using.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from labels.numbers import format_cells

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
    "computed",
)
# Filled in by the system when the step is recorded, never typed: elapsed hours by the engine, "computed"
# fields (``computes = "..."``) by the MBR's capability.
COMPUTED_TYPES = ("elapsed_hours", "computed")
CONTAINER_KINDS = ("tissue_tube", "culture_flask", "cryovial", "syringe", "shipper", "sample_tube")
STEP_ROLES = ("technician", "supervisor", "qc_analyst", "coordinator")
# What a step *is* in the process (its "role" in the MBR data), for the read models and capabilities that
# look steps up by role rather than by a study's step keys; each names the fields such a step must record.
PROCESS_ROLES: dict[str, tuple[str, ...]] = {
    "seed": ("seeded_cells",),  # plating at passage 0: growth starts here
    "passage": ("harvested_cells", "replated_cells"),  # one iteration per passage
    "freeze": ("cells_per_vial",),  # the cryobank
    "thaw": ("vials",),  # dose preparation: the cryovials thawed
    "count": (),  # replicate viable counts (fields count_1, count_2, ...)
    "recount": (),  # the same after a pre-dilution (optional, repeatable): the latest counts plan the fill
    "fill": (),  # the syringe is filled against the plan
    "final_count": ("post_fill_count",),  # the retained sample's count
    "label": (),
}
BATCH_CLOSED_STATUSES = ("cryobanked", "prepared")
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class MbrDefinitionError(ValueError):
    """The MBR file is wrong; the message names the step and field."""


def _fmt(value: float) -> str:
    # Cell numbers read as 1.00 × 10⁵, everything else as typed.
    if abs(value) >= 1e5:
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
    plan: str = ""  # number fields: checked against this quantity of the capability's plan
    computes: str = ""  # computed fields: what the capability computes
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
    role: str = ""  # what the step is in the process (PROCESS_ROLES); not who performs it (roles)

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
    capability: str = ""  # the plug-in that computes, plans and follows up this MBR's steps ("" for none)
    closed_status: str = "cryobanked"  # the batch's status once its closing step is done
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

    def step_for_role(self, role: str) -> StepDef | None:
        """The step that plays ``role`` in this MBR, if any (roles are unique within an MBR)."""
        return next((s for s in self.steps if s.role == role), None)


def packaged_mbr_text(name: str = "aamsc") -> str:
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise MbrDefinitionError(f"{name!r} is not an MBR file name")
    resource = resources.files("mfg.process.definitions").joinpath(f"{name}.toml")
    if not resource.is_file():
        raise MbrDefinitionError(f"no master batch record named {name!r} in the package")
    return resource.read_text(encoding="utf-8")
