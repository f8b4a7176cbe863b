from __future__ import annotations

from datetime import date

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base

LOT_STATUSES = ("quarantined", "released", "rejected")
EQUIPMENT_STATUSES = ("in_service", "out_of_service")


class ReagentLot(Audited, Base):
    """A received lot of a reagent or material; only released, in-date lots may be used."""

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
    """A piece of equipment by asset tag; used only in service and within calibration."""

    __tablename__ = "equipment"
    __table_args__ = (CheckConstraint("status IN ('in_service', 'out_of_service')", name="status_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_tag: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    equipment_type: Mapped[str] = mapped_column(String(60), nullable=False)
    description: Mapped[str] = mapped_column(String(200), nullable=False)
    calibration_due: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)


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
