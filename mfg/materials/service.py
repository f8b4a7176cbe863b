"""Reagent lots and equipment: registration, status changes, calibration records, and the check made at every
scan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.errors import NotFound, PermissionRefused, Refusal, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import Signature, User
from mfg.identity.rules import QA, QC_ANALYST, ROLE_TITLES, SUPERVISOR
from mfg.materials import rules
from mfg.materials.models import (
    CERTIFICATE_REF_MAX,
    EQUIPMENT_STATUSES,
    LOT_STATUSES,
    Equipment,
    EquipmentCalibration,
    ReagentLot,
)
from mfg.text import FREE_TEXT_MAX, checked_text
from mfg.text import scan_code as checked_scan_code

# Who keeps the equipment register and signs its calibrations: never an administrator.
EQUIPMENT_KEEPERS = frozenset({SUPERVISOR})
# Who releases and rejects reagent lots: a quality decision, never the supervisor who received the lot.
LOT_RELEASERS = frozenset({QA, QC_ANALYST})


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
    """Receive a lot into quarantine. ``status`` is for seeding the demo and tests only (the app never passes
    it): a lot the app releases is released by ``set_lot_status``, signed."""
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


def set_lot_status(
    session: Session, signer: User, password: str, lot: ReagentLot, status: str, reason: str
) -> Signature:
    """Release or reject a quarantined lot: an e-signature by QA or QC whose meaning is the new status
    (password asked again), over the lot as it now stands. All in the caller's transaction."""
    where = {"entity_type": "reagent_lot", "entity_id": str(lot.id)}
    if signer.role not in LOT_RELEASERS:
        raise PermissionRefused(
            f"the {ROLE_TITLES.get(signer.role, signer.role)} role cannot release or reject a reagent lot: "
            f"a {ROLE_TITLES[QA]} or a {ROLE_TITLES[QC_ANALYST]} does",
            **where,
        )
    if status not in LOT_STATUSES:
        raise ValidationRefused(f"lot status must be one of {', '.join(LOT_STATUSES)}", **where)
    reason = checked_text(reason, "Reason", FREE_TEXT_MAX, multiline=True, **where)
    problem = rules.lot_status_problem(
        name=lot.name,
        lot_number=lot.lot_number,
        status=lot.status,
        new_status=status,
        expiry_date=lot.expiry_date,
        on=clock.today(),
    )
    if problem:
        raise ValidationRefused(problem, **where)
    audit_service.update(session, signer.username, lot, reason=reason, action="status", status=status)
    # signed after the change, so that the signature covers the lot as released (or rejected)
    return identity_service.sign(session, signer, password, status, lot, comment=reason)


def register_equipment(
    session: Session,
    actor: str,
    *,
    asset_tag: str,
    equipment_type: str,
    description: str,
    status: str = "in_service",
) -> Equipment:
    """A new item has no calibration date: the terminal refuses it until a calibration is recorded."""
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
        calibration_due=None,
        status=status,
    )
    return audit_service.create(session, actor, item)


def latest_calibration(session: Session, item: Equipment) -> EquipmentCalibration | None:
    """Calibrations are recorded in date order, so the latest is the last one recorded."""
    return session.scalar(
        select(EquipmentCalibration)
        .where(EquipmentCalibration.equipment_id == item.id)
        .order_by(EquipmentCalibration.id.desc())
        .limit(1)
    )


def calibration_problem(session: Session, item: Equipment, on: date) -> str:
    """Empty when ``item``'s calibration is current on ``on``, else why not."""
    latest = latest_calibration(session, item)
    return rules.calibration_problem(
        asset_tag=item.asset_tag,
        calibration_due=item.calibration_due,
        latest_result=latest.result if latest else None,
        latest_certificate=latest.certificate_ref if latest else "",
        latest_on=latest.calibrated_on if latest else None,
        on=on,
    )


def set_equipment_status(
    session: Session, signer: User, password: str, item: Equipment, status: str, reason: str
) -> Signature:
    """Take an item out of service, or put it back, signed "approved" by a supervisor (password asked again):
    never back past its calibration (only a calibration record changes the date, ``record_calibration``)."""
    _require_equipment_keeper(signer, "change the service status of equipment")
    where = {"entity_type": "equipment", "entity_id": str(item.id)}
    if status not in EQUIPMENT_STATUSES:
        raise ValidationRefused(f"equipment status must be one of {', '.join(EQUIPMENT_STATUSES)}", **where)
    reason = checked_text(reason, "Reason", FREE_TEXT_MAX, multiline=True, **where)
    if status == item.status:
        raise ValidationRefused(f"{item.asset_tag} is already {status.replace('_', ' ')}", **where)
    if status == "in_service":
        problem = calibration_problem(session, item, clock.today())
        if problem:
            raise ValidationRefused(f"{item.asset_tag} cannot go back in service: {problem}", **where)
    audit_service.update(session, signer.username, item, reason=reason, action="status", status=status)
    # "approved" says who signed, not what: the comment keeps which way the item went, and why
    what = "put back in service" if status == "in_service" else "taken out of service"
    return identity_service.sign(session, signer, password, "approved", item, comment=f"{what}: {reason}")


@dataclass(frozen=True)
class CalibrationEntry:
    """A calibration as its certificate reports it."""

    calibrated_on: date
    next_due: date | None
    certificate_ref: str
    result: str


def record_calibration(
    session: Session, signer: User, password: str, item: Equipment, entry: CalibrationEntry
) -> EquipmentCalibration:
    """Record a calibration, signed "approved" by a supervisor (password asked again). A pass sets the item's
    calibration due date; a failure takes the item out of service. All in the caller's transaction."""
    where = {"entity_type": "equipment", "entity_id": str(item.id)}
    _require_equipment_keeper(signer, "record a calibration")
    certificate = checked_text(entry.certificate_ref, "Certificate reference", CERTIFICATE_REF_MAX, **where)
    problem = rules.calibration_entry_problem(
        result=entry.result, calibrated_on=entry.calibrated_on, next_due=entry.next_due, on=clock.today()
    )
    if problem:
        raise ValidationRefused(f"{item.asset_tag}: {problem}", **where)
    latest = latest_calibration(session, item)
    if latest is not None and entry.calibrated_on < latest.calibrated_on:
        raise ValidationRefused(
            f"{item.asset_tag}'s latest calibration on record is dated {latest.calibrated_on.isoformat()}: "
            "an older one cannot follow it",
            **where,
        )
    calibration = audit_service.create(
        session,
        signer.username,
        EquipmentCalibration(
            equipment_id=item.id,
            calibrated_on=entry.calibrated_on,
            next_due=entry.next_due,
            certificate_ref=certificate,
            result=entry.result,
            recorded_by_id=signer.id,
            recorded_at=clock.now(),
        ),
    )
    identity_service.sign(session, signer, password, "approved", calibration)
    detail = {"calibration_id": calibration.id, "certificate_ref": certificate}
    if entry.result == "pass":
        audit_service.update(
            session,
            signer.username,
            item,
            reason=f"calibration {certificate} passed",
            action="calibrated",
            detail=detail,
            calibration_due=entry.next_due,
        )
    else:
        audit_service.update(
            session,
            signer.username,
            item,
            reason=f"calibration {certificate} failed",
            action="calibration_failed",
            detail=detail,
            status="out_of_service",
        )
    return calibration


def _require_equipment_keeper(user: User, what: str) -> None:
    if user.role not in EQUIPMENT_KEEPERS:
        raise PermissionRefused(
            f"the {ROLE_TITLES.get(user.role, user.role)} role cannot {what}: "
            f"a {ROLE_TITLES[SUPERVISOR]} does",
            entity_type="equipment",
        )


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
