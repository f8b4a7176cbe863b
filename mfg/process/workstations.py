"""Biosafety cabinets and line clearance: a cabinet holds one subject's batch at a time, and another subject's
material comes in only after a signed line clearance.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody import service as custody_service
from mfg.errors import NotFound, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.materials import service as materials_service
from mfg.materials.models import Equipment
from mfg.process.batches import OPEN_STATUSES, get_batch
from mfg.process.mbr import StepDef
from mfg.process.models import Batch, LineClearance, Workstation
from mfg.process.rules import BatchStopped
from mfg.study.models import Subject
from mfg.text import checked_text, scan_code

# A workstation is a biosafety cabinet of the equipment register: its code is the cabinet's asset tag, and
# work happens there only while the cabinet is in service and in calibration (DESIGN §4).
CABINET_TYPE = "biosafety cabinet"


def register_workstation(session: Session, actor: str, code: str, name: str) -> Workstation:
    code = scan_code(code, "Workstation code", 40, entity_type="workstation").upper()
    name = checked_text(name, "Workstation name", 120, required=False, entity_type="workstation")
    if session.scalar(select(Workstation.id).where(Workstation.code == code)) is not None:
        raise ValidationRefused(f"workstation code {code!r} is taken", entity_type="workstation")
    cabinet = session.scalar(select(Equipment).where(Equipment.asset_tag == code))
    if cabinet is None or cabinet.equipment_type != CABINET_TYPE:
        raise ValidationRefused(
            f"{code} is not a {CABINET_TYPE} of the equipment register: a supervisor registers the cabinet "
            "(Materials) before it becomes a workstation",
            entity_type="workstation",
        )
    return audit_service.create(session, actor, Workstation(code=code, name=name or code))


def require_usable_cabinet(session: Session, workstation: Workstation) -> None:
    """The cabinet must be in service and in calibration today (the same check as an equipment field)."""
    materials_service.usable_equipment(
        session, workstation.code, on=clock.local_now().date(), expected_type=CABINET_TYPE
    )


def find_workstation(session: Session, scanned: str) -> Workstation:
    workstation = session.scalar(select(Workstation).where(Workstation.code == scanned.strip().upper()))
    if workstation is None:
        raise NotFound(f"no workstation {scanned.strip()!r}", entity_type="workstation")
    require_usable_cabinet(session, workstation)
    return workstation


def open_at_workstation(session: Session, user: User, workstation: Workstation, batch: Batch) -> None:
    """One subject per cabinet: another subject's batch needs a signed line clearance first."""
    identity_service.require_can_act(user)
    if batch.status not in OPEN_STATUSES:
        raise BatchStopped(
            f"batch {batch.din} is {batch.status}", entity_type="batch", entity_id=str(batch.id)
        )
    if workstation.current_batch_id == batch.id:
        return
    if workstation.current_batch_id is not None:
        holder = get_batch(session, workstation.current_batch_id)
        if holder.subject_id != batch.subject_id:
            holder_subject = session.get(Subject, holder.subject_id)
            who = holder_subject.study_subject_id if holder_subject else "another subject"
            raise custody_service.ChainOfIdentityRefused(
                f"STOP: {workstation.code} holds the batch of {who}"
                f" ({holder.din}): sign line clearance before bringing in another subject's material",
                entity_type="workstation",
                entity_id=str(workstation.id),
            )
    audit_service.update(
        session,
        user.username,
        workstation,
        reason=f"batch {batch.din} opened",
        action="open",
        current_batch_id=batch.id,
    )


def clear_line(session: Session, user: User, password: str, workstation: Workstation) -> LineClearance:
    identity_service.require_can_act(user)
    if workstation.current_batch_id is None:
        raise ValidationRefused(
            f"{workstation.code} holds no batch", entity_type="workstation", entity_id=str(workstation.id)
        )
    clearance = LineClearance(
        workstation_id=workstation.id,
        previous_batch_id=workstation.current_batch_id,
        cleared_by_id=user.id,
        cleared_at=clock.now(),
    )
    audit_service.create(session, user.username, clearance)
    identity_service.sign(session, user, password, "performed", clearance, comment="line clearance")
    audit_service.update(
        session,
        user.username,
        workstation,
        reason="line clearance signed",
        action="clear",
        current_batch_id=None,
    )
    return clearance


def require_workstation(
    session: Session, batch: Batch, step: StepDef, workstation: Workstation | None
) -> None:
    if not step.at_workstation:
        return
    if workstation is None:
        raise ValidationRefused(
            "scan the biosafety cabinet you work at before recording a lab step",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    if workstation.current_batch_id != batch.id:
        raise ValidationRefused(
            f"open this batch at {workstation.code} before recording '{step.title}'",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    require_usable_cabinet(session, workstation)


def require_same_cabinet(step: StepDef, scanned: Mapping[str, str], workstation: Workstation | None) -> None:
    """A cabinet scanned in a step is the cabinet the terminal works at, not another one."""
    if workstation is None:
        return
    for f in step.fields:
        code = scanned.get(f.key, "").strip().upper()
        if f.type == "equipment" and f.equipment_type == CABINET_TYPE and code and code != workstation.code:
            raise ValidationRefused(
                f"{f.label}: {code} is not the cabinet this terminal works at ({workstation.code})",
                entity_type="workstation",
                entity_id=str(workstation.id),
            )


def release_workstations(session: Session, actor: str, batch: Batch) -> None:
    for workstation in session.scalars(select(Workstation).where(Workstation.current_batch_id == batch.id)):
        audit_service.update(session, actor, workstation, reason="batch closed", current_batch_id=None)
