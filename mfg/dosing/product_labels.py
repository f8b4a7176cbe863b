"""The final product's labels: the syringe label and the shipper label, with every print recorded and
reconciled. The label content comes from the record; layout and barcodes from ``labels``.

The syringe label prints what the final count measured (dose, volume in the syringe, concentration), not
the prescription, and the two patient identifiers the study chose; ``label_patient_identifiers`` gives the
same two to the bedside check. The shipper label is for the outside of a package in transit: the chain of
identity and the study subject id, no name or date of birth unless the study allows them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels import isbt128
from labels.data import LabelStock, PatientIdentifier, ShipperLabel, SyringeLabel
from labels.layout import LabelError
from labels.render import render_shipper_label, render_syringe_label
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import LabelPrint
from mfg.dosing.models import DoseOrder, FinalProduct
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


def label_patient_identifiers(
    subject: Subject, study: StudyDefinition
) -> tuple[PatientIdentifier, PatientIdentifier]:
    """The two patient identifiers the syringe label prints (the study's choice, in its order), with their
    values: the bedside check matches exactly these."""
    values = {
        "name": subject.name,
        "date_of_birth": subject.date_of_birth.isoformat(),
        "medical_record_number": subject.medical_record_number,
        "study_subject_id": subject.study_subject_id,
    }
    first, second = (PatientIdentifier(kind, values[kind]) for kind in study.labels.patient_identifiers)
    return first, second


def _subject(session: Session, product: FinalProduct) -> Subject:
    subject = session.scalar(
        select(Subject).join(Batch, Batch.subject_id == Subject.id).where(Batch.id == product.batch_id)
    )
    assert subject is not None
    return subject


def _expiry(product: FinalProduct, study: StudyDefinition) -> tuple[str, str]:
    """The expiry barcode's data and the printed expiry, to the minute with the facility's zone."""
    local = expiry_local(product, study).replace(second=0, microsecond=0)
    code = isbt128.build_expiration(local.replace(tzinfo=None)).code
    return code, f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def measured_dose(product: FinalProduct) -> tuple[float, float]:
    """(delivered cells, viable cells per mL) from the final count. Products settled before the
    concentration was stored have it from the dose and the volume it was computed from."""
    if product.delivered_cells is None:
        raise ValidationRefused(
            "count the retained sample before printing the product labels",
            entity_type="final_product",
            entity_id=str(product.id),
        )
    concentration = product.concentration_per_ml
    if concentration is None:
        concentration = product.delivered_cells / product.final_volume_ml
    return product.delivered_cells, concentration


def syringe_label(session: Session, product: FinalProduct, study: StudyDefinition) -> SyringeLabel:
    subject = _subject(session, product)
    order = session.get(DoseOrder, product.dose_order_id)
    assert order is not None
    site = facility_site(session, study)
    expiry_code, expiry_text = _expiry(product, study)
    delivered, concentration = measured_dose(product)
    return SyringeLabel(
        product_name=study.product_name,
        din_code=product.din,
        product_code=product.product_code,
        expiry_code=expiry_code,
        expiry_text=expiry_text,
        coi_code=coi_of(subject).code,
        patient_identifiers=label_patient_identifiers(subject, study),
        study_subject_id=subject.study_subject_id,
        dose_cells=delivered,
        volume_ml=product.final_volume_ml,
        concentration_per_ml=concentration,
        injection_number=order.injection_number,
        injections=study.schedule.injections,
        protocol_visit=order.protocol_visit,
        protocol_number=study.protocol_number,
        ind_number=study.ind_number,
        handling=study.labels.handling,
        diluent=study.dosing.diluent,
        storage=study.product.storage,
        route=study.dosing.route,
        autologous_statement=study.labels.autologous,
        investigational_statement=study.labels.investigational,
        infectious_statement=study.labels.not_evaluated,
        facility_name=site.name,
        facility_address=site.address,
    )


def shipper_label(session: Session, product: FinalProduct, study: StudyDefinition) -> ShipperLabel:
    """From the manufacturing facility to the subject's clinical site, shipped today (facility's day)."""
    subject = _subject(session, product)
    origin = facility_site(session, study)
    destination = session.get(Site, subject.site_id)
    assert destination is not None
    expiry_code, expiry_text = _expiry(product, study)
    identify = study.shipper.show_name_and_date_of_birth
    return ShipperLabel(
        product_name=study.product_name,
        din_code=product.din,
        product_code=product.product_code,
        expiry_code=expiry_code,
        expiry_text=expiry_text,
        coi_code=coi_of(subject).code,
        study_subject_id=subject.study_subject_id,
        ship_from_name=origin.name,
        ship_from_address=origin.address,
        ship_to_name=destination.name,
        ship_to_address=destination.address,
        contact_phone=study.shipper.contact_phone,
        shipping_temperature=study.shipper.temperature,
        ship_date=clock.today(),
        handling=study.shipper.handling,
        autologous_statement=study.labels.autologous,
        investigational_statement=study.labels.investigational,
        infectious_statement=study.labels.not_evaluated,
        subject_name=subject.name if identify else None,
        date_of_birth=subject.date_of_birth if identify else None,
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
    try:
        label = (syringe_label if kind == "syringe" else shipper_label)(session, product, study)
    except LabelError as exc:
        raise _unprintable(kind, product, exc) from exc
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
    try:
        if isinstance(label, SyringeLabel):
            stock = LabelStock("syringe", *study.label_stock.syringe)
            return render_syringe_label(label, stock, copies=copies)
        return render_shipper_label(label, LabelStock("shipper", *study.label_stock.shipper))
    except LabelError as exc:
        raise _unprintable(kind, product, exc) from exc


def _unprintable(kind: str, product: FinalProduct, exc: LabelError) -> ValidationRefused:
    """A label that cannot print whole (text too long, a word too wide) is refused, naming the field."""
    return ValidationRefused(
        f"the {kind} label cannot be printed: {exc}", entity_type="final_product", entity_id=str(product.id)
    )
