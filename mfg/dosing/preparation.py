"""Dose preparation (MBR stage 6): the dose batch, its fill plan, the final product with its ISBT 128 identity
and expiry, and the delivered-dose check. It plugs into the step engine as the ``dose_preparation``
capability (see ``mfg.process.extensions``): the engine calls ``DosePreparation`` and knows nothing of doses.

Steps are found by their role in the dose MBR (thaw, count, fill, final_count), not by step keys.
Nothing here commits.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels import isbt128
from labels.numbers import format_cells
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container, LabelPrint
from mfg.dosing import bank
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder, FinalProduct
from mfg.dosing.rules import FillPlan, drawn_volume_range, plan_fill
from mfg.errors import NotFound, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process.batches import batch_mbr, current_values, latest_record, role_values
from mfg.process.extensions import Capability, StepContext
from mfg.process.mbr import FieldDef
from mfg.process.models import Batch, Deviation, FieldValue, StepRecord
from mfg.process.rules import ParsedValue
from mfg.process.versions import current_approved_mbr
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject

PRODUCT_LABEL_KINDS = ("syringe", "shipper")
# The volumes of the fill plan a fill step's number fields are checked against (``plan = "..."``).
PLANNED_VOLUMES = ("suspension_ml", "diluent_ml")


def division_for(number: int) -> str:
    """The n-th product of one collection: A0, B0, ... (ISBT 128 division: upper-case letter, then 0)."""
    if not 1 <= number <= 26:
        raise ValidationRefused(f"no ISBT 128 division left for product {number} of this collection")
    return chr(ord("A") + number - 1) + "0"


def start_preparation(session: Session, user: User, order: DoseOrder, study: StudyDefinition) -> Batch:
    """Open the dose batch: the order must be signed and current; the bank must hold the vials to thaw."""
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
    collection = closed_bank(session, subject)
    if collection is None:
        raise ValidationRefused(
            f"{subject.study_subject_id} has no closed cryobank to prepare a dose from",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    require_verified_bank(session, collection, order)
    check = bank.bank_status(session, subject, study, order)
    if not check.vials_to_thaw:
        raise ValidationRefused(
            f"the cryobank cannot supply this dose: {check.sentence}",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    version = current_approved_mbr(session, study.processes.dose_mbr)
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


def closed_bank(session: Session, subject: Subject) -> Batch | None:
    """The subject's collection batch once its cryobank is closed: what doses are prepared from."""
    return session.scalar(
        select(Batch).where(
            Batch.subject_id == subject.id, Batch.division == "00", Batch.status == "cryobanked"
        )
    )


def require_verified_bank(session: Session, collection: Batch, order: DoseOrder) -> None:
    """A corrected value of the bank's record waits for a second person (its verification was withdrawn):
    no dose is made from that bank until it is verified, because the bank check reads those values."""
    waiting = session.scalars(
        select(StepRecord).where(
            StepRecord.batch_id == collection.id, StepRecord.status == "awaiting_verification"
        )
    ).all()
    if waiting:
        mbr = batch_mbr(session, collection)
        titles = ", ".join(sorted({mbr.step(record.step_key).title for record in waiting}))
        raise ValidationRefused(
            f"the cryobank's record has corrected values waiting for second-person verification ({titles}): "
            "no dose is prepared from it until they are verified",
            entity_type="dose_order",
            entity_id=str(order.id),
        )


def order_of(session: Session, batch: Batch) -> DoseOrder:
    order = session.get(DoseOrder, batch.dose_order_id) if batch.dose_order_id else None
    if order is None:
        raise NotFound("this batch prepares no dose order", entity_type="batch", entity_id=str(batch.id))
    return order


def latest_counts(session: Session, batch: Batch) -> list[float]:
    """The replicate viable counts the fill is planned from: those of the latest count, which is the last
    pre-dilution's when there was one."""
    mbr = batch_mbr(session, batch)
    steps = [step.key for step in (mbr.step_for_role("count"), mbr.step_for_role("recount")) if step]
    record = session.scalar(
        select(StepRecord)
        .where(StepRecord.batch_id == batch.id, StepRecord.step_key.in_(steps))
        .order_by(StepRecord.id.desc())
        .limit(1)
    )
    rows = current_values(session, record) if record is not None else {}
    return [
        row.number for key, row in sorted(rows.items()) if key.startswith("count_") and row.number is not None
    ]


def fill_plan(session: Session, batch: Batch, study: StudyDefinition) -> FillPlan:
    """The plan from the dose order and the latest replicate counts; DoseRefused names what to do."""
    dosing = study.dosing
    return plan_fill(
        order_of(session, batch).dose_cells,
        latest_counts(session, batch),
        min_volume_ml=dosing.min_volume_ml,
        max_volume_ml=dosing.max_volume_ml,
        volume_step_ml=dosing.volume_step_ml,
        max_count_cv=dosing.max_count_cv,
        tolerance=dosing.planning_tolerance,
        min_aliquot_ml=dosing.min_aliquot_ml,
        overage_ml=dosing.overage_ml,
    )


def thawed_vials(session: Session, batch: Batch) -> list[Container]:
    """The syringe's lineage: the cryovials scanned at thaw."""
    row = role_values(session, batch, "thaw").get("vials")
    codes = row.value.split() if row is not None else []
    return list(session.scalars(select(Container).where(Container.scan_id.in_(codes)))) if codes else []


def require_planned_vials(
    session: Session, batch: Batch, study: StudyDefinition, values: Mapping[str, ParsedValue]
) -> None:
    """Another vial, or fewer, would thaw cells the bank check kept for a later dose, or too few for this
    one: refused, naming the difference."""
    order = order_of(session, batch)
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    collection = closed_bank(session, subject)
    if collection is not None:
        require_verified_bank(session, collection, order)
    planned = set(bank.bank_status(session, subject, study, order).vials_to_thaw)
    scanned = set(values["vials"].text.split()) if "vials" in values else set()
    if scanned == planned:
        return
    problems = []
    if missing := sorted(planned - scanned):
        problems.append(f"not scanned: {', '.join(missing)}")
    if extra := sorted(scanned - planned):
        problems.append(f"not chosen for this dose: {', '.join(extra)}")
    raise ValidationRefused(
        f"thaw exactly the cryovials the bank check chose ({', '.join(sorted(planned))}); "
        + "; ".join(problems),
        entity_type="batch",
        entity_id=str(batch.id),
    )


def product_of(session: Session, batch: Batch) -> FinalProduct | None:
    return session.scalar(select(FinalProduct).where(FinalProduct.batch_id == batch.id))


def create_final_product(
    session: Session,
    actor: str,
    batch: Batch,
    syringe: Container,
    formulated_at: datetime,
    plan: FillPlan,
    study: StudyDefinition,
    syringe_ml: float,
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
        final_volume_ml=syringe_ml,
        delivered_cells=None,
        status="awaiting_count",
    )
    return audit_service.create(session, actor, product)


def syringe_volume(fill: Mapping[str, ParsedValue], fields: tuple[FieldDef, ...], overage_ml: float) -> float:
    """The volume in the syringe, measured: the volumes drawn into the formulation less the overage taken
    out of it (retained sample, QC aliquots); never the plan's."""
    drawn = sum((fill[f.key].number or 0.0) for f in fields if f.plan in PLANNED_VOLUMES and f.key in fill)
    return round(drawn - overage_ml, 6)


def final_concentration(typed: Mapping[str, ParsedValue], max_cv: float) -> float:
    """The mean of the retained sample's replicate counts (post_fill_count, post_fill_count_2, ...). Version 1
    of the MBR had one count; where there are several they must agree, or they are counted again."""
    counts = [v.number for k, v in sorted(typed.items()) if k.startswith("post_fill_count") and v.number]
    if not counts:
        raise ValidationRefused("count the retained sample", entity_type="batch")
    mean = sum(counts) / len(counts)
    if len(counts) > 1:
        cv = statistics.stdev(counts) / mean
        if cv > max_cv:
            raise ValidationRefused(
                f"the retained sample's counts disagree, CV {cv:.1%} above the limit {max_cv:.1%}: "
                "count again",
                entity_type="batch",
            )
    return mean


def delivered_dose(session: Session, batch: Batch, concentration: float) -> tuple[float, FinalProduct]:
    """The measured concentration times the measured volume in the syringe."""
    product = product_of(session, batch)
    if product is None:
        raise ValidationRefused(
            "the syringe has not been filled yet", entity_type="batch", entity_id=str(batch.id)
        )
    return concentration * product.final_volume_ml, product


def settle_product(
    session: Session,
    actor: str,
    batch: Batch,
    delivered: float,
    concentration: float,
    study: StudyDefinition,
    *,
    corrected: str = "",
) -> None:
    """After the final count (or a correction of what it rests on): the syringe is blocked when the dose is
    off, a viability deviation is open, or its labels were printed with another dose. Once blocked it stays
    blocked: a correction never releases it (QA dispositions)."""
    product = product_of(session, batch)
    assert product is not None
    off = delivered / product.prescribed_cells - 1
    reasons = []
    if abs(off) > study.dosing.tolerance:
        reasons.append(
            f"delivered dose {format_cells(delivered)} cells is {off:+.1%} from the prescribed "
            f"{format_cells(product.prescribed_cells, 'dose')} (tolerance ±{study.dosing.tolerance:.0%})"
        )
    low_viability = session.scalar(
        select(Deviation).where(Deviation.batch_id == batch.id, Deviation.field_key == "viability")
    )
    if low_viability is not None:
        reasons.append(f"viability below specification ({low_viability.number})")
    if corrected and labels_printed(session, batch) and delivered != product.delivered_cells:
        reasons.append(f"{corrected} after the labels were printed with the earlier dose: reprint them")
    if product.status == "blocked" and product.block_reason:
        reasons = [product.block_reason, *(r for r in reasons if r not in product.block_reason)]
    status = "blocked" if reasons else "awaiting_release"
    audit_service.update(
        session,
        actor,
        product,
        reason=corrected or "final count recorded",
        action="final_count",
        delivered_cells=delivered,
        concentration_per_ml=concentration,
        status=status,
        block_reason="; ".join(reasons) or None,
    )
    syringe = session.get(Container, product.syringe_id)
    assert syringe is not None
    if reasons and syringe.status != "quarantined":
        audit_service.update(
            session,
            actor,
            syringe,
            reason="blocked from release: " + "; ".join(reasons),
            action="block",
            status="quarantined",
        )


def _as_parsed(rows: Mapping[str, FieldValue]) -> dict[str, ParsedValue]:
    """A record's current values as the capability reads them at recording: corrections are replayed through
    the same functions."""
    return {key: ParsedValue(row.value, row.number) for key, row in rows.items()}


def resettle_after_correction(ctx: StepContext, record: StepRecord, field: FieldDef) -> None:
    """A corrected drawn volume or final count changes the dose in the syringe: the product's volume, its
    measured dose (a recomputed value beside the old one, with the reason) and its status follow."""
    session, batch, study = ctx.session, ctx.batch, ctx.study
    product = product_of(session, batch)
    if product is None:
        return
    corrected = f"{field.label} corrected"
    if ctx.step.role == "fill" and field.plan in PLANNED_VOLUMES:
        volume = syringe_volume(
            _as_parsed(current_values(session, record)), ctx.step.fields, study.dosing.overage_ml
        )
        audit_service.update(session, ctx.user.username, product, reason=corrected, final_volume_ml=volume)
    final_step = batch_mbr(session, batch).step_for_role("final_count")
    final = latest_record(session, batch, final_step.key) if final_step is not None else None
    if final is None or product.delivered_cells is None:
        return
    rows = current_values(session, final)
    concentration = final_concentration(_as_parsed(rows), study.dosing.max_count_cv)
    delivered = concentration * product.final_volume_ml
    computed = next((f for f in final_step.fields if f.computes == "delivered_dose"), None)  # type: ignore[union-attr]
    old = rows.get(computed.key) if computed is not None else None
    if computed is not None and old is not None and old.number != delivered:
        audit_service.create(
            session,
            ctx.user.username,
            FieldValue(
                step_record_id=final.id,
                field_key=computed.key,
                value=f"{delivered:.4g}",
                number=delivered,
                unit=computed.unit,
                in_spec=abs(delivered / product.prescribed_cells - 1) <= study.dosing.tolerance,
                entered_by_id=ctx.user.id,
                entered_at=clock.now(),
                supersedes_id=old.id,
                correction_reason=f"recomputed: {corrected}",
            ),
            reason=f"recomputed: {corrected}",
        )
    settle_product(session, ctx.user.username, batch, delivered, concentration, study, corrected=corrected)


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
    order_service.mark_prepared(session, actor, order_of(session, batch))


class DosePreparation(Capability):
    """What the step engine asks of dose preparation, and nothing more."""

    name = "dose_preparation"

    def computed_value(
        self, ctx: StepContext, field: FieldDef, typed: Mapping[str, ParsedValue]
    ) -> tuple[FieldDef, ParsedValue]:
        if field.computes == "delivered_dose":
            concentration = final_concentration(typed, ctx.study.dosing.max_count_cv)
            delivered, product = delivered_dose(ctx.session, ctx.batch, concentration)
            tolerance = ctx.study.dosing.tolerance
            checked = replace(
                field,
                low=product.prescribed_cells * (1 - tolerance),
                high=product.prescribed_cells * (1 + tolerance),
            )
            return checked, ParsedValue(f"{delivered:.4g}", delivered)
        if field.computes == "label_reconciliation":
            printed = labels_printed(ctx.session, ctx.batch)
            counted = [
                typed[key].number or 0.0 if key in typed else 0.0
                for key in ("labels_applied", "labels_destroyed")
            ]
            if any(count != int(count) or count < 0 for count in counted):
                raise ValidationRefused(
                    "labels are counted in whole numbers, 0 or more",
                    entity_type="batch",
                    entity_id=str(ctx.batch.id),
                )
            applied, destroyed = (int(count) for count in counted)
            unaccounted = printed - applied - destroyed
            if unaccounted == 0:
                text = f"balanced: printed {printed} = applied {applied} + destroyed {destroyed}"
            else:
                text = f"UNBALANCED: printed {printed}, applied {applied} + destroyed {destroyed}"
            return field, ParsedValue(text, judged_in_spec=unaccounted == 0)
        return super().computed_value(ctx, field, typed)

    def planned_range(self, ctx: StepContext, field: FieldDef) -> tuple[float, float]:
        """A drawn volume passes when the dose it puts in the syringe is within the planning tolerance."""
        try:
            plan = fill_plan(ctx.session, ctx.batch, ctx.study)
        except ValueError as exc:
            raise ValidationRefused(
                f"no fill plan: {exc}", entity_type="batch", entity_id=str(ctx.batch.id)
            ) from exc
        if field.plan not in PLANNED_VOLUMES:
            raise ValidationRefused(
                f"{field.label}: the fill plan has no {field.plan!r} (it plans {', '.join(PLANNED_VOLUMES)})",
                entity_type="batch",
                entity_id=str(ctx.batch.id),
            )
        dosing = ctx.study.dosing
        # The dose a drawn volume puts in the syringe is what is checked, not its distance from the plan.
        return drawn_volume_range(
            plan,
            field.plan,
            tolerance=dosing.planning_tolerance,
            min_volume_ml=dosing.min_volume_ml,
            max_volume_ml=dosing.max_volume_ml,
        )

    def check_step(self, ctx: StepContext, values: Mapping[str, ParsedValue]) -> None:
        """At thaw, the cryovials scanned are exactly the ones the bank check chose for this dose."""
        if ctx.step.role == "thaw":
            require_planned_vials(ctx.session, ctx.batch, ctx.study, values)

    def lineage(self, ctx: StepContext) -> list[Container]:
        """The syringe comes from the cryovials scanned at thaw."""
        return thawed_vials(ctx.session, ctx.batch)

    def after_step(
        self,
        ctx: StepContext,
        record: StepRecord,
        values: Mapping[str, ParsedValue],
        created: list[Container],
    ) -> None:
        """Filling makes the final product (expiry from formulation); the final count settles it."""
        syringes = [c for c in created if c.kind == "syringe"]
        if syringes:
            plan = fill_plan(ctx.session, ctx.batch, ctx.study)
            volume = syringe_volume(values, ctx.step.fields, ctx.study.dosing.overage_ml)
            create_final_product(
                ctx.session,
                ctx.user.username,
                ctx.batch,
                syringes[0],
                ctx.performed_at,
                plan,
                ctx.study,
                volume,
            )
        for field in ctx.step.fields:
            delivered = values.get(field.key) if field.computes == "delivered_dose" else None
            if delivered is not None and delivered.number is not None:
                concentration = final_concentration(values, ctx.study.dosing.max_count_cv)
                settle_product(
                    ctx.session, ctx.user.username, ctx.batch, delivered.number, concentration, ctx.study
                )

    def after_correction(self, ctx: StepContext, record: StepRecord, field: FieldDef) -> None:
        resettle_after_correction(ctx, record, field)

    def after_close(self, ctx: StepContext) -> None:
        finish(ctx.session, ctx.user.username, ctx.batch)
