"""Dose orders: the investigator prescribes each injection (visit, level, weight, reason for a change) and
signs it; dose preparation asks here whether an order may be prepared and whether the bank can supply it.

Every function writes its audit events; none commits. A refused order leaves nothing behind once the caller
rolls back, as every refusal does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.db import lock_audit_chain
from mfg.dosing import orders
from mfg.dosing.models import DoseOrder
from mfg.errors import NotFound, PermissionRefused, SignatureRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.text import FREE_TEXT_MAX, checked_text

#: the signature an order carries: the investigator approves the prescription
ORDER_MEANING = "approved"
CANCELLERS = (identity_rules.INVESTIGATOR, identity_rules.COORDINATOR)


def _refuse_order(message: str, order: DoseOrder) -> ValidationRefused:
    return ValidationRefused(message, entity_type="dose_order", entity_id=str(order.id))


def _refuse_for_subject(
    message: str, subject: Subject, refusal: type[ValidationRefused | PermissionRefused | SignatureRefused]
) -> ValidationRefused | PermissionRefused | SignatureRefused:
    # A refused prescription has no order row: the attempt is recorded against the subject.
    return refusal(message, entity_type="subject", entity_id=str(subject.id))


# --- reading --------------------------------------------------------------------------------------------


def get_order(session: Session, order_id: int) -> DoseOrder:
    order = session.get(DoseOrder, order_id)
    if order is None:
        raise NotFound(f"no dose order #{order_id}", entity_type="dose_order", entity_id=str(order_id))
    return order


def orders_for(session: Session, subject: Subject) -> list[DoseOrder]:
    """All the subject's orders, cancelled ones included, by injection and then in the order placed."""
    return list(
        session.scalars(
            select(DoseOrder)
            .where(DoseOrder.subject_id == subject.id)
            .order_by(DoseOrder.injection_number, DoseOrder.id)
        )
    )


def existing_orders(session: Session, subject: Subject) -> list[orders.ExistingOrder]:
    """The subject's orders as the pure rules see them."""
    return [
        orders.ExistingOrder(
            id=o.id, injection_number=o.injection_number, dose_cells=o.dose_cells, status=o.status
        )
        for o in orders_for(session, subject)
    ]


def _standing_order(session: Session, subject: Subject, injection_number: int) -> DoseOrder | None:
    return next(
        (
            o
            for o in orders_for(session, subject)
            if o.injection_number == injection_number and o.status in orders.ACTIVE_STATUSES
        ),
        None,
    )


def next_injection(session: Session, subject: Subject, study: StudyDefinition) -> int:
    """The injection a new order is most likely for: the one after the last standing order."""
    standing = [
        o.injection_number for o in orders_for(session, subject) if o.status in orders.ACTIVE_STATUSES
    ]
    return min(max(standing, default=0) + 1, study.schedule.injections)


def default_level(session: Session, subject: Subject, study: StudyDefinition, injection_number: int) -> float:
    """The level a new order starts from: the study's first dose, then whatever was prescribed last."""
    if injection_number <= 1:
        return study.dosing.first_dose
    previous = orders.previous_order(injection_number, existing_orders(session, subject))
    return previous.dose_cells if previous else study.dosing.first_dose


def planned_schedule(session: Session, subject: Subject, study: StudyDefinition) -> list[orders.PlannedVisit]:
    """The visits as set by the standing injection 1 order's due date; empty before it is ordered."""
    first = _standing_order(session, subject, 1)
    return orders.visit_schedule(first.due_date, study) if first else []


# --- placing and cancelling -----------------------------------------------------------------------------


def place_order(
    session: Session,
    investigator: User,
    password: str,
    subject: Subject,
    study: StudyDefinition,
    *,
    injection_number: int,
    dose_cells: float,
    body_weight_kg: float,
    first_due: date | None,
    change_reason: str | None,
) -> DoseOrder:
    """Prescribe one injection and sign it 'approved' in the same transaction: no unsigned order is stored.

    Injection 1 sets the schedule from ``first_due``; later injections take their due date and window from
    it. A level other than the previous standing order's needs ``change_reason``.
    """
    identity_service.require_can_act(investigator)
    if investigator.role != identity_rules.INVESTIGATOR:
        raise _refuse_for_subject(
            f"only an investigator prescribes a dose, not {investigator.username} "
            f"({identity_rules.ROLE_TITLES.get(investigator.role, investigator.role)})",
            subject,
            PermissionRefused,
        )
    if subject.study_code != study.code:
        raise _refuse_for_subject(
            f"{subject.study_subject_id} is in {subject.study_code}, not {study.code}",
            subject,
            ValidationRefused,
        )
    if subject.status != "enrolled":
        raise _refuse_for_subject(
            f"{subject.study_subject_id} is {subject.status}: no dose can be ordered",
            subject,
            ValidationRefused,
        )
    if not password:
        raise _refuse_for_subject(
            "enter your password to sign the dose order: an unsigned order is not stored",
            subject,
            SignatureRefused,
        )
    # Take the writers' lock before reading the standing orders, so that two prescriptions of the same
    # visit cannot both pass the duplicate check.
    lock_audit_chain(session)
    existing = existing_orders(session, subject)
    reason = (
        checked_text(
            change_reason,
            "Reason for the change of level",
            FREE_TEXT_MAX,
            required=False,
            multiline=True,
            entity_type="subject",
            entity_id=str(subject.id),
        )
        or None
    )
    problem = orders.order_problem(
        study,
        injection_number=injection_number,
        dose_cells=dose_cells,
        body_weight_kg=body_weight_kg,
        change_reason=reason,
        existing=existing,
    )
    if problem:
        raise _refuse_for_subject(problem, subject, ValidationRefused)
    level = orders.study_level(dose_cells, study)
    assert level is not None  # order_problem checked it
    visit = _visit_for(session, subject, study, injection_number, first_due)
    order = DoseOrder(
        subject_id=subject.id,
        injection_number=injection_number,
        protocol_visit=visit.protocol_visit,
        due_date=visit.due_date,
        window_start=visit.window_start,
        window_end=visit.window_end,
        dose_cells=level,
        body_weight_kg=float(body_weight_kg),
        change_reason=reason,
        status="ordered",
        ordered_by_id=investigator.id,
        ordered_at=clock.now(),
        cancel_reason=None,
    )
    audit_service.create(
        session,
        investigator.username,
        order,
        detail={"subject": subject.study_subject_id, "dose": orders.dose_text(level)},
    )
    identity_service.sign(
        session,
        investigator,
        password,
        ORDER_MEANING,
        order,
        comment=f"dose order: injection {injection_number}, {orders.dose_text(level)} cells",
    )
    return order


def _visit_for(
    session: Session, subject: Subject, study: StudyDefinition, injection_number: int, first_due: date | None
) -> orders.PlannedVisit:
    if injection_number == 1:
        if first_due is None:
            raise _refuse_for_subject(
                "give the first injection's due date: it sets the schedule of every later visit",
                subject,
                ValidationRefused,
            )
        if first_due < subject.consent_date:
            raise _refuse_for_subject(
                f"the first injection cannot be due ({first_due.isoformat()}) before consent "
                f"({subject.consent_date.isoformat()})",
                subject,
                ValidationRefused,
            )
        return orders.visit_schedule(first_due, study)[0]
    first = _standing_order(session, subject, 1)
    if first is None:
        raise _refuse_for_subject(
            f"injection 1 has no standing order: its due date sets the schedule, order it before injection "
            f"{injection_number}",
            subject,
            ValidationRefused,
        )
    if first_due is not None and first_due != first.due_date:
        raise _refuse_for_subject(
            f"the schedule is set by injection 1's due date ({first.due_date.isoformat()}): leave the first "
            f"injection date empty for injection {injection_number}",
            subject,
            ValidationRefused,
        )
    return orders.visit_schedule(first.due_date, study)[injection_number - 1]


def cancel_order(session: Session, user: User, order: DoseOrder, reason: str) -> DoseOrder:
    """Cancel with a reason; the order stays on record (and in the trail) with its signature."""
    identity_service.require_can_act(user)
    if user.role not in CANCELLERS:
        raise PermissionRefused(
            f"an investigator or a coordinator cancels a dose order, not {user.username} ({user.role})",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    reason = (reason or "").strip()
    if not reason:
        raise _refuse_order(f"give the reason for cancelling dose order #{order.id}", order)
    reason = checked_text(
        reason,
        "Reason for cancelling",
        FREE_TEXT_MAX,
        multiline=True,
        entity_type="dose_order",
        entity_id=str(order.id),
    )
    if order.status == "cancelled":
        raise _refuse_order(
            f"dose order #{order.id} is already cancelled ({order.cancel_reason or 'no reason recorded'})",
            order,
        )
    if order.status != "ordered":
        raise _refuse_order(
            f"{_label(order)} is {order.status.replace('_', ' ')}: its dose exists and is accounted for by "
            "its batch record; it cannot be cancelled",
            order,
        )
    audit_service.update(
        session,
        user.username,
        order,
        reason=reason,
        action="cancel",
        status="cancelled",
        cancel_reason=reason,
    )
    return order


# --- what dose preparation calls ------------------------------------------------------------------------


def _label(order: DoseOrder) -> str:
    return f"dose order #{order.id} (injection {order.injection_number})"


def require_preparable(session: Session, order: DoseOrder) -> None:
    """Refuse to prepare an order that is cancelled, already being or been prepared, or whose investigator's
    signature is missing or no longer matches the prescription."""
    if order.status == "cancelled":
        raise _refuse_order(
            f"{_label(order)} is cancelled: {order.cancel_reason or 'no reason recorded'}", order
        )
    if order.status == "in_preparation":
        raise _refuse_order(f"{_label(order)} is already in preparation", order)
    if order.status == "prepared":
        raise _refuse_order(f"{_label(order)} has already been prepared", order)
    subject = session.get(Subject, order.subject_id)
    if subject is None or subject.status != "enrolled":
        status = subject.status if subject else "missing"
        raise _refuse_order(f"{_label(order)}: the subject is {status}, no dose is prepared", order)
    approvals = [
        view
        for view in identity_service.signatures_for(session, order)
        if view.signature.meaning == ORDER_MEANING and view.signature.signer_id == order.ordered_by_id
    ]
    if not approvals:
        raise _refuse_order(f"{_label(order)} has no investigator's signature: it cannot be prepared", order)
    if not any(view.valid for view in approvals):
        raise _refuse_order(
            f"the investigator's signature on {_label(order)} is no longer valid ({approvals[-1].why}): "
            "the investigator must order the dose again",
            order,
        )


def mark_in_preparation(session: Session, actor: str, order: DoseOrder) -> None:
    require_preparable(session, order)
    audit_service.update(
        session,
        actor,
        order,
        reason="dose preparation started",
        action="start_preparation",
        status="in_preparation",
    )


def mark_prepared(session: Session, actor: str, order: DoseOrder) -> None:
    if order.status != "in_preparation":
        raise _refuse_order(
            f"{_label(order)} is {order.status.replace('_', ' ')}, not in preparation: "
            "it cannot be marked prepared",
            order,
        )
    audit_service.update(
        session, actor, order, reason="dose preparation finished", action="prepared", status="prepared"
    )


# --- the subject page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderView:
    order: DoseOrder
    ordered_by: User
    signatures: list[identity_service.SignatureView]

    @property
    def signature_valid(self) -> bool:
        return any(v.valid and v.signature.meaning == ORDER_MEANING for v in self.signatures)


def order_views(session: Session, subject: Subject) -> list[OrderView]:
    """The subject's orders with who ordered and their signatures: a fixed number of queries."""
    placed = orders_for(session, subject)
    signatures = identity_service.signatures_for_many(session, placed)
    prescribers = {
        u.id: u for u in session.scalars(select(User).where(User.id.in_({o.ordered_by_id for o in placed})))
    }
    return [OrderView(o, prescribers[o.ordered_by_id], signatures.get(str(o.id), [])) for o in placed]


def next_to_prepare(session: Session, subject: Subject) -> DoseOrder | None:
    """The earliest order waiting for preparation: the one the bank status on the subject page is about."""
    return next((o for o in orders_for(session, subject) if o.status == "ordered"), None)
