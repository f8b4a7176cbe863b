"""Printing container labels: the PDF comes from labels/, and every print or reprint is recorded.

A bank cryovial also carries the ISBT 128 product code of the intermediate (cryopreserved) product, so it
prints on the cryovial stock (cryogenic, and tall enough for a second barcode); other containers print on
the container stock. One print is one stock: the printer holds one roll.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels import isbt128
from labels.data import ContainerLabel, LabelStock
from labels.layout import LabelError
from labels.render import render_container_labels
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container, LabelPrint
from mfg.errors import ValidationRefused
from mfg.identity.models import User
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.text import checked_text

CRYOVIAL = "cryovial"


def intermediate_product_code(study: StudyDefinition) -> str:
    """The bank's product code: one undivided intermediate product in as many vials as were filled (the
    vials are told apart by their container ids; divisions name the doses made from it)."""
    product = study.product
    return isbt128.build_product_code(product.intermediate_description_code, product.collection_type).code


def label_stock(study: StudyDefinition, kind: str) -> LabelStock:
    if kind == CRYOVIAL:
        return LabelStock("cryovial", *study.label_stock.cryovial)
    return LabelStock("container", *study.label_stock.container)


def container_label(session: Session, container: Container, study: StudyDefinition) -> ContainerLabel:
    subject = session.get(Subject, container.subject_id)
    assert subject is not None
    banked = container.kind == CRYOVIAL and container.din is not None
    return ContainerLabel(
        container_id=container.scan_id,
        din_code=container.din,
        subject_name=subject.name,
        date_of_birth=subject.date_of_birth,
        study_subject_id=subject.study_subject_id,
        contents=container.contents,
        label_date=container.created_at.date(),
        product_code=intermediate_product_code(study) if banked else None,
    )


def times_printed(session: Session, container: Container) -> int:
    return (
        session.scalar(
            select(func.coalesce(func.sum(LabelPrint.copies), 0)).where(
                LabelPrint.container_id == container.id, LabelPrint.label_kind == "container"
            )
        )
        or 0
    )


def print_container_labels(
    session: Session,
    user: User,
    containers: Sequence[Container],
    reason: str,
    study: StudyDefinition,
) -> bytes:
    """One label per container. A container already labelled is a reprint and needs a reason."""
    if not containers:
        raise ValidationRefused("no container to label", entity_type="label_print")
    if len({c.kind == CRYOVIAL for c in containers}) > 1:
        raise ValidationRefused(
            "cryovial labels print on the cryovial stock: print the cryovials and the other containers"
            " separately",
            entity_type="label_print",
        )
    reason = checked_text(reason, "Reason for the reprint", 200, required=False, entity_type="label_print")
    for container in containers:
        reprint = times_printed(session, container) > 0
        if reprint and not reason:
            raise ValidationRefused(
                f"{container.scan_id} was labelled before: a reprint needs a reason",
                entity_type="container",
                entity_id=str(container.id),
            )
        audit_service.create(
            session,
            user.username,
            LabelPrint(
                container_id=container.id,
                label_kind="container",
                copies=1,
                reprint=reprint,
                reason=reason or "first print",
                printed_by_id=user.id,
                printed_at=clock.now(),
            ),
        )
    stock = label_stock(study, containers[0].kind)
    try:
        return render_container_labels([container_label(session, c, study) for c in containers], stock)
    except LabelError as exc:  # text that cannot print whole is refused, naming the field
        raise ValidationRefused(f"the labels cannot be printed: {exc}", entity_type="label_print") from exc
