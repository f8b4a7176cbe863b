"""QA station: approve master batch records, review deviations. Reagent lots are released or rejected at the
materials station."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from mfg.identity import service as identity_service
from mfg.process import versions
from mfg.process.models import Deviation, MbrVersion
from mfg.web import forms, security
from mfg.web.transaction import commit_point, db, get_record, rerender, signed_in_user

bp = Blueprint("qa", __name__, url_prefix="/qa")
ID = f"<int(max={forms.LARGEST_ID}):%s>"


def _page(*, error: str = "", status: int = 200) -> Any:
    session_ = db()
    versions = session_.scalars(select(MbrVersion).order_by(MbrVersion.code, MbrVersion.version)).all()
    signatures = {v.id: identity_service.signatures_for(session_, v) for v in versions}
    deviations = session_.scalars(
        select(Deviation).where(Deviation.status != "closed").order_by(Deviation.id)
    ).all()
    return render_template(
        "qa/index.html",
        versions=versions,
        signatures=signatures,
        deviations=deviations,
        error=error,
    ), status


@bp.route("/")
@security.roles_required("qa")
def index() -> Any:
    return _page()


@bp.route(f"/mbr/{ID % 'version_id'}/approve", methods=["POST"])
@security.roles_required("qa")
@commit_point(on_refusal=rerender(_page))
def approve_mbr(version_id: int) -> Any:
    version = get_record(MbrVersion, version_id, "MBR version")
    versions.approve_mbr(db(), signed_in_user(), request.form.get("password", ""), version)
    flash(f"{version.code} v{version.version} approved for use.", "ok")
    return redirect(url_for("qa.index"))
