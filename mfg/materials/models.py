from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base, UTCDateTime

LOT_STATUSES = ("quarantined", "released", "rejected")
EQUIPMENT_STATUSES = ("in_service", "out_of_service")
CALIBRATION_RESULTS = ("pass", "fail")
CERTIFICATE_REF_MAX = 80


class ReagentLot(Audited, Base):
    """A received lot of a reagent or material; only released, in-date lots may be used.

    Received into quarantine; QA or QC then release or reject it once, by an e-signature of that meaning
    over the whole row (``materials.service.set_lot_status``)."""

    __tablename__ = "reagent_lot"
    __table_args__ = (
        CheckConstraint("status IN ('quarantined', 'released', 'rejected')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # what the scanner reads from the lab's lot label
    scan_code: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    catalogue_number: Mapped[str] = mapped_column(String(60), nullable=False)
    lot_number: Mapped[str] = mapped_column(String(60), nullable=False)
    expiry_date: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)


class Equipment(Audited, Base):
    """A piece of equipment by asset tag; used only in service and within calibration.

    ``calibration_due`` is the next due date of the latest passing calibration record (None: never
    calibrated); only ``record_calibration`` changes it."""

    __tablename__ = "equipment"
    __table_args__ = (CheckConstraint("status IN ('in_service', 'out_of_service')", name="status_known"),)
    # A supervisor's "approved" signs a change of service status, not the calibration date: the next
    # calibration moves the date without unsigning an item's return to service.
    __signed_fields_by_meaning__ = {"approved": ("asset_tag", "equipment_type", "status")}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_tag: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    equipment_type: Mapped[str] = mapped_column(String(60), nullable=False)
    description: Mapped[str] = mapped_column(String(200), nullable=False)
    calibration_due: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), nullable=False)


class EquipmentCalibration(Audited, Base):
    """One calibration of a piece of equipment, as its certificate reports it, signed "approved" by the
    supervisor who recorded it. Append-only (the database refuses UPDATE and DELETE): a wrong record is
    followed by a new one, never changed."""

    __tablename__ = "equipment_calibration"
    __table_args__ = (
        CheckConstraint("result IN ('pass', 'fail')", name="result_known"),
        # a pass is good until its next due date; a failed calibration makes the item good for nothing
        CheckConstraint(
            "(result = 'pass' AND next_due > calibrated_on) OR (result = 'fail' AND next_due IS NULL)",
            name="next_due_follows_result",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    equipment_id: Mapped[int] = mapped_column(ForeignKey("equipment.id"), nullable=False, index=True)
    calibrated_on: Mapped[date] = mapped_column(Date, nullable=False)
    next_due: Mapped[date | None] = mapped_column(Date)
    certificate_ref: Mapped[str] = mapped_column(String(CERTIFICATE_REF_MAX), nullable=False)
    result: Mapped[str] = mapped_column(String(10), nullable=False)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class MaterialUse(Audited, Base):
    """A lot used in a batch step: what a recall look-back searches."""

    __tablename__ = "material_use"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_record_id: Mapped[int] = mapped_column(ForeignKey("step_record.id"), nullable=False, index=True)
    field_key: Mapped[str] = mapped_column(String(60), nullable=False)
    reagent_lot_id: Mapped[int] = mapped_column(ForeignKey("reagent_lot.id"), nullable=False, index=True)


class EquipmentUse(Audited, Base):
    """A piece of equipment used in a batch step."""

    __tablename__ = "equipment_use"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_record_id: Mapped[int] = mapped_column(ForeignKey("step_record.id"), nullable=False, index=True)
    field_key: Mapped[str] = mapped_column(String(60), nullable=False)
    equipment_id: Mapped[int] = mapped_column(ForeignKey("equipment.id"), nullable=False, index=True)
