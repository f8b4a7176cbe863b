"""Corrections: a new value with a reason, by the performer or a supervisor. The old value stays visible and
the step's earlier signatures show as invalid, because what they signed has changed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.errors import PermissionRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process import rules
from mfg.process.batches import batch_mbr, current_values, get_batch
from mfg.process.deviations import open_deviation
from mfg.process.entries import CORRECTABLE_TYPES, EntryContext, parse_entry
from mfg.process.extensions import StepContext, capability_for
from mfg.process.models import FieldValue, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.text import FREE_TEXT_MAX, checked_text


def correct_value(
    session: Session, user: User, value_row: FieldValue, new_raw: str, reason: str, study: StudyDefinition
) -> FieldValue:
    """A correction is a new value with a reason; the old one stays visible, earlier signatures go invalid."""
    identity_service.require_can_act(user)
    record = session.get(StepRecord, value_row.step_record_id)
    assert record is not None
    refuse = {"entity_type": "field_value", "entity_id": str(value_row.id)}
    if user.id != record.performed_by_id and user.role != identity_rules.SUPERVISOR:
        raise PermissionRefused(
            "only the performer of the step or a supervisor corrects its values", **refuse
        )
    if not reason.strip():
        raise ValidationRefused("a correction needs a reason", **refuse)
    reason = checked_text(reason, "Reason for the correction", FREE_TEXT_MAX, multiline=True, **refuse)
    if current_values(session, record).get(value_row.field_key) is not value_row:
        raise ValidationRefused("this value was already corrected: correct the current one", **refuse)
    batch = get_batch(session, record.batch_id)
    mbr = batch_mbr(session, batch)
    step = mbr.step(record.step_key)
    f = step.field(value_row.field_key)
    if f.type not in CORRECTABLE_TYPES:
        raise ValidationRefused(
            f"{f.label} is scanned: record a deviation instead of correcting it", **refuse
        )
    if not new_raw.strip():
        raise ValidationRefused(f"{f.label}: the new value is empty", **refuse)
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    ctx = StepContext(session, user, batch, mbr, step, study, record.performed_at)
    try:
        entry = parse_entry(EntryContext(ctx, subject, capability_for(mbr)), f, new_raw)
    except ValidationRefused as exc:
        raise ValidationRefused(exc.message, **refuse) from exc
    spec_ok = rules.in_spec(entry.field, entry.parsed)
    new_row = FieldValue(
        step_record_id=record.id,
        field_key=f.key,
        value=entry.parsed.text,
        number=entry.parsed.number,
        unit=f.unit,
        in_spec=spec_ok,
        entered_by_id=user.id,
        entered_at=clock.now(),
        supersedes_id=value_row.id,
        correction_reason=reason.strip(),
    )
    audit_service.create(session, user.username, new_row, reason=reason.strip())
    if not spec_ok:
        open_deviation(session, user.username, batch, record, entry, step)
    if step.critical and record.status == "done":
        _reopen(session, user, record, f.label)
    capability_for(mbr).after_correction(ctx, record, f)
    return new_row


def _reopen(session: Session, user: User, record: StepRecord, label: str) -> None:
    """The verifier signed the old value: the corrected one is verified again before the batch goes on."""
    audit_service.update(
        session,
        user.username,
        record,
        reason=f"{label} corrected: a second person verifies the corrected value",
        action="reopen",
        status="awaiting_verification",
        verified_by_id=None,
    )
