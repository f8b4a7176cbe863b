"""The final product's labels: the syringe label and the shipper label, with every print recorded and
reconciled. The label content comes from the record; layout and barcodes from ``labels``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels import isbt128
from labels.data import LabelStock, SyringeLabel
from labels.numbers import format_cells
from labels.render import render_shipper_label, render_syringe_label
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import LabelPrint
from mfg.dosing.models import FinalProduct
from mfg.dosing.preparation import PRODUCT_LABEL_KINDS
from mfg.errors import ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process.models import Batch
from mfg.study.definition import StudyDefinition
from mfg.study.models import Site, Subject
from mfg.study.service import coi_of
from mfg.text import checked_text


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


def expiry_local(product: FinalProduct, study: StudyDefinition) -> datetime:
    return clock.to_local(product.expires_at)


def syringe_label(session: Session, product: FinalProduct, study: StudyDefinition) -> SyringeLabel:
    subject = session.scalar(
        select(Subject).join(Batch, Batch.subject_id == Subject.id).where(Batch.id == product.batch_id)
    )
    assert subject is not None
    site = facility_site(session, study)
    local = expiry_local(product, study).replace(second=0, microsecond=0)
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
        dose_text=f"{format_cells(product.prescribed_cells, 'label')} viable cells",
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
    reason = checked_text(
        reason,
        "Reason for the reprint",
        200,
        required=False,
        entity_type="final_product",
        entity_id=str(product.id),
    )
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
