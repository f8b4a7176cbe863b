from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base, UTCDateTime

BATCH_STATUSES = ("open", "on_hold", "rejected", "cryobanked", "prepared")


class MbrVersion(Audited, Base):
    """One version of a master batch record, stored whole so a batch keeps the text it started on."""

    __tablename__ = "mbr_version"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        CheckConstraint("status IN ('draft', 'approved', 'retired')", name="status_known"),
    )
    __signed_fields__ = ("code", "version", "title", "definition_sha256")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    definition: Mapped[str] = mapped_column(Text, nullable=False)
    definition_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Workstation(Audited, Base):
    """A biosafety cabinet: holds at most one subject's open batch (line clearance between subjects)."""

    __tablename__ = "workstation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    current_batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id"))


class Batch(Audited, Base):
    """One subject's manufacture under one MBR: the collection-to-cryobank batch (division 00), or the
    preparation of one prescribed dose (division A0, B0, ...). All keep the collection's DIN."""

    __tablename__ = "batch"
    __audit_added_later__ = {"division": "00"}  # 0005: batches from before it are collections
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'on_hold', 'rejected', 'cryobanked', 'prepared')", name="status_known"
        ),
        UniqueConstraint("din", "division"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    din: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    division: Mapped[str] = mapped_column(String(2), nullable=False, default="00")
    dose_order_id: Mapped[int | None] = mapped_column(ForeignKey("dose_order.id"), unique=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), nullable=False, index=True)
    mbr_version_id: Mapped[int] = mapped_column(ForeignKey("mbr_version.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)


class StepRecord(Audited, Base):
    """One execution of an MBR step (a repeatable step, such as a passage, has one per iteration)."""

    __tablename__ = "step_record"
    __table_args__ = (
        UniqueConstraint("batch_id", "step_key", "iteration"),
        CheckConstraint("status IN ('awaiting_verification', 'done')", name="status_known"),
    )
    # Verification changes the status; what the performer and verifier sign is the work and its values.
    __signed_fields__ = (
        "batch_id",
        "step_key",
        "iteration",
        "performed_by_id",
        "performed_at",
        "entered_at",
        "workstation_id",
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), nullable=False, index=True)
    step_key: Mapped[str] = mapped_column(String(80), nullable=False)
    iteration: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    performed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)  # when the work was done
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)  # when it was recorded
    late: Mapped[bool] = mapped_column(Boolean, nullable=False)
    workstation_id: Mapped[int | None] = mapped_column(ForeignKey("workstation.id"))
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    def signed_extra(self, session: Session) -> dict[str, str]:
        """A step's signatures cover its recorded values: a later correction shows them as invalid."""
        rows = session.scalars(
            select(FieldValue).where(FieldValue.step_record_id == self.id).order_by(FieldValue.id)
        ).all()
        return signed_values(rows)


class FieldValue(Audited, Base):
    """A recorded value. A correction is a new row that supersedes the old one, which stays visible."""

    __tablename__ = "field_value"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_record_id: Mapped[int] = mapped_column(ForeignKey("step_record.id"), nullable=False, index=True)
    field_key: Mapped[str] = mapped_column(String(60), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)  # as recorded, canonical text
    number: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20), nullable=False)
    in_spec: Mapped[bool] = mapped_column(Boolean, nullable=False)
    entered_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("field_value.id"), unique=True)
    correction_reason: Mapped[str | None] = mapped_column(Text)


def current_of(rows: Sequence[FieldValue]) -> dict[str, FieldValue]:
    """Each field's current value among a record's rows in id order: corrections supersede, old rows stay."""
    superseded = {row.supersedes_id for row in rows if row.supersedes_id is not None}
    return {row.field_key: row for row in rows if row.id not in superseded}


def signed_values(rows: Sequence[FieldValue]) -> dict[str, str]:
    """What a step's signatures cover of its values: the current text of each field and, once anything was
    corrected, which rows the corrections superseded. A signature thus binds to a version of the values: put
    back as it was, a corrected value still leaves the earlier signature invalid."""
    signed = {key: row.value for key, row in sorted(current_of(rows).items())}
    superseded = sorted(row.supersedes_id for row in rows if row.supersedes_id is not None)
    if superseded:
        signed["(superseded)"] = " ".join(str(row_id) for row_id in superseded)
    return signed


class Deviation(Audited, Base):
    """An out-of-specification value or event, linked to its batch, step and subject."""

    __tablename__ = "deviation"
    __table_args__ = (CheckConstraint("status IN ('open', 'assessed', 'closed')", name="status_known"),)
    # The supervisor signs what was found and the assessment; QA signs that and the investigation. Neither
    # covers the status, nor the later signer's fields: QA's closure must not invalidate the assessment.
    _FOUND = (
        "number",
        "batch_id",
        "step_record_id",
        "subject_id",
        "field_key",
        "description",
        "value",
        "limit_text",
        "critical",
        "opened_at",
    )
    __signed_fields_by_meaning__ = {
        "reviewed": (*_FOUND, "assessment", "assessed_by_id"),
        "approved": (*_FOUND, "assessment", "assessed_by_id", "investigation", "root_cause", "closed_by_id"),
    }

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), nullable=False, index=True)
    step_record_id: Mapped[int] = mapped_column(ForeignKey("step_record.id"), nullable=False)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), nullable=False)
    field_key: Mapped[str] = mapped_column(String(60), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    limit_text: Mapped[str] = mapped_column(String(120), nullable=False)
    critical: Mapped[bool] = mapped_column(Boolean, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    assessment: Mapped[str | None] = mapped_column(Text)
    assessed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    investigation: Mapped[str | None] = mapped_column(Text)
    root_cause: Mapped[str | None] = mapped_column(Text)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class LineClearance(Audited, Base):
    """A signed line clearance: the cabinet was emptied and cleaned before another subject's material."""

    __tablename__ = "line_clearance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workstation_id: Mapped[int] = mapped_column(ForeignKey("workstation.id"), nullable=False)
    previous_batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), nullable=False)
    cleared_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    cleared_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
