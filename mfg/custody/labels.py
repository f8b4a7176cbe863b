"""Printing container labels: the PDF comes from labels/, and every print or reprint is recorded."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels.data import CONTAINER_STOCK, ContainerLabel, LabelStock
from labels.render import render_container_labels
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container, LabelPrint
from mfg.errors import ValidationRefused
from mfg.identity.models import User
from mfg.study.models import Subject
from mfg.text import checked_text


def container_label(session: Session, container: Container) -> ContainerLabel:
    subject = session.get(Subject, container.subject_id)
    assert subject is not None
    return ContainerLabel(
        container_id=container.scan_id,
        din_code=container.din,
        subject_name=subject.name,
        date_of_birth=subject.date_of_birth,
        study_subject_id=subject.study_subject_id,
        contents=container.contents,
        label_date=container.created_at.date(),
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
    stock: LabelStock = CONTAINER_STOCK,
) -> bytes:
    """One label per container. A container already labelled is a reprint and needs a reason."""
    if not containers:
        raise ValidationRefused("no container to label", entity_type="label_print")
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
    return render_container_labels([container_label(session, c) for c in containers], stock)
