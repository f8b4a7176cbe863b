"""Each role's home page and the scan field that every screen carries."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from mfg.custody import service as custody_service
from mfg.errors import NotFound
from mfg.identity.models import User
from mfg.process.models import Batch
from mfg.study import service as study_service
from mfg.study.models import Subject
from mfg.web import security
from mfg.web.transaction import back_to_referrer, commit_point, db

bp = Blueprint("home", __name__)


@bp.route("/")
@security.roles_required(*security.AUTHENTICATED)
def index() -> Any:
    session_ = db()
    context: dict[str, Any] = {}
    if current_user.role == "admin":
        context["locked_users"] = session_.scalars(select(User).where(User.locked)).all()
        context["user_count"] = session_.scalar(select(func.count()).select_from(User))
    else:
        context["subject_count"] = session_.scalar(select(func.count()).select_from(Subject))
        context["recent_subjects"] = session_.scalars(
            select(Subject).order_by(Subject.enrolled_at.desc()).limit(5)
        ).all()
    return render_template("home/index.html", **context)


@bp.route("/scan")
@security.roles_required(*security.GMP)
@commit_point(on_refusal=back_to_referrer("home.index", prefix="Scan refused: "))
def scan() -> Any:
    """A scanner is a keyboard: it types the code and presses Enter. Work out what was scanned."""
    code = request.args.get("code", "").strip()
    if not code:
        flash("Scan or type a code first.", "error")
        return redirect(url_for("home.index"))
    if code.startswith("C") and len(code) == 11:
        return _open_container_batch(code)
    subject = study_service.find_subject_by_coi(db(), code)
    return redirect(url_for("clinic.subject", subject_id=subject.id))


def _open_container_batch(code: str) -> Any:
    """A scanned container opens its batch at the step that is due now."""
    container = custody_service.find_container(db(), code)
    # One collection's DIN has its collection batch and its dose batches: an open one comes first, and the
    # final product's own dose batch for a syringe or retained sample.
    batches = db().scalars(select(Batch).where(Batch.din == container.din).order_by(Batch.id)).all()
    dose_kinds = ("syringe", "sample_tube")
    batch = next((b for b in reversed(batches) if b.status in ("open", "on_hold")), None)
    if container.kind in dose_kinds:
        batch = next((b for b in reversed(batches) if b.division != "00"), batch)
    batch = batch or (batches[0] if batches else None)
    if batch is None:
        raise NotFound(
            f"container {container.scan_id} belongs to no batch",
            entity_type="container",
            entity_id=str(container.id),
        )
    return redirect(url_for("bench.batch", batch_id=batch.id) + "#current-step")
