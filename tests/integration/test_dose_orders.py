"""Dose orders on a real database: the signed prescription, every refusal leaving the record intact,
cancellation, what dose preparation is allowed to start, and the cryobank check against a real batch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.custody import service as custody_service
from mfg.custody.models import Container
from mfg.dosing import bank
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder
from mfg.errors import PermissionRefused, Refusal, SignatureRefused, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import Signature
from mfg.process import batches, steps, workstations
from mfg.process.models import Batch
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import PERFORMER, STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World

FIRST_DUE = date(2027, 1, 31)
WRONG = "not-the-password-1"


def place(
    session: Session,
    world: World,
    subject: Subject,
    study: StudyDefinition,
    injection_number: int = 1,
    dose_cells: float = 5e7,
    *,
    who: str = "investigator",
    password: str = PASSWORD,
    body_weight_kg: float = 71.5,
    first_due: date | None = None,
    change_reason: str | None = None,
) -> DoseOrder:
    return order_service.place_order(
        session,
        world.users[who],
        password,
        subject,
        study,
        injection_number=injection_number,
        dose_cells=dose_cells,
        body_weight_kg=body_weight_kg,
        first_due=first_due if first_due is not None or injection_number != 1 else FIRST_DUE,
        change_reason=change_reason,
    )


def counts(session: Session) -> tuple[int, int]:
    orders = session.scalar(select(func.count()).select_from(DoseOrder)) or 0
    signatures = session.scalar(select(func.count()).select_from(Signature)) or 0
    return orders, signatures


def refused(
    session: Session, action: Callable[[], Any], match: str, kind: type[Refusal] = ValidationRefused
) -> Refusal:
    """The action is refused with this message; after the rollback every refusal gets, nothing changed."""
    before = counts(session)
    with pytest.raises(kind, match=match) as caught:
        action()
    session.rollback()
    assert counts(session) == before
    return caught.value


def assert_audit_ok(session: Session) -> None:
    result = audit_service.verify(session)
    assert result.ok, result.problem


# --- placing a signed order -----------------------------------------------------------------------------


def test_the_investigator_places_a_signed_order(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    investigator = world.users["investigator"]
    order = place(session, world, subject, study)
    session.commit()

    stored = session.scalars(select(DoseOrder)).one()
    assert stored is order
    assert (stored.subject_id, stored.injection_number, stored.protocol_visit) == (subject.id, 1, 4)
    assert (stored.due_date, stored.window_start, stored.window_end) == (
        date(2027, 1, 31),
        date(2027, 1, 17),
        date(2027, 2, 14),
    )
    assert (stored.dose_cells, stored.body_weight_kg, stored.status) == (5e7, 71.5, "ordered")
    assert stored.ordered_by_id == investigator.id and stored.change_reason is None
    [view] = identity_service.signatures_for(session, stored)
    assert view.valid
    assert (view.signature.meaning, view.signature.signer_id) == ("approved", investigator.id)
    assert view.signature.printed_name == investigator.full_name
    created = session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "dose_order", AuditEvent.entity_id == str(order.id)
        )
    ).all()
    assert [(e.action, e.actor) for e in created] == [("create", investigator.username)]
    order_service.require_preparable(session, stored)  # a signed, standing order may be prepared
    assert_audit_ok(session)


def test_later_injections_follow_injection_1_and_a_change_carries_its_reason(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    place(session, world, subject, study)
    second = place(session, world, subject, study, 2, 1e8, change_reason="well tolerated; escalate")
    third = place(session, world, subject, study, 3, 1e8)  # same as the previous: no reason needed
    session.commit()
    # 31 Jan + 3 months = 30 Apr (clamped), + 6 months = 31 Jul (counted from injection 1, no drift)
    assert (second.protocol_visit, second.due_date, second.window_end) == (
        5,
        date(2027, 4, 30),
        date(2027, 5, 14),
    )
    assert (third.protocol_visit, third.due_date) == (6, date(2027, 7, 31))
    assert second.change_reason == "well tolerated; escalate" and third.change_reason is None
    assert [o.injection_number for o in order_service.orders_for(session, subject)] == [1, 2, 3]
    assert [v.valid for o in (second, third) for v in identity_service.signatures_for(session, o)] == [
        True,
        True,
    ]
    assert [v.due_date for v in order_service.planned_schedule(session, subject, study)] == [
        date(2027, 1, 31),
        date(2027, 4, 30),
        date(2027, 7, 31),
        date(2027, 10, 31),
    ]
    assert_audit_ok(session)


# --- refusals leave everything as it was ----------------------------------------------------------------


def test_a_dose_level_the_study_does_not_have_is_refused(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    place(session, world, subject, study)
    session.commit()
    refusal = refused(
        session,
        lambda: place(session, world, subject, study, 2, 3e7, change_reason="reduce"),
        "3 × 10⁷ cells is not a dose level of NCT03268603: choose 1 × 10⁷, 5 × 10⁷ or 1 × 10⁸ cells",
    )
    assert (refusal.entity_type, refusal.entity_id) == ("subject", str(subject.id))
    refused(
        session,
        lambda: place(session, world, subject, study, 2, 1e8, first_due=None, body_weight_kg=7.15),
        "body weight 7.15 kg is not plausible",
    )
    assert_audit_ok(session)


def test_injection_1_must_be_the_first_dose_and_have_a_due_date(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    refused(
        session, lambda: place(session, world, subject, study, 1, 1e8), "always 5 × 10⁷ cells, not 1 × 10⁸"
    )
    refused(
        session,
        lambda: order_service.place_order(
            session,
            world.users["investigator"],
            PASSWORD,
            subject,
            study,
            injection_number=1,
            dose_cells=5e7,
            body_weight_kg=70,
            first_due=None,
            change_reason=None,
        ),
        "give the first injection's due date",
    )
    refused(
        session,
        lambda: place(session, world, subject, study, first_due=date(2026, 9, 1)),
        r"cannot be due \(2026-09-01\) before consent \(2026-10-01\)",
    )


def test_a_second_order_for_the_same_visit_is_refused(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    first = place(session, world, subject, study)
    session.commit()
    refused(
        session,
        lambda: place(session, world, subject, study, 1, 5e7, first_due=date(2027, 2, 1)),
        rf"injection 1 already has an order \(#{first.id}, ordered, 5 × 10⁷ cells\): cancel it first",
    )
    assert_audit_ok(session)


def test_visits_are_ordered_in_sequence(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    refused(
        session,
        lambda: place(session, world, subject, study, 2),
        "comes after injection 1, which has no active",
    )
    place(session, world, subject, study)
    session.commit()
    refused(session, lambda: place(session, world, subject, study, 3), "comes after injection 2")
    refused(session, lambda: place(session, world, subject, study, 5), "injection 5 is not in the schedule")
    refused(
        session,
        lambda: place(session, world, subject, study, 2, first_due=date(2027, 5, 1)),
        r"the schedule is set by injection 1's due date \(2027-01-31\)",
    )


def test_a_change_of_dose_without_a_reason_is_refused(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    place(session, world, subject, study)
    session.commit()
    for reason in (None, "", "   "):
        refused(
            session,
            partial(place, session, world, subject, study, 2, 1e7, change_reason=reason),
            r"the dose changes from 5 × 10⁷ cells \(injection 1\) to 1 × 10⁷: give the reason for the change",
        )
    assert_audit_ok(session)


def test_an_unsigned_order_is_never_stored(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    investigator = world.users["investigator"]
    refused(
        session,
        lambda: place(session, world, subject, study, password=""),
        "enter your password",
        SignatureRefused,
    )
    refusal = refused(
        session,
        lambda: place(session, world, subject, study, password=WRONG),
        f"password for {investigator.username} is wrong: not signed",
        SignatureRefused,
    )
    # the wrong password is counted after the rollback, as the web layer does (there under the same lock)
    for follow_up in refusal.after_rollback:
        follow_up(session)
    session.commit()
    session.refresh(investigator)
    assert investigator.failed_logins == 1
    assert session.scalars(select(DoseOrder)).all() == []
    assert not session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "dose_order")).all()
    assert_audit_ok(session)


def test_only_an_investigator_prescribes(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    refused(
        session,
        lambda: place(session, world, subject, study, who="coordinator"),
        "only an investigator prescribes a dose",
        PermissionRefused,
    )
    refused(
        session,
        lambda: place(session, world, subject, study, who="admin"),
        "cannot perform GMP actions",
        PermissionRefused,
    )


def test_a_withdrawn_subject_gets_no_order(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    audit_service.update(session, "coordinator", subject, reason="consent withdrawn", status="withdrawn")
    session.commit()
    refused(
        session, lambda: place(session, world, subject, study), "ALS-001 is withdrawn: no dose can be ordered"
    )


# --- cancelling -----------------------------------------------------------------------------------------


def test_cancelling_needs_a_reason_and_keeps_the_order(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    order = place(session, world, subject, study)
    session.commit()
    refused(
        session,
        lambda: order_service.cancel_order(session, world.users["coordinator"], order, "  "),
        f"give the reason for cancelling dose order #{order.id}",
    )
    refused(
        session,
        lambda: order_service.cancel_order(session, world.users["technician"], order, "x"),
        "an investigator or a coordinator cancels",
        PermissionRefused,
    )
    order_service.cancel_order(session, world.users["coordinator"], order, "visit moved by the subject")
    session.commit()
    assert (order.status, order.cancel_reason) == ("cancelled", "visit moved by the subject")
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "dose_order", AuditEvent.action == "cancel")
    ).one()
    assert (event.actor, event.reason) == ("coordinator", "visit moved by the subject")
    refused(
        session,
        lambda: order_service.cancel_order(session, world.users["investigator"], order, "again"),
        rf"dose order #{order.id} is already cancelled \(visit moved by the subject\)",
    )
    # the visit can be prescribed again; the signature on the cancelled order stays valid and on record
    again = place(session, world, subject, study, first_due=date(2027, 2, 7))
    session.commit()
    assert [o.status for o in order_service.orders_for(session, subject)] == ["cancelled", "ordered"]
    assert again.due_date == date(2027, 2, 7)
    assert all(v.valid for v in identity_service.signatures_for(session, order))
    assert_audit_ok(session)


# --- what dose preparation may start --------------------------------------------------------------------


def test_a_cancelled_order_cannot_be_prepared(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    order = place(session, world, subject, study)
    order_service.cancel_order(session, world.users["investigator"], order, "subject hospitalised")
    session.commit()
    with pytest.raises(
        ValidationRefused, match=r"injection 1\) is cancelled: subject hospitalised"
    ) as caught:
        order_service.require_preparable(session, order)
    assert (caught.value.entity_type, caught.value.entity_id) == ("dose_order", str(order.id))
    with pytest.raises(ValidationRefused, match="is cancelled"):
        order_service.mark_in_preparation(session, "technician", order)
    session.rollback()
    assert order.status == "cancelled"


def test_preparation_moves_an_order_once(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    order = place(session, world, subject, study)
    session.commit()
    with pytest.raises(ValidationRefused, match="is ordered, not in preparation"):
        order_service.mark_prepared(session, "technician", order)
    order_service.mark_in_preparation(session, "technician", order)
    session.commit()
    with pytest.raises(ValidationRefused, match=r"injection 1\) is already in preparation"):
        order_service.require_preparable(session, order)
    order_service.mark_prepared(session, "technician", order)
    session.commit()
    with pytest.raises(ValidationRefused, match="has already been prepared"):
        order_service.mark_in_preparation(session, "technician", order)
    session.rollback()
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "dose_order").order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.reason) for e in events] == [
        ("create", None),
        ("start_preparation", "dose preparation started"),
        ("prepared", "dose preparation finished"),
    ]
    # status changes are not what the investigator signed: the signature stays valid
    assert [v.valid for v in identity_service.signatures_for(session, order)] == [True]
    assert_audit_ok(session)


def test_an_order_whose_signature_became_invalid_cannot_be_prepared(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    order = place(session, world, subject, study)
    session.commit()
    # a recorded change to the prescription (with its reason, so the trail stays whole) breaks the signature
    audit_service.update(session, "coordinator", order, reason="weight re-measured", body_weight_kg=80.0)
    session.commit()
    [view] = identity_service.signatures_for(session, order)
    assert (view.valid, view.why) == (False, "the record has changed since it was signed")
    with pytest.raises(ValidationRefused, match="signature on dose order .* is no longer valid"):
        order_service.require_preparable(session, order)
    assert_audit_ok(session)


def test_an_order_without_the_investigators_signature_cannot_be_prepared(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    # only possible by going around place_order, which is what this guards against
    unsigned = DoseOrder(
        subject_id=subject.id,
        injection_number=1,
        protocol_visit=4,
        due_date=FIRST_DUE,
        window_start=FIRST_DUE,
        window_end=FIRST_DUE,
        dose_cells=5e7,
        body_weight_kg=70.0,
        change_reason=None,
        status="ordered",
        ordered_by_id=world.users["investigator"].id,
        ordered_at=clock.now(),
        cancel_reason=None,
    )
    audit_service.create(session, "test-setup", unsigned)
    session.commit()
    with pytest.raises(ValidationRefused, match="has no investigator's signature"):
        order_service.require_preparable(session, unsigned)
    # somebody else's approval is not the prescriber's
    identity_service.sign(session, world.users["qa"], PASSWORD, "approved", unsigned)
    session.commit()
    with pytest.raises(ValidationRefused, match="has no investigator's signature"):
        order_service.require_preparable(session, unsigned)


# --- the cryobank ---------------------------------------------------------------------------------------


def run_batch(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> Batch:
    """A whole collection-to-cryobank batch through the process engine: 10 stored vials of 5e7 cells."""
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key, iteration in STEP_SEQUENCE:
        user = world.users[PERFORMER.get(step_key, "technician")]
        if step_key.split(".")[0] in ("receipt", "processing", "expansion", "cryobank"):
            workstations.open_at_workstation(session, user, bench.cabinet, batch)
        values = step_values(session, batch, step_key, clock.now(), iteration)
        record = steps.record_step(
            session,
            user,
            PASSWORD,
            batch,
            step_key,
            steps.StepSubmission(values),
            study,
            bench.cabinet,
        )
        if record.status == "awaiting_verification":
            verifier = world.users["supervisor" if user.role != "supervisor" else "technician"]
            steps.verify_step(session, verifier, PASSWORD, record)
        session.commit()
    assert batch.status == "cryobanked"
    return batch


@pytest.fixture
def banked(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> list[str]:
    """The subject's stored cryovials, oldest first."""
    batch = run_batch(session, world, study, subject, bench)
    vials = session.scalars(
        select(Container.scan_id)
        .where(Container.din == batch.din, Container.kind == "cryovial", Container.status == "stored")
        .order_by(Container.id)
    ).all()
    assert len(vials) == 10
    return list(vials)


def test_the_bank_check_against_a_real_batch(
    session: Session, world: World, study: StudyDefinition, subject: Subject, banked: list[str]
) -> None:
    first = place(session, world, subject, study)
    session.commit()
    # 5e7 now: 2 vials (2 x 5e7 x 0.7 = 7e7); injections 2-4 assumed at 5e7, 2 vials each: 8 used, 2 spare
    check = bank.bank_status(session, subject, study, first)
    assert check.vials_to_thaw == tuple(banked[:2])
    assert (check.enough, check.stored_vials, check.remaining_doses_cells, check.spare_vials) == (
        True,
        10,
        (5e7, 5e7, 5e7),
        2,
    )
    assert check.sentence.startswith("Thaw 2 vials of 10 for this dose")

    # injection 2 escalated to 1e8 while injection 1 is still waiting: 1e8 takes 3 vials, then 5e7 for
    # injection 1 takes 2 and 1e8 for injection 3 takes 3: 8 used; the 2 left (7e7) cannot give injection 4
    second = place(session, world, subject, study, 2, 1e8, change_reason="escalation per protocol")
    session.commit()
    check = bank.bank_status(session, subject, study, second)
    assert check.vials_to_thaw == tuple(banked[:3])
    assert check.remaining_doses_cells == (5e7, 1e8, 1e8)
    assert (check.covers_this_dose, check.enough, check.remaining_doses_covered) == (True, False, 2)
    assert "NOT ENOUGH for the rest of the schedule" in check.sentence

    # injection 1 is prepared: its two vials are thawed (consumed) and it no longer counts
    order_service.mark_in_preparation(session, "technician", first)
    for scan_id in banked[:2]:
        vial = custody_service.find_container(session, scan_id)
        audit_service.update(session, "technician", vial, reason="thawed for injection 1", status="consumed")
    order_service.mark_prepared(session, "technician", first)
    session.commit()
    check = bank.bank_status(session, subject, study, second)
    # 8 left: 1e8 takes vials 3-5, injection 3 takes 6-8, injection 4 has 2 vials (7e7) -> 1 of 2 covered
    assert check.vials_to_thaw == tuple(banked[2:5])
    assert (check.stored_vials, check.remaining_doses_cells, check.remaining_doses_covered) == (
        8,
        (1e8, 1e8),
        1,
    )
    assert not check.enough
    assert_audit_ok(session)


def test_the_bank_check_per_level_before_signing(
    session: Session, world: World, study: StudyDefinition, subject: Subject, banked: list[str]
) -> None:
    place(session, world, subject, study)
    session.commit()
    by_level = bank.bank_checks_by_level(session, subject, study, 2)
    # injection 1 (5e7, waiting) always needs 2 vials. 1e7 x 3: 1 vial each -> 2 + 3 = 5; 5e7 x 3: 2 + 6 = 8;
    # 1e8 x 3: 3 + 2 + 3 = 8, injection 4 short.
    assert {level: (len(c.vials_to_thaw), c.enough) for level, c in by_level.items()} == {
        1e7: (1, True),
        5e7: (2, True),
        1e8: (3, False),
    }
    assert by_level[1e7].spare_vials == 5 and by_level[5e7].spare_vials == 2


def test_a_subject_without_a_bank_has_nothing_to_thaw(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    order = place(session, world, subject, study)
    # a stored vial with no batch behind it has no known cell count: it is named, not counted
    stray = custody_service.create_container(
        session,
        "test-setup",
        kind="cryovial",
        subject=subject,
        contents="Cryopreserved aaMSC",
        location="LN2 tank 1",
        status="stored",
    )
    session.commit()
    check = bank.bank_status(session, subject, study, order)
    assert (check.covers_this_dose, check.vials_to_thaw, check.stored_vials) == (False, (), 0)
    assert check.sentence.startswith("No cryovials are stored: the bank cannot supply this dose of 5 × 10⁷.")
    assert (
        f"1 stored vial(s) without recorded cells per vial are not counted ({stray.scan_id})"
        in check.sentence
    )


def test_an_order_of_another_subject_is_not_checked_against_this_bank(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    from tests.conftest import enroll

    other = enroll(session, world, study, "ALS-002", "Other Person")
    order = place(session, world, other, study)
    session.commit()
    with pytest.raises(ValidationRefused, match="is not ALS-001's"):
        bank.bank_status(session, subject, study, order)
