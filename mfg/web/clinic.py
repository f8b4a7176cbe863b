"""Clinic station: enrollment, the subject page, corrections, the second-person check and dose orders."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from mfg.audit.models import AuditEvent
from mfg.dosing import bank, orders
from mfg.dosing import service as order_service
from mfg.errors import Refusal, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process import batches
from mfg.process.models import Batch
from mfg.study import service as study_service
from mfg.study.definition import load_study
from mfg.study.models import Site, Subject
from mfg.web import forms, security
from mfg.web.transaction import commit_point, db, rerender, signed_in_user

bp = Blueprint("clinic", __name__, url_prefix="/clinic")

SUBJECT_READERS = ("coordinator", "investigator", "qa", "supervisor", "pharmacist", "nurse")


@bp.route("/subjects")
@security.roles_required(*SUBJECT_READERS)
def subjects() -> Any:
    rows = (
        db()
        .execute(
            select(Subject, Site).join(Site, Site.id == Subject.site_id).order_by(Subject.study_subject_id)
        )
        .all()
    )
    return render_template("clinic/subjects.html", rows=rows)


def _enroll_page(*, error: str = "", status: int = 200) -> Any:
    return render_template(
        "clinic/enroll.html",
        study=load_study(current_app.config["STUDY"]),
        sites=study_service.clinical_sites(db()),
        values=request.form if request.method == "POST" else {},
        error=error,
    ), status


@bp.route("/subjects/new", methods=["GET", "POST"])
@security.roles_required("coordinator")
@commit_point(on_refusal=rerender(_enroll_page))
def enroll() -> Any:
    if request.method == "GET":
        return _enroll_page()
    form = study_service.EnrollmentForm(
        study_subject_id=forms.text("study_subject_id", "Study subject id", max_length=40),
        name=forms.text("name", "Subject name", max_length=200),
        date_of_birth=forms.iso_date("date_of_birth", "Date of birth"),
        medical_record_number=forms.text("medical_record_number", "Medical record number", max_length=40),
        site_id=forms.whole_number("site_id", "Clinical site"),
        consent_date=forms.iso_date("consent_date", "Consent date"),
    )
    subject = study_service.enroll_subject(
        db(),
        signed_in_user(),
        load_study(current_app.config["STUDY"]),
        form,
        request.form.get("password", ""),
    )
    flash(f"{subject.study_subject_id} enrolled; chain of identity {subject.coi_identifier} assigned.", "ok")
    return redirect(url_for("clinic.subject", subject_id=subject.id))


def _subject_page(subject: Subject, *, error: str = "", status: int = 200) -> Any:
    session_ = db()
    site = session_.get(Site, subject.site_id)
    enroller = session_.get(User, subject.enrolled_by_id)
    trail = session_.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "subject", AuditEvent.entity_id == str(subject.id))
        .order_by(AuditEvent.id)
    ).all()
    study = load_study(current_app.config["STUDY"])
    # The bank status is about the next order waiting for preparation or, with none, the next injection
    # to order at the level it would start from.
    next_order = order_service.next_to_prepare(session_, subject)
    upcoming = order_service.next_injection(session_, subject, study)
    all_ordered = next_order is None and upcoming in {
        o.injection_number for o in order_service.existing_orders(session_, subject) if o.active
    }
    if next_order is not None:
        bank_for = (next_order.injection_number, next_order.dose_cells)
    else:
        bank_for = (upcoming, order_service.default_level(session_, subject, study, upcoming))
    return render_template(
        "clinic/subject.html",
        subject=subject,
        site=site,
        enroller=enroller,
        trail=trail,
        coi=study_service.coi_of(subject),
        signatures=identity_service.signatures_for(session_, subject),
        seen=identity_service.content_hash(subject, "verified"),
        sites=study_service.clinical_sites(session_),
        study=study,
        batches=session_.scalars(
            select(Batch).where(Batch.subject_id == subject.id).order_by(Batch.id)
        ).all(),
        dose_orders=order_service.order_views(session_, subject),
        next_order=next_order,
        all_ordered=all_ordered,
        bank_for=bank_for,
        bank=bank.bank_check_for(session_, subject, study, *bank_for),
        cells=orders.dose_text,
        error=error,
        values=request.form if request.method == "POST" else {},
    ), status


def _subject_refused(refusal: Refusal, status: int, subject_id: int) -> Any:
    """The subject page again, with the refusal and what was typed."""
    return _subject_page(study_service.get_subject(db(), subject_id), error=refusal.message, status=status)


@bp.route(f"/subjects/<int(max={forms.LARGEST_ID}):subject_id>")
@security.roles_required(*SUBJECT_READERS)
def subject(subject_id: int) -> Any:
    return _subject_page(study_service.get_subject(db(), subject_id))


@bp.route(f"/subjects/<int(max={forms.LARGEST_ID}):subject_id>/correct", methods=["POST"])
@security.roles_required("coordinator")
@commit_point(on_refusal=_subject_refused)
def correct(subject_id: int) -> Any:
    subject_ = study_service.get_subject(db(), subject_id)
    field = forms.text("field", "Field to correct")
    if field not in study_service.CORRECTABLE_FIELDS:
        raise Refusal(f"{field!r} cannot be corrected here", entity_type="subject", entity_id=str(subject_id))
    label = field.replace("_", " ")
    if field in ("date_of_birth", "consent_date"):
        value: object = forms.iso_date("new_value", f"New {label}")
    elif field == "site_id":
        value = forms.whole_number("new_value", "New site")
    else:
        value = forms.text("new_value", f"New {label}", max_length=200)
    reason = forms.text("reason", "Reason for the correction")
    changes = study_service.correct_subject(db(), signed_in_user(), subject_, reason, **{field: value})
    flash("Corrected; the old value stays in the audit trail." if changes else "No change: same value.", "ok")
    return redirect(url_for("clinic.subject", subject_id=subject_id))


@bp.route(f"/subjects/<int(max={forms.LARGEST_ID}):subject_id>/verify", methods=["POST"])
@security.roles_required("coordinator", "investigator")
@commit_point(on_refusal=_subject_refused)
def verify(subject_id: int) -> Any:
    subject_ = study_service.get_subject(db(), subject_id)
    signer = identity_service.find_signer(db(), request.form.get("username", ""))
    study_service.verify_enrollment(
        db(), signer, request.form.get("password", ""), subject_, seen=request.form.get("seen")
    )
    flash("Enrollment verified by a second person.", "ok")
    return redirect(url_for("clinic.subject", subject_id=subject_id))


@bp.route(f"/subjects/<int(max={forms.LARGEST_ID}):subject_id>/batches", methods=["POST"])
@security.roles_required("coordinator", "supervisor")
@commit_point(on_refusal=_subject_refused)
def start_batch(subject_id: int) -> Any:
    """Collection starts the batch: the DIN is allocated and the current approved MBR version is fixed."""
    subject_ = study_service.get_subject(db(), subject_id)
    batch = batches.start_batch(db(), signed_in_user(), subject_, load_study(current_app.config["STUDY"]))
    flash(f"Batch {batch.din} started for {subject_.study_subject_id}.", "ok")
    return redirect(url_for("bench.batch", batch_id=batch.id))


# --- dose orders ----------------------------------------------------------------------------------------


def _decimal_number(name: str, label: str) -> float:
    raw = forms.text(name, label, max_length=30)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValidationRefused(f"{label} {raw!r} is not a number (use a point for decimals)") from exc
    if not math.isfinite(value):
        raise ValidationRefused(f"{label} {raw!r} is not a number")
    return value


def _level_value(level: float) -> str:
    return f"{level:.0f}"


def _order_form(subject: Subject, values: Any, *, error: str = "", status: int = 200) -> Any:
    """The prescription form, with the bank check at every dose level for the injection in the form."""
    session_ = db()
    study = load_study(current_app.config["STUDY"])
    upcoming = order_service.next_injection(session_, subject, study)
    if not values:
        values = {
            "injection_number": str(upcoming),
            "dose_cells": _level_value(order_service.default_level(session_, subject, study, upcoming)),
        }
    try:
        injection = int(values.get("injection_number", ""))
    except ValueError:
        injection = upcoming
    if not 1 <= injection <= study.schedule.injections:
        injection = upcoming
    schedule = order_service.planned_schedule(session_, subject, study)
    previous = orders.previous_order(injection, order_service.existing_orders(session_, subject))
    return render_template(
        "clinic/order.html",
        subject=subject,
        study=study,
        values=values,
        injection=injection,
        levels=[(_level_value(level), orders.dose_text(level)) for level in study.dosing.levels],
        checks={
            _level_value(level): check
            for level, check in bank.bank_checks_by_level(session_, subject, study, injection).items()
        },
        schedule=schedule,
        previous=previous,
        cells=orders.dose_text,
        error=error,
    ), status


def _order_refused(refusal: Refusal, status: int, subject_id: int) -> Any:
    """The prescription form again, with the refusal and what was typed."""
    subject_ = study_service.get_subject(db(), subject_id)
    return _order_form(subject_, request.form, error=refusal.message, status=status)


@bp.route(f"/subjects/<int(max={forms.LARGEST_ID}):subject_id>/orders/new", methods=["GET", "POST"])
@security.roles_required("investigator")
@commit_point(on_refusal=_order_refused)
def new_order(subject_id: int) -> Any:
    """The investigator prescribes an injection and signs it; 'Check the bank' only recomputes the check."""
    subject_ = study_service.get_subject(db(), subject_id)
    if request.method == "GET":
        return _order_form(subject_, {})
    if request.form.get("action") == "check":
        return _order_form(subject_, request.form)
    injection_number = forms.whole_number("injection_number", "Injection number")
    dose_cells = _decimal_number("dose_cells", "Dose level")
    body_weight_kg = _decimal_number("body_weight_kg", "Body weight (kg)")
    first_due: date | None = None
    if request.form.get("first_due", "").strip():
        first_due = forms.iso_date("first_due", "First injection due date")
    change_reason = forms.text("change_reason", "Reason for the change", required=False, max_length=500)
    order = order_service.place_order(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        subject_,
        load_study(current_app.config["STUDY"]),
        injection_number=injection_number,
        dose_cells=dose_cells,
        body_weight_kg=body_weight_kg,
        first_due=first_due,
        change_reason=change_reason or None,
    )
    flash(
        f"Injection {order.injection_number} (visit {order.protocol_visit}) ordered: "
        f"{orders.dose_text(order.dose_cells)} cells, due {order.due_date.isoformat()}; signed.",
        "ok",
    )
    return redirect(url_for("clinic.subject", subject_id=subject_id))


def _cancel_refused(refusal: Refusal, status: int, order_id: int) -> Any:
    """The ordered subject's page again, with the refusal."""
    subject_id = order_service.get_order(db(), order_id).subject_id
    return _subject_refused(refusal, status, subject_id=subject_id)


@bp.route(f"/orders/<int(max={forms.LARGEST_ID}):order_id>/cancel", methods=["POST"])
@security.roles_required("investigator", "coordinator")
@commit_point(on_refusal=_cancel_refused)
def cancel_order(order_id: int) -> Any:
    order = order_service.get_order(db(), order_id)
    reason = forms.text("reason", "Reason for cancelling", required=False)
    order_service.cancel_order(db(), signed_in_user(), order, reason)
    flash(f"Dose order #{order_id} (injection {order.injection_number}) cancelled.", "ok")
    return redirect(url_for("clinic.subject", subject_id=order.subject_id))
