"""Deviations: every out-of-range value opens one; a critical one stops the batch until a supervisor assesses
it; QA closes each with the investigation and the root cause, signed.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.errors import PermissionRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process.batches import get_batch
from mfg.process.entries import Entry
from mfg.process.mbr import StepDef
from mfg.process.models import Batch, Deviation, FieldValue, StepRecord
from mfg.text import FREE_TEXT_MAX, checked_text


def open_deviation(
    session: Session, actor: str, batch: Batch, record: StepRecord, entry: Entry, step: StepDef
) -> Deviation:
    """An out-of-range value is recorded all the same and opens a deviation; a critical one holds it."""
    year = clock.local_now().year
    count = session.scalar(select(func.count()).select_from(Deviation)) or 0
    deviation = Deviation(
        number=f"DEV-{year}-{count + 1:04d}",
        batch_id=batch.id,
        step_record_id=record.id,
        subject_id=batch.subject_id,
        field_key=entry.field.key,
        description=f"{step.title}: {entry.field.label} {entry.parsed.text} {entry.field.unit}".strip()
        + f" is outside {entry.field.range_text}",
        value=entry.parsed.text,
        limit_text=entry.field.range_text or "specification",
        critical=entry.field.critical,
        status="open",
        opened_at=clock.now(),
    )
    audit_service.create(session, actor, deviation)
    if entry.field.critical and batch.status == "open":
        audit_service.update(
            session,
            actor,
            batch,
            reason=f"critical parameter out of range: {deviation.number}",
            action="hold",
            status="on_hold",
        )
    return deviation


def assess_deviation(
    session: Session, supervisor: User, password: str, deviation: Deviation, assessment: str
) -> None:
    """A supervisor's assessment lets a batch stopped by a critical deviation go on (QA still closes it)."""
    identity_service.require_can_act(supervisor)
    if supervisor.role != identity_rules.SUPERVISOR:
        raise PermissionRefused(
            "a supervisor assesses deviations", entity_type="deviation", entity_id=str(deviation.id)
        )
    if deviation.status != "open":
        raise ValidationRefused(
            f"{deviation.number} is {deviation.status}", entity_type="deviation", entity_id=str(deviation.id)
        )
    if not assessment.strip():
        raise ValidationRefused(
            "write the assessment: impact on the batch and whether it may go on",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )
    _require_independent(session, supervisor, deviation, "assess")
    assessment = checked_text(
        assessment,
        "Assessment",
        FREE_TEXT_MAX,
        multiline=True,
        entity_type="deviation",
        entity_id=str(deviation.id),
    )
    audit_service.update(
        session,
        supervisor.username,
        deviation,
        reason="supervisor assessment",
        action="assess",
        status="assessed",
        assessment=assessment,
        assessed_by_id=supervisor.id,
    )
    identity_service.sign(session, supervisor, password, "reviewed", deviation, comment="deviation assessed")
    batch = get_batch(session, deviation.batch_id)
    still_open = session.scalar(
        select(func.count())
        .select_from(Deviation)
        .where(Deviation.batch_id == batch.id, Deviation.critical, Deviation.status == "open")
    )
    if batch.status == "on_hold" and not still_open:
        audit_service.update(
            session,
            supervisor.username,
            batch,
            reason=f"{deviation.number} assessed",
            action="resume",
            status="open",
        )


def _require_independent(session: Session, user: User, deviation: Deviation, what: str) -> None:
    """Whoever performed the step or entered the value that opened a deviation does not judge it."""
    record = session.get(StepRecord, deviation.step_record_id)
    value_by = session.scalars(
        select(FieldValue.entered_by_id).where(
            FieldValue.step_record_id == deviation.step_record_id, FieldValue.field_key == deviation.field_key
        )
    ).all()
    if (record is not None and record.performed_by_id == user.id) or user.id in value_by:
        raise PermissionRefused(
            f"{user.username} performed the step or entered the value behind {deviation.number}: "
            f"another person must {what} it",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )


def close_deviation(
    session: Session, qa: User, password: str, deviation: Deviation, investigation: str, root_cause: str
) -> None:
    identity_service.require_can_act(qa)
    if qa.role != identity_rules.QA:
        raise PermissionRefused("QA closes deviations", entity_type="deviation", entity_id=str(deviation.id))
    if deviation.status == "closed":
        raise ValidationRefused(
            f"{deviation.number} is already closed", entity_type="deviation", entity_id=str(deviation.id)
        )
    if deviation.critical and deviation.status != "assessed":
        raise ValidationRefused(
            f"{deviation.number} stopped the batch: a supervisor assesses it before QA closes",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )
    if not investigation.strip() or not root_cause.strip():
        raise ValidationRefused(
            "closing a deviation needs the investigation and the root cause",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )
    _require_independent(session, qa, deviation, "close")
    investigation, root_cause = (
        checked_text(
            text, label, FREE_TEXT_MAX, multiline=True, entity_type="deviation", entity_id=str(deviation.id)
        )
        for text, label in ((investigation, "Investigation"), (root_cause, "Root cause"))
    )
    audit_service.update(
        session,
        qa.username,
        deviation,
        reason="closed by QA",
        action="close",
        status="closed",
        investigation=investigation,
        root_cause=root_cause,
        closed_by_id=qa.id,
    )
    identity_service.sign(session, qa, password, "approved", deviation, comment="deviation closed")
