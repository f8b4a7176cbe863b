"""Dose preparation (MBR stage 6) around the process engine: the dose batch, its fill plan, the final
product with its ISBT 128 identity and expiry, the delivered-dose check, and the syringe labels.

Nothing here commits. The process engine calls in at the points where stage 6 differs from stages 1-5.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels import isbt128
from labels.data import LabelStock, SyringeLabel
from labels.render import render_shipper_label, render_syringe_label
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container, LabelPrint
from mfg.dosing.models import DoseOrder
from mfg.dosing.rules import FillPlan, plan_fill
from mfg.errors import NotFound, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process.models import Batch, Deviation, FieldValue, FinalProduct, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Site, Subject

DOSE_MBR = "AAMSC-DOSE"
PRODUCT_LABEL_KINDS = ("syringe", "shipper")


def format_dose(cells: float) -> str:
    """5e7 -> '5.0 × 10^7' (labels print the exponent as a superscript)."""
    exponent = int(math.floor(math.log10(cells)))
    return f"{cells / 10**exponent:.1f} × 10^{exponent}"


def division_for(number: int) -> str:
    """The n-th product of one collection: A0, B0, ... (ISBT 128 division: upper-case letter, then 0)."""
    if not 1 <= number <= 26:
        raise ValidationRefused(f"no ISBT 128 division left for product {number} of this collection")
    return chr(ord("A") + number - 1) + "0"


def start_preparation(session: Session, user: User, order: DoseOrder, study: StudyDefinition) -> Batch:
    """Open the dose batch: the order must be signed and current; the bank must hold the vials to thaw."""
    from mfg.dosing import service as order_service
    from mfg.process import service as process_service

    identity_service.require_can_act(user)
    if user.role not in (identity_rules.TECHNICIAN, identity_rules.SUPERVISOR):
        raise ValidationRefused(
            "a technician or supervisor starts dose preparation",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    order_service.require_preparable(session, order)
    subject = session.get(Subject, order.subject_id)
    assert subject is not None
    collection = session.scalar(
        select(Batch).where(
            Batch.subject_id == subject.id, Batch.division == "00", Batch.status == "cryobanked"
        )
    )
    if collection is None:
        raise ValidationRefused(
            f"{subject.study_subject_id} has no closed cryobank to prepare a dose from",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    check = order_service.bank_status(session, subject, study, order)
    if not check.vials_to_thaw:
        raise ValidationRefused(
            f"the cryobank cannot supply this dose: {check.sentence}",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    version = process_service.current_approved_mbr(session, DOSE_MBR)
    made = (
        session.scalar(
            select(func.count()).select_from(Batch).where(Batch.din == collection.din, Batch.division != "00")
        )
        or 0
    )
    batch = Batch(
        din=collection.din,
        division=division_for(made + 1),
        dose_order_id=order.id,
        subject_id=subject.id,
        mbr_version_id=version.id,
        status="open",
        started_at=clock.now(),
        started_by_id=user.id,
    )
    audit_service.create(session, user.username, batch)
    order_service.mark_in_preparation(session, user.username, order)
    return batch


def order_of(session: Session, batch: Batch) -> DoseOrder:
    order = session.get(DoseOrder, batch.dose_order_id) if batch.dose_order_id else None
    if order is None:
        raise NotFound("this batch prepares no dose order", entity_type="batch", entity_id=str(batch.id))
    return order


def _current(session: Session, batch: Batch, step_key: str) -> dict[str, FieldValue]:
    from mfg.process import service as process_service

    record = session.scalar(
        select(StepRecord)
        .where(StepRecord.batch_id == batch.id, StepRecord.step_key == step_key)
        .order_by(StepRecord.iteration.desc())
        .limit(1)
    )
    return process_service.current_values(session, record) if record is not None else {}


def fill_plan(session: Session, batch: Batch, study: StudyDefinition) -> FillPlan:
    """The plan from the dose order and the recorded replicate counts; DoseRefused names what to do."""
    counts_rows = _current(session, batch, "dose.count")
    counts = [
        row.number
        for key, row in sorted(counts_rows.items())
        if key.startswith("count_") and row.number is not None
    ]
    dosing = study.dosing
    return plan_fill(
        order_of(session, batch).dose_cells,
        counts,
        min_volume_ml=dosing.min_volume_ml,
        max_volume_ml=dosing.max_volume_ml,
        volume_step_ml=dosing.volume_step_ml,
        max_count_cv=dosing.max_count_cv,
        tolerance=dosing.tolerance,
    )


def thawed_vials(session: Session, batch: Batch) -> list[Container]:
    """The syringe's lineage: the cryovials scanned at thaw."""
    row = _current(session, batch, "dose.thaw").get("vials")
    codes = row.value.split() if row is not None else []
    return list(session.scalars(select(Container).where(Container.scan_id.in_(codes)))) if codes else []


def product_of(session: Session, batch: Batch) -> FinalProduct | None:
    return session.scalar(select(FinalProduct).where(FinalProduct.batch_id == batch.id))


def facility_site(session: Session, study: StudyDefinition) -> Site:
    site = session.scalar(
        select(Site).where(
            Site.kind == "manufacturing", Site.isbt_facility_id == study.facility.isbt_facility_id
        )
    )
    if site is None:
        raise ValidationRefused(
            f"no manufacturing site with ISBT 128 facility id {study.facility.isbt_facility_id}"
            " is registered: its name and address go on the label",
            entity_type="site",
        )
    return site


def create_final_product(
    session: Session,
    actor: str,
    batch: Batch,
    syringe: Container,
    formulated_at: datetime,
    plan: FillPlan,
    study: StudyDefinition,
) -> FinalProduct:
    order = order_of(session, batch)
    product_code = isbt128.build_product_code(
        study.product.product_description_code, study.product.collection_type, batch.division
    ).code
    product = FinalProduct(
        batch_id=batch.id,
        dose_order_id=order.id,
        syringe_id=syringe.id,
        din=batch.din,
        product_code=product_code,
        formulated_at=formulated_at,
        expires_at=formulated_at + timedelta(hours=study.product.stability_hours),
        prescribed_cells=order.dose_cells,
        expected_cells=float(plan.expected_dose_cells),
        final_volume_ml=float(plan.final_volume_ml),
        delivered_cells=None,
        status="awaiting_count",
    )
    return audit_service.create(session, actor, product)


def delivered_dose(session: Session, batch: Batch, post_fill_count: float) -> tuple[float, FinalProduct]:
    product = product_of(session, batch)
    if product is None:
        raise ValidationRefused(
            "the syringe has not been filled yet", entity_type="batch", entity_id=str(batch.id)
        )
    return post_fill_count * product.final_volume_ml, product


def settle_product(
    session: Session, actor: str, batch: Batch, delivered: float, study: StudyDefinition
) -> None:
    """After the final count: the syringe is blocked when the dose is off or a viability deviation is open."""
    product = product_of(session, batch)
    assert product is not None
    off = delivered / product.prescribed_cells - 1
    reasons = []
    if abs(off) > study.dosing.tolerance:
        reasons.append(
            f"delivered dose {delivered:.3g} cells is {off:+.1%} from the prescribed "
            f"{product.prescribed_cells:.3g} (tolerance ±{study.dosing.tolerance:.0%})"
        )
    low_viability = session.scalar(
        select(Deviation).where(Deviation.batch_id == batch.id, Deviation.field_key == "viability")
    )
    if low_viability is not None:
        reasons.append(f"viability below specification ({low_viability.number})")
    status = "blocked" if reasons else "awaiting_release"
    audit_service.update(
        session,
        actor,
        product,
        reason="final count recorded",
        action="final_count",
        delivered_cells=delivered,
        status=status,
        block_reason="; ".join(reasons) or None,
    )
    if reasons:
        syringe = session.get(Container, product.syringe_id)
        assert syringe is not None
        audit_service.update(
            session,
            actor,
            syringe,
            reason="blocked from release: " + "; ".join(reasons),
            action="block",
            status="quarantined",
        )


def labels_printed(session: Session, batch: Batch) -> int:
    product = product_of(session, batch)
    if product is None:
        return 0
    return (
        session.scalar(
            select(func.coalesce(func.sum(LabelPrint.copies), 0)).where(
                LabelPrint.container_id == product.syringe_id, LabelPrint.label_kind.in_(PRODUCT_LABEL_KINDS)
            )
        )
        or 0
    )


def finish(session: Session, actor: str, batch: Batch) -> None:
    from mfg.dosing import service as order_service

    order_service.mark_prepared(session, actor, order_of(session, batch))


# --- labels ---------------------------------------------------------------------------------------------


def expiry_local(product: FinalProduct, study: StudyDefinition) -> datetime:
    return clock.to_local(product.expires_at)


def syringe_label(session: Session, product: FinalProduct, study: StudyDefinition) -> SyringeLabel:
    subject = session.scalar(
        select(Subject).join(Batch, Batch.subject_id == Subject.id).where(Batch.id == product.batch_id)
    )
    assert subject is not None
    site = facility_site(session, study)
    local = expiry_local(product, study).replace(second=0, microsecond=0)
    from mfg.study.service import coi_of

    return SyringeLabel(
        product_name=study.product_name,
        din_code=product.din,
        product_code=product.product_code,
        expiry_code=isbt128.build_expiration(local.replace(tzinfo=None)).code,
        expiry_text=f"{local:%Y-%m-%d %H:%M} {local.tzname()}",
        coi_code=coi_of(subject).code,
        subject_name=subject.name,
        date_of_birth=subject.date_of_birth,
        study_subject_id=subject.study_subject_id,
        dose_text=f"{format_dose(product.prescribed_cells)} viable cells",
        volume_text=f"{product.final_volume_ml:.1f} mL",
        diluent=study.dosing.diluent,
        storage=study.product.storage,
        route=study.dosing.route,
        autologous_statement=study.labels.autologous,
        investigational_statement=study.labels.investigational,
        infectious_statement=study.labels.not_evaluated,
        facility_name=site.name,
        facility_address=site.address,
    )


def print_product_labels(
    session: Session,
    user: User,
    product: FinalProduct,
    study: StudyDefinition,
    reason: str,
    *,
    kind: str = "syringe",
    copies: int = 1,
) -> bytes:
    """The syringe or the shipper label as a PDF. Every print is recorded; a reprint needs a reason."""
    identity_service.require_can_act(user)
    if kind not in PRODUCT_LABEL_KINDS:
        raise ValidationRefused(
            f"no {kind!r} label: choose syringe or shipper",
            entity_type="final_product",
            entity_id=str(product.id),
        )
    if product.status == "awaiting_count":
        raise ValidationRefused(
            "count the retained sample before printing the product labels",
            entity_type="final_product",
            entity_id=str(product.id),
        )
    if not 1 <= copies <= 5:
        raise ValidationRefused(
            "print 1 to 5 labels at a time", entity_type="final_product", entity_id=str(product.id)
        )
    earlier = (
        session.scalar(
            select(func.count())
            .select_from(LabelPrint)
            .where(LabelPrint.container_id == product.syringe_id, LabelPrint.label_kind == kind)
        )
        or 0
    )
    reason = reason.strip()
    if earlier and not reason:
        raise ValidationRefused(
            f"the {kind} label was printed before: a reprint needs a reason",
            entity_type="final_product",
            entity_id=str(product.id),
        )
    label = syringe_label(session, product, study)
    audit_service.create(
        session,
        user.username,
        LabelPrint(
            container_id=product.syringe_id,
            label_kind=kind,
            copies=copies,
            reprint=bool(earlier),
            reason=reason or "first print",
            printed_by_id=user.id,
            printed_at=clock.now(),
        ),
    )
    if kind == "syringe":
        return render_syringe_label(label, LabelStock("syringe", *study.label_stock.syringe), copies=copies)
    return render_shipper_label(label, LabelStock("shipper", *study.label_stock.shipper))
