"""Bench station: the guided batch record at the biosafety cabinet, scan-first and keyboard-only."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select

from mfg.custody import labels as container_labels
from mfg.custody.models import Container
from mfg.dosing import preparation, product_labels
from mfg.dosing.models import DoseOrder
from mfg.errors import Refusal, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.materials.models import Equipment, EquipmentUse, MaterialUse, ReagentLot
from mfg.process import batches, corrections, deviations, expansion, growth, steps, workstations
from mfg.process.models import (
    Batch,
    Deviation,
    FieldValue,
    StepRecord,
    Workstation,
)
from mfg.study.definition import StudyDefinition, load_study
from mfg.study.models import Subject
from mfg.web import batch_page, charts, forms, security
from mfg.web.transaction import (
    back_to_referrer,
    commit_point,
    db,
    get_record,
    redirect_to,
    same_site,
    signed_in_user,
)

bp = Blueprint("bench", __name__, url_prefix="/bench")

BENCH_ROLES = ("technician", "supervisor", "qc_analyst", "coordinator", "qa")
ID = f"<int(max={forms.LARGEST_ID}):%s>"


def _study() -> StudyDefinition:
    return load_study(current_app.config["STUDY"])


def _workstation() -> Workstation | None:
    workstation_id = session.get("workstation_id")
    return db().get(Workstation, workstation_id) if isinstance(workstation_id, int) else None


def _url_batch(batch_id: int) -> Batch:
    return get_record(Batch, batch_id, "batch")


def _required_workstation() -> Workstation:
    workstation = _workstation()
    if workstation is None:
        raise Refusal("scan the cabinet this terminal works at first", entity_type="workstation")
    return workstation


def _batch_refused(refusal: Refusal, status: int, batch_id: int, **_view_args: Any) -> Any:
    """The batch page again, with the refusal in red and what was typed still in the form."""
    return _batch_page(batches.get_batch(db(), batch_id), error=refusal.message, status=status)


def _step_refused(refusal: Refusal, status: int, batch_id: int, step_key: str) -> Any:
    """The same step open again, with what was typed, after a refused record."""
    page = _batch_page(batches.get_batch(db(), batch_id), error=refusal.message, status=status, step=step_key)
    return page


def _record_refused(refusal: Refusal, status: int, **view_args: Any) -> Any:
    """A refusal about a step record or a value: its batch's page (the record named in the URL exists)."""
    if "record_id" in view_args:
        record = get_record(StepRecord, view_args["record_id"], "step record")
    else:
        value = get_record(FieldValue, view_args["value_id"], "recorded value")
        record = get_record(StepRecord, value.step_record_id, "step record")
    return _batch_refused(refusal, status, record.batch_id)


def _deviation_refused(refusal: Refusal, status: int, deviation_id: int) -> Any:
    return _deviation_page(_get_deviation(deviation_id), error=refusal.message, status=status)


@bp.route("/")
@security.roles_required(*BENCH_ROLES)
def index() -> Any:
    rows = (
        db()
        .execute(
            select(Batch, Subject)
            .join(Subject, Subject.id == Batch.subject_id)
            .order_by(Batch.started_at.desc())
        )
        .all()
    )
    cabinets = db().scalars(select(Workstation).order_by(Workstation.code)).all()

    orders = (
        db()
        .execute(
            select(DoseOrder, Subject)
            .join(Subject, Subject.id == DoseOrder.subject_id)
            .where(DoseOrder.status == "ordered")
            .order_by(DoseOrder.due_date)
        )
        .all()
    )
    return render_template(
        "bench/index.html", rows=rows, workstation=_workstation(), workstations=cabinets, orders=orders
    )


@bp.route("/workstation", methods=["POST"])
@security.roles_required(*BENCH_ROLES)
@commit_point(on_refusal=back_to_referrer("bench.index"))
def choose_workstation() -> Any:
    workstation = workstations.find_workstation(db(), request.form.get("code", ""))
    session["workstation_id"] = workstation.id
    flash(f"This terminal works at {workstation.code} ({workstation.name}).", "ok")
    return redirect(same_site(request.form.get("next"), "bench.index"))


@bp.route("/workstation/clear", methods=["POST"])
@security.roles_required("technician", "supervisor")
@commit_point(on_refusal=back_to_referrer("bench.index"))
def clear_line() -> Any:
    workstation = _required_workstation()
    workstations.clear_line(db(), signed_in_user(), request.form.get("password", ""), workstation)
    flash(f"Line clearance of {workstation.code} signed: the cabinet is free.", "ok")
    return redirect(same_site(request.form.get("next"), "bench.index"))


def _batch_page(batch: Batch, *, error: str = "", status: int = 200, step: str | None = None) -> Any:
    context = batch_page.context(db(), batch, _study(), _workstation(), step)
    values = request.form if request.method == "POST" else {}
    return render_template("bench/batch.html", error=error, values=values, **context), status


@bp.route(f"/batches/{ID % 'batch_id'}")
@security.roles_required(*BENCH_ROLES)
def batch(batch_id: int) -> Any:
    return _batch_page(batches.get_batch(db(), batch_id), step=request.args.get("step"))


@bp.route(f"/batches/{ID % 'batch_id'}/open", methods=["POST"])
@security.roles_required("technician", "supervisor")
@commit_point(on_refusal=_batch_refused)
def open_batch(batch_id: int) -> Any:
    batch_ = _url_batch(batch_id)
    workstation = _required_workstation()
    workstations.open_at_workstation(db(), signed_in_user(), workstation, batch_)
    flash(f"Batch {batch_.din} is open at {workstation.code}.", "ok")
    return redirect(url_for("bench.batch", batch_id=batch_id))


@bp.route(f"/batches/{ID % 'batch_id'}/steps/<step_key>", methods=["POST"])
@security.roles_required("technician", "supervisor", "qc_analyst", "coordinator")
@commit_point(on_refusal=_step_refused)
def record_step(batch_id: int, step_key: str) -> Any:
    batch_ = _url_batch(batch_id)
    values = {key[2:]: value for key, value in request.form.items() if key.startswith("f.")}
    record = steps.record_step(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        batch_,
        step_key,
        steps.StepSubmission(values=values, performed_at=request.form.get("performed_at", "")),
        _study(),
        _workstation(),
    )
    step = batches.batch_mbr(db(), batch_).step(step_key)
    message = f"'{step.title}' recorded and signed."
    if record.status == "awaiting_verification":
        message += " It is critical: a second person verifies it now."
    if record.late:
        message += " Marked as a LATE entry."
    flash(message, "ok")
    return redirect(url_for("bench.batch", batch_id=batch_id))


@bp.route(f"/records/{ID % 'record_id'}/verify", methods=["POST"])
@security.roles_required("technician", "supervisor", "qc_analyst", "coordinator")
@commit_point(on_refusal=_record_refused)
def verify(record_id: int) -> Any:
    record = get_record(StepRecord, record_id, "step record")
    batch_id = record.batch_id
    verifier = identity_service.find_signer(db(), request.form.get("username", ""))
    steps.verify_step(db(), verifier, request.form.get("password", ""), record, seen=request.form.get("seen"))
    flash("Verified by a second person.", "ok")
    return redirect(url_for("bench.batch", batch_id=batch_id))


@bp.route(f"/values/{ID % 'value_id'}/correct", methods=["POST"])
@security.roles_required("technician", "supervisor", "qc_analyst", "coordinator")
@commit_point(on_refusal=_record_refused)
def correct(value_id: int) -> Any:
    value = get_record(FieldValue, value_id, "recorded value")
    batch_id = get_record(StepRecord, value.step_record_id, "step record").batch_id
    corrections.correct_value(
        db(),
        signed_in_user(),
        value,
        request.form.get("new_value", ""),
        request.form.get("reason", ""),
        _study(),
    )
    flash("Corrected. The old value stays visible; the step's earlier signatures now show as invalid.", "ok")
    return redirect(url_for("bench.batch", batch_id=batch_id))


@bp.route(f"/batches/{ID % 'batch_id'}/growth.svg")
@security.roles_required(*BENCH_ROLES)
def growth_svg(batch_id: int) -> Any:
    batch_ = _url_batch(batch_id)
    try:
        rows = expansion.growth_table(growth.passages(db(), batch_))
    except ValueError as exc:  # recorded times or counts no growth curve can be drawn from
        raise ValidationRefused(
            f"growth curve not drawn: {exc}", entity_type="batch", entity_id=str(batch_id)
        ) from exc
    return Response(charts.growth_curve_svg(rows), mimetype="image/svg+xml")


@bp.route(f"/batches/{ID % 'batch_id'}/labels", methods=["POST"])
@security.roles_required("technician", "supervisor", "coordinator")
@commit_point(on_refusal=_batch_refused)
def print_labels(batch_id: int) -> Any:
    """Container labels as a PDF for the label printer; each print is recorded (reprints with a reason).
    Cryovials print on their own stock: ``stock=cryovial`` prints the stored ones, else the open others."""
    batch_ = _url_batch(batch_id)
    wanted = request.form.getlist("container")
    query = select(Container).where(Container.din == batch_.din).order_by(Container.id)
    if wanted:
        query = query.where(Container.scan_id.in_(wanted))
    elif request.form.get("stock") == container_labels.CRYOVIAL:
        query = query.where(Container.kind == container_labels.CRYOVIAL, Container.status == "stored")
    else:
        query = query.where(
            Container.kind != container_labels.CRYOVIAL, Container.status.in_(("in_use", "stored"))
        )
    pdf = container_labels.print_container_labels(
        db(), signed_in_user(), db().scalars(query).all(), request.form.get("reason", ""), _study()
    )
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="labels-batch-{batch_id}.pdf"'},
    )


@bp.route(f"/orders/{ID % 'order_id'}/prepare", methods=["POST"])
@security.roles_required("technician", "supervisor")
@commit_point(on_refusal=redirect_to("bench.index"))
def prepare(order_id: int) -> Any:
    """Start dose preparation (MBR stage 6) for a signed dose order."""
    order = get_record(DoseOrder, order_id, "dose order")
    batch_ = preparation.start_preparation(db(), signed_in_user(), order, _study())
    flash(f"Dose preparation {batch_.division} started.", "ok")
    return redirect(url_for("bench.batch", batch_id=batch_.id))


@bp.route(f"/batches/{ID % 'batch_id'}/product-labels", methods=["POST"])
@security.roles_required("technician", "supervisor")
@commit_point(on_refusal=_batch_refused)
def print_product_labels(batch_id: int) -> Any:
    """The syringe or shipper label as a PDF; every print recorded, a reprint with its reason."""
    batch_ = _url_batch(batch_id)
    product = preparation.product_of(db(), batch_)
    if product is None:
        raise Refusal("the syringe has not been filled yet", entity_type="batch", entity_id=str(batch_id))
    pdf = product_labels.print_product_labels(
        db(),
        signed_in_user(),
        product,
        _study(),
        request.form.get("reason", ""),
        kind=request.form.get("kind", "syringe"),
    )
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="product-label-{batch_id}.pdf"'},
    )


# --- deviations -----------------------------------------------------------------------------------------


def _deviation_page(deviation: Deviation, *, error: str = "", status: int = 200) -> Any:
    session_ = db()
    batch_ = batches.get_batch(session_, deviation.batch_id)
    subject = session_.get(Subject, deviation.subject_id)
    record = session_.get(StepRecord, deviation.step_record_id)
    step = batches.batch_mbr(session_, batch_).step(record.step_key) if record else None
    users = {u.id: u for u in session_.scalars(select(User))}
    return render_template(
        "bench/deviation.html",
        deviation=deviation,
        batch=batch_,
        subject=subject,
        step=step,
        users=users,
        signatures=identity_service.signatures_for(session_, deviation),
        error=error,
        values=request.form if request.method == "POST" else {},
    ), status


@bp.route(f"/deviations/{ID % 'deviation_id'}")
@security.roles_required(*BENCH_ROLES)
def deviation(deviation_id: int) -> Any:
    return _deviation_page(_get_deviation(deviation_id))


def _get_deviation(deviation_id: int) -> Deviation:
    return get_record(Deviation, deviation_id, "deviation")


@bp.route(f"/deviations/{ID % 'deviation_id'}/assess", methods=["POST"])
@security.roles_required("supervisor")
@commit_point(on_refusal=_deviation_refused)
def assess(deviation_id: int) -> Any:
    deviation_ = _get_deviation(deviation_id)
    deviations.assess_deviation(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        deviation_,
        request.form.get("assessment", ""),
    )
    flash(f"{deviation_.number} assessed.", "ok")
    return redirect(url_for("bench.deviation", deviation_id=deviation_id))


@bp.route(f"/deviations/{ID % 'deviation_id'}/close", methods=["POST"])
@security.roles_required("qa")
@commit_point(on_refusal=_deviation_refused)
def close(deviation_id: int) -> Any:
    deviation_ = _get_deviation(deviation_id)
    deviations.close_deviation(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        deviation_,
        request.form.get("investigation", ""),
        request.form.get("root_cause", ""),
    )
    flash(f"{deviation_.number} closed by QA.", "ok")
    return redirect(url_for("bench.deviation", deviation_id=deviation_id))


# --- look-back ------------------------------------------------------------------------------------------


@bp.route("/lookback")
@security.roles_required("qa", "supervisor")
def lookback() -> Any:
    """Recall look-back: every batch step that used a lot or a piece of equipment."""
    code = request.args.get("code", "").strip()
    uses: list[Any] = []
    item: Any = None
    if code:
        session_ = db()
        item = session_.scalar(select(ReagentLot).where(ReagentLot.scan_code == code))
        if item is not None:
            uses = session_.execute(
                select(MaterialUse, StepRecord, Batch)
                .join(StepRecord, StepRecord.id == MaterialUse.step_record_id)
                .join(Batch, Batch.id == StepRecord.batch_id)
                .where(MaterialUse.reagent_lot_id == item.id)
            ).all()
        else:
            item = session_.scalar(select(Equipment).where(Equipment.asset_tag == code.upper()))
            if item is not None:
                uses = session_.execute(
                    select(EquipmentUse, StepRecord, Batch)
                    .join(StepRecord, StepRecord.id == EquipmentUse.step_record_id)
                    .join(Batch, Batch.id == StepRecord.batch_id)
                    .where(EquipmentUse.equipment_id == item.id)
                ).all()
    return render_template("bench/lookback.html", code=code, item=item, uses=uses)
