"""Reagent lots and equipment: registration, status changes, and the check made at every scan."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg.audit import service as audit_service
from mfg.errors import NotFound, Refusal, ValidationRefused
from mfg.materials import rules
from mfg.materials.models import EQUIPMENT_STATUSES, LOT_STATUSES, Equipment, ReagentLot
from mfg.text import checked_text
from mfg.text import scan_code as checked_scan_code


class MaterialRefused(Refusal):
    """A lot or a piece of equipment may not be used; recorded as an attempted error."""


def register_lot(
    session: Session,
    actor: str,
    *,
    scan_code: str,
    name: str,
    catalogue_number: str,
    lot_number: str,
    expiry_date: date,
    status: str = "quarantined",
) -> ReagentLot:
    scan_code = checked_scan_code(scan_code, "Label code", 40, entity_type="reagent_lot")
    name = checked_text(name, "Name", 200, entity_type="reagent_lot")
    catalogue_number = checked_text(catalogue_number, "Catalogue number", 60, entity_type="reagent_lot")
    lot_number = checked_text(lot_number, "Lot number", 60, entity_type="reagent_lot")
    if status not in LOT_STATUSES:
        raise ValidationRefused(
            f"lot status must be one of {', '.join(LOT_STATUSES)}", entity_type="reagent_lot"
        )
    if session.scalar(select(ReagentLot.id).where(ReagentLot.scan_code == scan_code)) is not None:
        raise ValidationRefused(
            f"a lot with label code {scan_code} is already registered", entity_type="reagent_lot"
        )
    lot = ReagentLot(
        scan_code=scan_code,
        name=name,
        catalogue_number=catalogue_number,
        lot_number=lot_number,
        expiry_date=expiry_date,
        status=status,
    )
    return audit_service.create(session, actor, lot)


def set_lot_status(session: Session, actor: str, lot: ReagentLot, status: str, reason: str) -> None:
    if status not in LOT_STATUSES:
        raise ValidationRefused(
            f"lot status must be one of {', '.join(LOT_STATUSES)}",
            entity_type="reagent_lot",
            entity_id=str(lot.id),
        )
    audit_service.update(session, actor, lot, reason=reason, action="status", status=status)


def register_equipment(
    session: Session,
    actor: str,
    *,
    asset_tag: str,
    equipment_type: str,
    description: str,
    calibration_due: date,
    status: str = "in_service",
) -> Equipment:
    asset_tag = checked_scan_code(asset_tag, "Asset tag", 40, entity_type="equipment").upper()
    typed_type = checked_text(equipment_type, "Type", 60, entity_type="equipment")
    description = checked_text(description, "Description", 200, required=False, entity_type="equipment")
    if status not in EQUIPMENT_STATUSES:
        raise ValidationRefused(
            f"equipment status must be one of {', '.join(EQUIPMENT_STATUSES)}", entity_type="equipment"
        )
    if session.scalar(select(Equipment.id).where(Equipment.asset_tag == asset_tag)) is not None:
        raise ValidationRefused(f"asset tag {asset_tag} is already registered", entity_type="equipment")
    item = Equipment(
        asset_tag=asset_tag,
        equipment_type=typed_type.lower(),
        description=description or typed_type,
        calibration_due=calibration_due,
        status=status,
    )
    return audit_service.create(session, actor, item)


def set_equipment(
    session: Session,
    actor: str,
    item: Equipment,
    reason: str,
    *,
    status: str | None = None,
    calibration_due: date | None = None,
) -> None:
    values: dict[str, object] = {}
    if status is not None:
        if status not in EQUIPMENT_STATUSES:
            raise ValidationRefused(
                f"equipment status must be one of {', '.join(EQUIPMENT_STATUSES)}",
                entity_type="equipment",
                entity_id=str(item.id),
            )
        values["status"] = status
    if calibration_due is not None:
        values["calibration_due"] = calibration_due
    audit_service.update(session, actor, item, reason=reason, **values)


def usable_lot(session: Session, scanned: str, *, on: date, expected_material: str = "") -> ReagentLot:
    lot = session.scalar(select(ReagentLot).where(ReagentLot.scan_code == scanned.strip()))
    if lot is None:
        raise NotFound(f"no reagent lot has the label code {scanned.strip()!r}", entity_type="reagent_lot")
    problem = rules.lot_problem(
        name=lot.name,
        lot_number=lot.lot_number,
        status=lot.status,
        expiry_date=lot.expiry_date,
        on=on,
        expected_name=expected_material,
    )
    if problem:
        raise MaterialRefused(problem, entity_type="reagent_lot", entity_id=str(lot.id))
    return lot


def usable_equipment(session: Session, scanned: str, *, on: date, expected_type: str = "") -> Equipment:
    item = session.scalar(select(Equipment).where(Equipment.asset_tag == scanned.strip().upper()))
    if item is None:
        raise NotFound(f"no equipment has the asset tag {scanned.strip()!r}", entity_type="equipment")
    problem = rules.equipment_problem(
        asset_tag=item.asset_tag,
        equipment_type=item.equipment_type,
        status=item.status,
        calibration_due=item.calibration_due,
        on=on,
        expected_type=expected_type,
    )
    if problem:
        raise MaterialRefused(problem, entity_type="equipment", entity_id=str(item.id))
    return item
