"""Administration: accounts, sites, workstations and the audit trail. Administrators never perform GMP actions
(reagent lots, equipment and its calibration are the materials station's)."""

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
from mfg.process import workstations as workstation_service
from mfg.process.models import Workstation
from mfg.study.models import Site
from mfg.web import forms, security
from mfg.web.transaction import commit_point, db, rerender

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
        one_time=True,  # whoever typed it, the administrator, must not be able to sign as the holder
    )
    flash(
        f"Account {user.username} created with a one-time password: {user.username} chooses their own at "
        "first sign-in, and can do nothing else until then.",
        "ok",
    )
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


# --- workstations (biosafety cabinets) ------------------------------------------------------------------
# Reagent lots, equipment and calibrations are GMP records: the materials station (supervisor, QA, QC).


def _workstations_page(*, error: str = "", status: int = 200) -> Any:
    return render_template(
        "admin/workstations.html",
        error=error,
        values=request.form if request.method == "POST" else {},
        workstations=db().scalars(select(Workstation).order_by(Workstation.code)).all(),
    ), status


@bp.route("/workstations")
@security.roles_required("admin")
def workstations() -> Any:
    return _workstations_page()


@bp.route("/workstations", methods=["POST"])
@security.roles_required("admin")
@commit_point(on_refusal=rerender(_workstations_page))
def add_workstation() -> Any:
    workstation_service.register_workstation(
        db(),
        current_user.username,
        forms.text("code", "Code", max_length=40),
        forms.text("name", "Name", max_length=120),
    )
    flash("Workstation registered.", "ok")
    return redirect(url_for("admin.workstations"))
