"""Materials station: reagent lots and equipment, with their calibration records.

GMP records, so never the administrator's: a supervisor receives lots, registers equipment, takes it out of or
back into service and records calibrations; QA or QC releases and rejects lots. Every decision is signed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from mfg import clock
from mfg.errors import Refusal
from mfg.identity import service as identity_service
from mfg.materials import service as materials_service
from mfg.materials.models import (
    CALIBRATION_RESULTS,
    CERTIFICATE_REF_MAX,
    Equipment,
    EquipmentCalibration,
    ReagentLot,
)
from mfg.web import forms, security
from mfg.web.transaction import commit_point, db, get_record, rerender, signed_in_user

bp = Blueprint("materials", __name__, url_prefix="/materials")
ID = f"<int(max={forms.LARGEST_ID}):%s>"

KEEPERS = ("supervisor",)  # receive lots, register equipment, service status, calibrations
RELEASERS = ("qa", "qc_analyst")  # lot release is a QA/QC act
READERS = (*KEEPERS, *RELEASERS)


def _index_page(*, error: str = "", status: int = 200, lot_id: int | None = None) -> Any:
    """``lot_id``: the lot whose status form was refused, to show what was typed in it again."""
    session_ = db()
    lots = session_.scalars(select(ReagentLot).order_by(ReagentLot.status, ReagentLot.name)).all()
    return render_template(
        "materials/index.html",
        error=error,
        values=request.form if request.method == "POST" else {},
        typed_for_lot=lot_id,
        lots=lots,
        lot_signatures=identity_service.signatures_for_many(session_, lots),
        equipment=session_.scalars(select(Equipment).order_by(Equipment.asset_tag)).all(),
        today=clock.today(),
    ), status


def _lot_form_again(refusal: Refusal, status: int, *, lot_id: int) -> Any:
    return _index_page(error=refusal.message, status=status, lot_id=lot_id)


def _equipment_page(equipment_id: int, *, error: str = "", status: int = 200) -> Any:
    session_ = db()
    item = get_record(Equipment, equipment_id, "equipment")
    status_signatures = identity_service.signatures_for(session_, item)
    calibrations = session_.scalars(
        select(EquipmentCalibration)
        .where(EquipmentCalibration.equipment_id == item.id)
        .order_by(EquipmentCalibration.id.desc())
    ).all()
    return render_template(
        "materials/equipment.html",
        error=error,
        values=request.form if request.method == "POST" else {},
        item=item,
        calibrations=calibrations,
        signatures=identity_service.signatures_for_many(session_, calibrations),
        status_signatures=list(reversed(status_signatures)),  # the latest first, like the calibrations
        problem=materials_service.calibration_problem(session_, item, clock.today()),
        results=CALIBRATION_RESULTS,
        certificate_max=CERTIFICATE_REF_MAX,
        today=clock.today(),
    ), status


def _equipment_page_again(refusal: Refusal, status: int, *, equipment_id: int) -> Any:
    return _equipment_page(equipment_id, error=refusal.message, status=status)


@bp.route("/")
@security.roles_required(*READERS)
def index() -> Any:
    return _index_page()


@bp.route("/lots", methods=["POST"])
@security.roles_required(*KEEPERS)
@commit_point(on_refusal=rerender(_index_page))
def add_lot() -> Any:
    lot = materials_service.register_lot(
        db(),
        current_user.username,
        scan_code=forms.text("scan_code", "Label code", max_length=40),
        name=forms.text("name", "Name", max_length=200),
        catalogue_number=forms.text("catalogue_number", "Catalogue number", max_length=60),
        lot_number=forms.text("lot_number", "Lot number", max_length=60),
        expiry_date=forms.iso_date("expiry_date", "Expiry date"),
    )
    flash(f"Lot {lot.lot_number} of {lot.name} received into QUARANTINE: QA or QC releases it.", "ok")
    return redirect(url_for("materials.index"))


@bp.route(f"/lots/{ID % 'lot_id'}/status", methods=["POST"])
@security.roles_required(*RELEASERS)
@commit_point(on_refusal=_lot_form_again)
def lot_status(lot_id: int) -> Any:
    lot = get_record(ReagentLot, lot_id, "reagent lot")
    materials_service.set_lot_status(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        lot,
        forms.text("status", "Status", max_length=20),
        forms.text("reason", "Reason"),
    )
    flash(f"Lot {lot.lot_number} of {lot.name} is now {lot.status}, signed.", "ok")
    return redirect(url_for("materials.index"))


@bp.route("/equipment", methods=["POST"])
@security.roles_required(*KEEPERS)
@commit_point(on_refusal=rerender(_index_page))
def add_equipment() -> Any:
    item = materials_service.register_equipment(
        db(),
        current_user.username,
        asset_tag=forms.text("asset_tag", "Asset tag", max_length=40),
        equipment_type=forms.text("equipment_type", "Type", max_length=60),
        description=forms.text("description", "Description", required=False, max_length=200),
    )
    flash(f"{item.asset_tag} registered. Record its calibration before it is used.", "ok")
    return redirect(url_for("materials.equipment", equipment_id=item.id))


@bp.route(f"/equipment/{ID % 'equipment_id'}")
@security.roles_required(*READERS)
def equipment(equipment_id: int) -> Any:
    return _equipment_page(equipment_id)


@bp.route(f"/equipment/{ID % 'equipment_id'}/calibrations", methods=["POST"])
@security.roles_required(*KEEPERS)
@commit_point(on_refusal=_equipment_page_again)
def record_calibration(equipment_id: int) -> Any:
    item = get_record(Equipment, equipment_id, "equipment")
    typed_due = request.form.get("next_due", "").strip()
    calibration = materials_service.record_calibration(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        item,
        materials_service.CalibrationEntry(
            calibrated_on=forms.iso_date("calibrated_on", "Calibration date"),
            next_due=forms.iso_date("next_due", "Next due date") if typed_due else None,
            certificate_ref=forms.text(
                "certificate_ref", "Certificate reference", max_length=CERTIFICATE_REF_MAX
            ),
            result=forms.text("result", "Result", max_length=10),
        ),
    )
    if calibration.result == "pass":
        message = f"{item.asset_tag} is due again on {calibration.next_due}"
    else:
        message = f"{item.asset_tag} failed and is OUT OF SERVICE"
    flash(f"Calibration {calibration.certificate_ref} recorded and signed: {message}.", "ok")
    return redirect(url_for("materials.equipment", equipment_id=item.id))


@bp.route(f"/equipment/{ID % 'equipment_id'}/status", methods=["POST"])
@security.roles_required(*KEEPERS)
@commit_point(on_refusal=_equipment_page_again)
def equipment_status(equipment_id: int) -> Any:
    item = get_record(Equipment, equipment_id, "equipment")
    materials_service.set_equipment_status(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        item,
        forms.text("status", "Status", max_length=20),
        forms.text("reason", "Reason"),
    )
    flash(f"{item.asset_tag} is now {item.status.replace('_', ' ')}, signed.", "ok")
    return redirect(url_for("materials.equipment", equipment_id=item.id))
