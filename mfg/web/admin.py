"""Administration: accounts and the audit trail. Administrators never perform GMP actions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from mfg.audit.models import AuditEvent
from mfg.errors import Refusal
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.identity.rules import ROLES
from mfg.materials import service as materials_service
from mfg.materials.models import Equipment, ReagentLot
from mfg.process import workstations
from mfg.process.models import Workstation
from mfg.study.models import Site
from mfg.web import forms, security
from mfg.web.transaction import commit_point, db, get_record, rerender

bp = Blueprint("admin", __name__, url_prefix="/admin")

AUDIT_PAGE = 100


def _users_page(*, error: str = "", status: int = 200) -> Any:
    session_ = db()
    users = session_.scalars(select(User).order_by(User.username)).all()
    failures = session_.scalars(
        select(AuditEvent)
        .where(AuditEvent.action.in_(("login_failed", "lockout")))
        .order_by(AuditEvent.id.desc())
        .limit(50)
    ).all()
    return render_template(
        "admin/users.html",
        users=users,
        roles=ROLES,
        failures=failures,
        error=error,
        values=request.form if request.method == "POST" else {},
    ), status


@bp.route("/users")
@security.roles_required("admin")
def users() -> Any:
    return _users_page()


@bp.route("/users", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_users_page))
def create_user() -> Any:
    user = identity_service.create_user(
        db(),
        current_user.username,
        username=forms.text("username", "Username", max_length=64),
        full_name=forms.text("full_name", "Full name", max_length=200),
        role=forms.text("role", "Role", max_length=32),
        password=request.form.get("password", ""),
    )
    flash(f"Account {user.username} created.", "ok")
    return redirect(url_for("admin.users"))


@bp.route("/users/<username>/unlock", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_users_page))
def unlock(username: str) -> Any:
    identity_service.unlock_user(
        db(), current_user.username, username, forms.text("reason", "Reason for unlocking")
    )
    flash(f"Account {username} unlocked.", "ok")
    return redirect(url_for("admin.users"))


@bp.route("/users/<username>/deactivate", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_users_page))
def deactivate(username: str) -> Any:
    if username == current_user.username:
        raise Refusal("you cannot deactivate your own account", entity_type="user_account")
    identity_service.deactivate_user(
        db(), current_user.username, username, forms.text("reason", "Reason for deactivating")
    )
    flash(f"Account {username} deactivated. It stays on record and its username is never reused.", "ok")
    return redirect(url_for("admin.users"))


@bp.route("/sites")
@security.roles_required("admin")
def sites() -> Any:
    return render_template("admin/sites.html", sites=db().scalars(select(Site).order_by(Site.code)).all())


@bp.route("/audit")
@security.roles_required("admin", "qa")
def audit_trail() -> Any:
    before = forms.page_cursor("before")
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(AUDIT_PAGE)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    events = db().scalars(query).all()
    return render_template("admin/audit.html", events=events, page_size=AUDIT_PAGE)


# --- registers: reagent lots, equipment, workstations ---------------------------------------------------


def _registers_page(*, error: str = "", status: int = 200) -> Any:
    session_ = db()
    return render_template(
        "admin/registers.html",
        error=error,
        values=request.form if request.method == "POST" else {},
        lots=session_.scalars(select(ReagentLot).order_by(ReagentLot.name)).all(),
        equipment=session_.scalars(select(Equipment).order_by(Equipment.asset_tag)).all(),
        workstations=session_.scalars(select(Workstation).order_by(Workstation.code)).all(),
    ), status


@bp.route("/registers")
@security.roles_required("admin")
def registers() -> Any:
    return _registers_page()


@bp.route("/lots", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_registers_page))
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
    flash(f"Lot {lot.lot_number} of {lot.name} received into QUARANTINE: QA releases it.", "ok")
    return redirect(url_for("admin.registers"))


@bp.route("/equipment", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_registers_page))
def add_equipment() -> Any:
    item = materials_service.register_equipment(
        db(),
        current_user.username,
        asset_tag=forms.text("asset_tag", "Asset tag", max_length=40),
        equipment_type=forms.text("equipment_type", "Type", max_length=60),
        description=forms.text("description", "Description", required=False, max_length=200),
        calibration_due=forms.iso_date("calibration_due", "Calibration due"),
    )
    flash(f"{item.asset_tag} registered.", "ok")
    return redirect(url_for("admin.registers"))


@bp.route(f"/equipment/<int(max={forms.LARGEST_ID}):equipment_id>", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_registers_page))
def update_equipment(equipment_id: int) -> Any:
    item = get_record(Equipment, equipment_id, "equipment")
    due = request.form.get("calibration_due", "").strip()
    materials_service.set_equipment(
        db(),
        current_user.username,
        item,
        forms.text("reason", "Reason"),
        status=request.form.get("status") or None,
        calibration_due=forms.iso_date("calibration_due", "Calibration due") if due else None,
    )
    flash(f"{item.asset_tag} updated.", "ok")
    return redirect(url_for("admin.registers"))


@bp.route("/workstations", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_registers_page))
def add_workstation() -> Any:
    workstations.register_workstation(
        db(),
        current_user.username,
        forms.text("code", "Code", max_length=40),
        forms.text("name", "Name", max_length=120),
    )
    flash("Workstation registered.", "ok")
    return redirect(url_for("admin.registers"))
