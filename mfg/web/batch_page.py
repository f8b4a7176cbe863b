"""The batch page, read in a fixed number of queries however many steps it holds: the current step big, then
the record so far (values with their corrections, signatures, deviations, containers), the growth curve, the
cryobank card and, for a dose, the order, the vials to thaw, the fill plan and the product.
"""

from __future__ import annotations

from typing import Any

from flask import flash
from sqlalchemy import select
from sqlalchemy.orm import Session

from labels.data import parse_din
from labels.numbers import format_cells
from mfg.custody.models import Container
from mfg.dosing import bank, preparation, product_labels
from mfg.errors import Refusal
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process import batches, expansion, growth, rules
from mfg.process.mbr import MasterBatchRecord, StepDef
from mfg.process.models import Batch, Deviation, StepRecord, Workstation, current_of, signed_values
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.web import charts


def context(
    session: Session,
    batch: Batch,
    study: StudyDefinition,
    workstation: Workstation | None,
    chosen_step: str | None = None,
) -> dict[str, Any]:
    mbr = batches.batch_mbr(session, batch)
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    records = batches.step_records(session, batch)
    progress = rules.progress(records)
    available = rules.available_steps(mbr, progress) if batch.status == "open" else []
    users = {u.id: u for u in session.scalars(select(User))}
    values = batches.values_by_record(session, batch)
    growth_rows = []
    try:
        growth_rows = expansion.growth_table(growth.passages(session, batch, values))
    except ValueError as exc:
        flash(f"Growth curve not drawn: {exc}", "error")
    holder = None
    if workstation is not None and workstation.current_batch_id not in (None, batch.id):
        holder = session.get(Batch, workstation.current_batch_id)
    return {
        "dose": _dose(session, batch, study) if batch.dose_order_id is not None else {},
        "batch": batch,
        "mbr": mbr,
        "subject": subject,
        "coi": study_service.coi_of(subject),
        "din": parse_din(batch.din),
        "progress": progress,
        "available": available,
        "current": _current_step(available, chosen_step),
        "records": _record_views(session, mbr, records, values, users),
        "deviations": session.scalars(
            select(Deviation).where(Deviation.batch_id == batch.id).order_by(Deviation.id)
        ).all(),
        "containers": session.scalars(
            select(Container).where(Container.din == batch.din).order_by(Container.id)
        ).all(),
        "growth_rows": growth_rows,
        "growth_svg": charts.growth_curve_svg(growth_rows),
        "bank": bank.bank_capacity(session, batch, study),
        "workstation": workstation,
        "workstation_holder": holder,
        "users": users,
        "format_cells": format_cells,
    }


def _current_step(available: list[StepDef], chosen: str | None) -> StepDef | None:
    """The step the page opens on: the one asked for if it may be recorded now, else the first due (an
    optional step, such as a pre-dilution, only when nothing else is)."""
    picked = next((s for s in available if s.key == chosen), None) if chosen else None
    due = next((s for s in available if s.repeat_min > 0), None)
    return picked or due or (available[0] if available else None)


def _record_views(
    session: Session,
    mbr: MasterBatchRecord,
    records: list[StepRecord],
    values: dict[int, list[Any]],
    users: dict[int, User],
) -> list[dict[str, Any]]:
    """Each step record with its values (history and current) and signatures, loaded in bulk."""
    signed = {str(r.id): signed_values(values.get(r.id, [])) for r in records}
    signatures = identity_service.signatures_for_many(session, records, signed)
    return [
        {
            "record": record,
            # what the verifier's form sends back: the version of the values this page shows
            "seen": identity_service.content_hash(record, "verified", signed[str(record.id)])
            if record.status == "awaiting_verification"
            else "",
            "step": mbr.step(record.step_key),
            "history": values.get(record.id, []),
            "current": current_of(values.get(record.id, [])),
            "signatures": signatures.get(str(record.id), []),
            "performer": users.get(record.performed_by_id),
        }
        for record in records
    ]


def _dose(session: Session, batch: Batch, study: StudyDefinition) -> dict[str, Any]:
    """A dose batch shows its order, the vials to thaw, the fill plan with its arithmetic, and the product."""
    order = preparation.order_of(session, batch)
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    shown: dict[str, Any] = {"order": order, "product": preparation.product_of(session, batch)}
    try:
        shown["bank"] = bank.bank_status(session, subject, study, order)
    except Refusal as exc:
        shown["bank_error"] = exc.message
    try:
        shown["plan"] = preparation.fill_plan(session, batch, study)
    except ValueError as exc:
        shown["plan_error"] = str(exc)
    if shown["product"] is not None:
        shown["expiry"] = product_labels.expiry_local(shown["product"], study)
        shown["labels_printed"] = preparation.labels_printed(session, batch)
    return shown
