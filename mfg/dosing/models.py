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
