"""Batches and what they have recorded so far: the step records, each field's current value, and progress."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody import service as custody_service
from mfg.errors import NotFound, PermissionRefused, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process import rules
from mfg.process.mbr import MasterBatchRecord
from mfg.process.models import Batch, FieldValue, MbrVersion, StepRecord, current_of
from mfg.process.versions import current_approved_mbr, mbr_of
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject

OPEN_STATUSES = ("open", "on_hold")


def start_batch(session: Session, user: User, subject: Subject, study: StudyDefinition) -> Batch:
    """A collection begins a batch: it gets the collection's DIN, and keeps today's approved MBR version."""
    identity_service.require_can_act(user)
    if user.role not in ("coordinator", "supervisor"):
        raise PermissionRefused(
            "a coordinator (at collection) or a supervisor starts a batch", entity_type="batch"
        )
    if subject.status != "enrolled":
        raise ValidationRefused(
            f"{subject.study_subject_id} is {subject.status}: no new batch", entity_type="batch"
        )
    if not study_service.enrollment_verified(session, subject):
        # The chain of identity starts from identity data a second person checked against the source.
        raise ValidationRefused(
            f"{subject.study_subject_id}'s enrollment is not verified by a second person (or was corrected "
            "since): verify it before the collection",
            entity_type="batch",
        )
    version = current_approved_mbr(session, study.processes.collection_mbr)
    open_batch = session.scalar(
        select(Batch.din).where(Batch.subject_id == subject.id, Batch.status.in_(OPEN_STATUSES))
    )
    if open_batch is not None:
        raise ValidationRefused(
            f"{subject.study_subject_id} already has an open batch ({open_batch})", entity_type="batch"
        )
    din = custody_service.allocate_din(
        session, user.username, study.facility.isbt_facility_id, clock.local_now().year
    )
    batch = Batch(
        din=din.code,
        subject_id=subject.id,
        mbr_version_id=version.id,
        status="open",
        started_at=clock.now(),
        started_by_id=user.id,
    )
    return audit_service.create(session, user.username, batch)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", entity_type="batch")
    return batch


def batch_mbr(session: Session, batch: Batch) -> MasterBatchRecord:
    version = session.get(MbrVersion, batch.mbr_version_id)
    assert version is not None
    return mbr_of(version)


def step_records(session: Session, batch: Batch) -> list[StepRecord]:
    return list(
        session.scalars(select(StepRecord).where(StepRecord.batch_id == batch.id).order_by(StepRecord.id))
    )


def progress_of(session: Session, batch: Batch) -> dict[str, rules.StepProgress]:
    return rules.progress(step_records(session, batch))


def value_history(session: Session, record: StepRecord) -> list[FieldValue]:
    return list(
        session.scalars(
            select(FieldValue).where(FieldValue.step_record_id == record.id).order_by(FieldValue.id)
        )
    )


def current_values(session: Session, record: StepRecord) -> dict[str, FieldValue]:
    """The latest value of each field (corrections supersede; the old rows stay)."""
    return current_of(value_history(session, record))


def values_by_record(session: Session, batch: Batch) -> dict[int, list[FieldValue]]:
    """Every value the batch recorded, corrections included, by step record: one query for a whole page."""
    return _grouped(
        session.scalars(
            select(FieldValue)
            .join(StepRecord, StepRecord.id == FieldValue.step_record_id)
            .where(StepRecord.batch_id == batch.id)
            .order_by(FieldValue.id)
        )
    )


def values_of_records(session: Session, record_ids: Iterable[int]) -> dict[int, list[FieldValue]]:
    """Every value of these step records, corrections included, by record: one query."""
    ids = list(record_ids)
    if not ids:
        return {}
    return _grouped(
        session.scalars(select(FieldValue).where(FieldValue.step_record_id.in_(ids)).order_by(FieldValue.id))
    )


def _grouped(rows: Iterable[FieldValue]) -> dict[int, list[FieldValue]]:
    grouped: dict[int, list[FieldValue]] = defaultdict(list)
    for row in rows:
        grouped[row.step_record_id].append(row)
    return grouped


def latest_record(session: Session, batch: Batch, step_key: str) -> StepRecord | None:
    return session.scalar(
        select(StepRecord)
        .where(StepRecord.batch_id == batch.id, StepRecord.step_key == step_key)
        .order_by(StepRecord.iteration.desc())
        .limit(1)
    )


def role_values(session: Session, batch: Batch, role: str) -> dict[str, FieldValue]:
    """The current values of the latest record of the step that plays ``role`` in the batch's MBR."""
    step = batch_mbr(session, batch).step_for_role(role)
    record = latest_record(session, batch, step.key) if step is not None else None
    return current_values(session, record) if record is not None else {}
