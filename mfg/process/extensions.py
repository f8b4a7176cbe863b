"""How a capability plugs into the step engine. The engine knows no study and no dose: where an MBR's steps
need more than the generic engine does, the MBR names a capability (``[mbr] capability = "..."``) and the
engine calls it at four points, and only there:

* ``computed_value`` — a field the system works out (a field type of ``COMPUTED_TYPES`` other than elapsed
  hours), from what was typed in the same step;
* ``planned_range`` — the acceptance range of a number field checked against a plan (``plan = "..."``);
* ``lineage`` — the parents of containers a step creates when it consumes none itself;
* ``after_step`` / ``after_close`` — what follows a signed step, and the batch's closing step.

Capabilities register at start-up (``mfg.capabilities.install``). Dose preparation is one; release testing
and custody will be others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from mfg.errors import ValidationRefused
from mfg.process.mbr import FieldDef, MasterBatchRecord, StepDef
from mfg.process.rules import ParsedValue

if TYPE_CHECKING:
    from mfg.custody.models import Container
    from mfg.identity.models import User
    from mfg.process.models import Batch, StepRecord
    from mfg.study.definition import StudyDefinition


@dataclass(frozen=True)
class StepContext:
    """The step being recorded, as a capability sees it."""

    session: Session
    user: User
    batch: Batch
    mbr: MasterBatchRecord
    step: StepDef
    study: StudyDefinition
    performed_at: datetime


class Capability:
    """The plug-in interface, with the engine's defaults: nothing computed, no plan, no extra lineage."""

    name = ""

    def computed_value(
        self, ctx: StepContext, field: FieldDef, typed: Mapping[str, ParsedValue]
    ) -> tuple[FieldDef, ParsedValue]:
        """The value of a computed field, and the field as checked (its range may be the capability's)."""
        raise ValidationRefused(
            f"{field.label}: no capability of this master batch record computes a {field.type} field",
            entity_type="batch",
            entity_id=str(ctx.batch.id),
        )

    def planned_range(self, ctx: StepContext, field: FieldDef) -> tuple[float, float]:
        raise ValidationRefused(
            f"{field.label}: no capability of this master batch record plans {field.plan}",
            entity_type="batch",
            entity_id=str(ctx.batch.id),
        )

    def lineage(self, ctx: StepContext) -> list[Container]:
        return []

    def check_step(self, ctx: StepContext, values: Mapping[str, ParsedValue]) -> None:
        """Refuse (raise a Refusal) what the engine's field checks cannot know is wrong, before anything of
        the step is written."""
        return None

    def after_step(
        self,
        ctx: StepContext,
        record: StepRecord,
        values: Mapping[str, ParsedValue],
        created: list[Container],
    ) -> None:
        return None

    def after_correction(self, ctx: StepContext, record: StepRecord, field: FieldDef) -> None:
        """A value of ``record`` was corrected: bring what the capability derived from it up to date."""
        return None

    def after_close(self, ctx: StepContext) -> None:
        return None


GENERIC = Capability()
_installed: dict[str, Capability] = {}


def register(capability: Capability) -> None:
    if not capability.name:
        raise ValueError("a capability needs a name")
    _installed[capability.name] = capability


def capability_for(mbr: MasterBatchRecord) -> Capability:
    if not mbr.capability:
        return GENERIC
    found = _installed.get(mbr.capability)
    if found is None:
        raise ValidationRefused(
            f"{mbr.code} v{mbr.version} needs the {mbr.capability!r} capability, which this server has not "
            "installed: tell the system administrator",
            entity_type="mbr_version",
        )
    return found
