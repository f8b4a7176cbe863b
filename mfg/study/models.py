from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base, UTCDateTime

SITE_KINDS = ("clinical", "manufacturing")
SUBJECT_STATUSES = ("enrolled", "withdrawn", "completed")


class Site(Audited, Base):
    """A clinical site or the manufacturing facility; name and address are printed on labels."""

    __tablename__ = "site"
    __table_args__ = (CheckConstraint("kind IN ('clinical', 'manufacturing')", name="kind_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    address: Mapped[str] = mapped_column(Text, nullable=False)
    isbt_facility_id: Mapped[str | None] = mapped_column(String(5))
    active: Mapped[bool] = mapped_column(nullable=False, default=True)


class Subject(Audited, Base):
    """A study participant. The COI identifier, not the name, goes on barcodes (21 CFR 1271.290(c))."""

    __tablename__ = "subject"
    __table_args__ = (
        UniqueConstraint("study_code", "study_subject_id"),
        CheckConstraint("status IN ('enrolled', 'withdrawn', 'completed')", name="status_known"),
    )
    # An enrollment signature covers who the subject is, not how the study goes on for them.
    __signed_fields__ = (
        "study_code",
        "study_subject_id",
        "name",
        "date_of_birth",
        "medical_record_number",
        "site_id",
        "consent_date",
        "coi_identifier",
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_code: Mapped[str] = mapped_column(String(40), nullable=False)
    study_subject_id: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    date_of_birth: Mapped[date] = mapped_column(Date, nullable=False)
    medical_record_number: Mapped[str] = mapped_column(String(40), nullable=False)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), nullable=False)
    consent_date: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="enrolled")
    # ISBT 128 data structure 040 content without its data identifier: facility id + yy + 6 alphanumerics
    coi_identifier: Mapped[str] = mapped_column(String(13), nullable=False, unique=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    enrolled_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
