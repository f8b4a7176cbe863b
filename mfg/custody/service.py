"""Containers and DINs. Nothing here commits."""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from stdnum.iso7064 import mod_37_2

from labels import isbt128
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import CONTAINER_KINDS, Container, ContainerParent, DinSequence
from mfg.db import lock_audit_chain
from mfg.errors import NotFound, Refusal, ValidationRefused
from mfg.study.models import Subject

MAX_DIN_SEQUENCE = 999_999
_SCAN_ALPHABET = string.ascii_uppercase + string.digits


class ChainOfIdentityRefused(Refusal):
    """An action would mix two subjects' material. Recorded as an attempted error."""


def allocate_din(session: Session, actor: str, facility_id: str, year: int, flags: str = "00") -> isbt128.Din:
    """Issue the next DIN of a facility and year. Safe under concurrency: the chain lock is taken first."""
    lock_audit_chain(session)
    yy = year % 100
    counter = session.get(DinSequence, (facility_id, yy), populate_existing=True)
    if counter is None:
        counter = audit_service.create(
            session,
            actor,
            DinSequence(facility_id=facility_id, year=yy, last_number=1),
            reason="first DIN of the year",
        )
        number = 1
    else:
        number = counter.last_number + 1
        if number > MAX_DIN_SEQUENCE:
            raise ValidationRefused(
                f"DIN sequence of facility {facility_id} for {year} is exhausted", entity_type="din_sequence"
            )
        audit_service.update(
            session, actor, counter, reason="DIN allocated", action="allocate", last_number=number
        )
    return isbt128.build_din(facility_id, yy, number, flags)


def new_scan_id() -> str:
    body = "C" + "".join(secrets.choice(_SCAN_ALPHABET) for _ in range(9))
    return body + mod_37_2.calc_check_digit(body)


def scan_id_problem(scanned: str) -> str:
    if (
        len(scanned) != 11
        or not scanned.startswith("C")
        or any(c not in _SCAN_ALPHABET for c in scanned[:10])
    ):
        return f"{scanned!r} is not a container id (C + 9 letters or digits + check character)"
    if not mod_37_2.is_valid(scanned):
        return f"{scanned!r} has a wrong check character: mis-scan or typing error"
    return ""


def create_container(
    session: Session,
    actor: str,
    *,
    kind: str,
    subject: Subject,
    contents: str,
    location: str,
    holder_id: int | None = None,
    din: str | None = None,
    parents: Sequence[Container] = (),
    status: str = "in_use",
) -> Container:
    if kind not in CONTAINER_KINDS:
        raise ValidationRefused(f"unknown container kind {kind!r}", entity_type="container")
    for parent in parents:
        if parent.subject_id != subject.id:
            raise ChainOfIdentityRefused(
                f"container {parent.scan_id} belongs to another subject: it cannot be a parent of "
                f"{subject.study_subject_id}'s material",
                entity_type="container",
                entity_id=str(parent.id),
            )
    scan_id = new_scan_id()
    while session.scalar(select(Container.id).where(Container.scan_id == scan_id)) is not None:
        scan_id = new_scan_id()
    container = Container(
        scan_id=scan_id,
        kind=kind,
        subject_id=subject.id,
        din=din,
        status=status,
        location=location,
        holder_id=holder_id,
        contents=contents,
        created_at=clock.now(),
    )
    audit_service.create(session, actor, container)
    for parent in parents:
        audit_service.create(session, actor, ContainerParent(child_id=container.id, parent_id=parent.id))
    return container


def find_container(session: Session, scanned: str) -> Container:
    problem = scan_id_problem(scanned)
    if problem:
        raise ValidationRefused(problem, entity_type="container")
    container = session.scalar(select(Container).where(Container.scan_id == scanned))
    if container is None:
        raise NotFound(f"no container {scanned} is registered", entity_type="container")
    return container


def require_same_subject(container: Container, subject: Subject) -> None:
    """The chain-of-identity guard: refuse material of any other subject."""
    if container.subject_id != subject.id:
        raise ChainOfIdentityRefused(
            f"STOP: container {container.scan_id} belongs to another subject, not {subject.study_subject_id}",
            entity_type="container",
            entity_id=str(container.id),
        )
