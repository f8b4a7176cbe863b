from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base, UTCDateTime

ORDER_STATUSES = ("ordered", "in_preparation", "prepared", "cancelled")


class DoseOrder(Audited, Base):
    """An investigator's prescription of one injection, e-signed ('approved'). Immutable once preparation
    starts; it can be cancelled with a reason."""

    __tablename__ = "dose_order"
    __table_args__ = (
        CheckConstraint(
            "status IN ('ordered', 'in_preparation', 'prepared', 'cancelled')", name="status_known"
        ),
    )
    # The prescription the investigator signs; status changes later do not touch it.
    __signed_fields__ = (
        "subject_id",
        "injection_number",
        "protocol_visit",
        "due_date",
        "window_start",
        "window_end",
        "dose_cells",
        "body_weight_kg",
        "change_reason",
        "ordered_by_id",
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), nullable=False, index=True)
    injection_number: Mapped[int] = mapped_column(Integer, nullable=False)  # 1..4
    protocol_visit: Mapped[int] = mapped_column(Integer, nullable=False)  # the protocol's visit number
    due_date: Mapped[date] = mapped_column(Date, nullable=False)
    window_start: Mapped[date] = mapped_column(Date, nullable=False)
    window_end: Mapped[date] = mapped_column(Date, nullable=False)
    dose_cells: Mapped[float] = mapped_column(Float, nullable=False)
    body_weight_kg: Mapped[float] = mapped_column(Float, nullable=False)
    change_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    ordered_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    cancel_reason: Mapped[str | None] = mapped_column(Text)


class FinalProduct(Audited, Base):
    """A filled syringe: identified by DIN + product code (with its division), with expiry and dose."""

    __tablename__ = "final_product"
    __table_args__ = (
        CheckConstraint("status IN ('awaiting_count', 'blocked', 'awaiting_release')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), nullable=False, unique=True)
    dose_order_id: Mapped[int] = mapped_column(ForeignKey("dose_order.id"), nullable=False, unique=True)
    syringe_id: Mapped[int] = mapped_column(ForeignKey("container.id"), nullable=False, unique=True)
    din: Mapped[str] = mapped_column(String(16), nullable=False)
    product_code: Mapped[str] = mapped_column(String(10), nullable=False)  # ISBT 128 003, with division
    formulated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    prescribed_cells: Mapped[float] = mapped_column(Float, nullable=False)
    expected_cells: Mapped[float] = mapped_column(Float, nullable=False)  # from the fill plan
    # The volume in the syringe: drawn volumes less the overage taken for the retained sample and QC.
    final_volume_ml: Mapped[float] = mapped_column(Float, nullable=False)
    # Measured at the final count: mean viable concentration, and that times the volume in the syringe.
    concentration_per_ml: Mapped[float | None] = mapped_column(Float)
    delivered_cells: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    block_reason: Mapped[str | None] = mapped_column(Text)
