from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base, UTCDateTime

CONTAINER_KINDS = ("tissue_tube", "culture_flask", "cryovial", "syringe", "shipper", "sample_tube")
CONTAINER_STATUSES = ("in_use", "consumed", "stored", "released", "quarantined", "destroyed", "administered")


class DinSequence(Audited, Base):
    """The last DIN sequence number issued per facility and year. Numbers are never reused."""

    __tablename__ = "din_sequence"

    facility_id: Mapped[str] = mapped_column(String(5), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, nullable=False)


class Container(Audited, Base):
    """Any physical thing holding a subject's material; its lineage leads back to exactly one subject."""

    __tablename__ = "container"
    __table_args__ = (
        CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in CONTAINER_KINDS) + ")", name="kind_known"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in CONTAINER_STATUSES) + ")", name="status_known"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # what the scanner reads: 'C' + 9 alphanumerics + a Mod 37-2 check character
    scan_id: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), nullable=False, index=True)
    din: Mapped[str | None] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    location: Mapped[str] = mapped_column(String(120), nullable=False)
    holder_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    contents: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ContainerParent(Audited, Base):
    """Lineage: the containers a container's contents came from."""

    __tablename__ = "container_parent"

    child_id: Mapped[int] = mapped_column(ForeignKey("container.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("container.id"), primary_key=True)


class LabelPrint(Audited, Base):
    """Label control: every print and reprint, who, why and how many (reconciled against use)."""

    __tablename__ = "label_print"
    __table_args__ = (
        CheckConstraint("label_kind IN ('container', 'syringe', 'shipper')", name="label_kind_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    container_id: Mapped[int] = mapped_column(ForeignKey("container.id"), nullable=False, index=True)
    label_kind: Mapped[str] = mapped_column(String(20), nullable=False)
    copies: Mapped[int] = mapped_column(Integer, nullable=False)
    reprint: Mapped[bool] = mapped_column(nullable=False)
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    printed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    printed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
