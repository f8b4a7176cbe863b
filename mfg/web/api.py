"""JSON API. Errors are JSON with a 4xx status, never a 500 page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from mfg.study import service as study_service
from mfg.web import security
from mfg.web.transaction import db

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.route("/health")
@security.public
def health() -> Any:
    db().execute(text("SELECT 1"))
    return jsonify({"status": "ok"})


@bp.route("/subjects/by-coi/<code>")
@security.roles_required(*security.GMP)
def subject_by_coi(code: str) -> Any:
    subject = study_service.find_subject_by_coi(db(), code)
    coi = study_service.coi_of(subject)
    return jsonify(
        {
            "study_subject_id": subject.study_subject_id,
            "coi": coi.identifier,
            "coi_check_character": coi.check_character,
            "status": subject.status,
        }
    )
