"""Signatures bind to a version of the record (issue 8, finding 3). Each test failed before its fix:

* a performer corrected a verified critical value: both signatures showed INVALID, yet the step stayed
  verified, the batch went on, and nobody could verify the corrected value;
* a signature shown INVALID after a change showed valid again once the value was changed back;
* the same verification posted three times gave three signatures;
* a supervisor assessed the deviation his own critical value had opened, and lifted the hold.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.errors import Refusal
from mfg.identity import service as identity_service
from mfg.process import batches, corrections, deviations, steps
from mfg.process.models import Batch, Deviation, StepRecord
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import Bench, step_values
from tests.conftest import PASSWORD, World, make_user
from tests.integration.test_batch_service import run_step


def _verified_receipt(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> tuple[Batch, StepRecord]:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff"):
        run_step(session, world, study, batch, bench, step_key)
    record = run_step(session, world, study, batch, bench, "receipt.accept")
    assert record.status == "done" and record.verified_by_id is not None
    return batch, record


def _value(session: Session, record: StepRecord, key: str):  # type: ignore[no-untyped-def]
    return batches.current_values(session, record)[key]


def _valid(session: Session, record: StepRecord) -> list[tuple[str, bool]]:
    return [(v.signature.meaning, v.valid) for v in identity_service.signatures_for(session, record)]


def test_a_corrected_verified_value_goes_back_for_verification_and_holds_the_batch(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch, record = _verified_receipt(session, world, study, subject, bench)
    performer = session.get(type(world.users["technician"]), record.performed_by_id)
    assert performer is not None
    corrections.correct_value(
        session, performer, _value(session, record, "arrival_temperature"), "16", "misread thermometer", study
    )
    session.commit()
    assert record.status == "awaiting_verification" and record.verified_by_id is None
    assert _valid(session, record) == [("performed", False), ("verified", False)]
    # The batch is held: no later step until the corrected value is verified.
    with pytest.raises(Refusal, match="Receive and accept the tissue"):
        run_step(session, world, study, batch, bench, "processing.digest")
    session.rollback()
    # Whoever corrected it does not verify it; another person does, once.
    corrector = performer
    with pytest.raises(Refusal):
        steps.verify_step(session, corrector, PASSWORD, record)
    session.rollback()
    verifier = world.users["supervisor"] if performer.role != "supervisor" else world.users["technician"]
    steps.verify_step(session, verifier, PASSWORD, record)
    session.commit()
    assert record.status == "done"
    assert _valid(session, record)[-1] == ("verified", True)
    run_step(session, world, study, batch, bench, "processing.digest")


def test_a_value_changed_back_does_not_make_an_invalid_signature_valid_again(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    record = run_step(session, world, study, batch, bench, "collection.harvest")
    coordinator = world.users["coordinator"]
    original = _value(session, record, "tissue_weight").value
    corrections.correct_value(
        session, coordinator, _value(session, record, "tissue_weight"), "1.7", "typo", study
    )
    session.commit()
    corrections.correct_value(
        session, coordinator, _value(session, record, "tissue_weight"), original, "typo undone", study
    )
    session.commit()
    assert _value(session, record, "tissue_weight").value == original
    assert _valid(session, record) == [("performed", False)]


def test_the_same_verification_posted_again_is_refused(
    session: Session, world: World, study: StudyDefinition
) -> None:
    from tests.conftest import enroll

    subject = enroll(session, world, study, verified=False)
    study_service.verify_enrollment(session, world.users["coordinator2"], PASSWORD, subject)
    session.commit()
    for verifier in ("coordinator2", "investigator"):
        with pytest.raises(Refusal, match="already signed 'verified'"):
            study_service.verify_enrollment(session, world.users[verifier], PASSWORD, subject)
        session.rollback()
    meanings = [v.signature.meaning for v in identity_service.signatures_for(session, subject)]
    assert meanings == ["performed", "verified"]


def test_whoever_recorded_a_critical_value_does_not_assess_or_close_its_deviation(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        run_step(session, world, study, batch, bench, step_key)
    values = {
        **step_values(session, batch, "processing.digest", clock.now()),
        "digestion_temperature": "39.5",
    }
    run_step(session, world, study, batch, bench, "processing.digest", values=values, performer="supervisor")
    deviation = session.scalar(select(Deviation).where(Deviation.field_key == "digestion_temperature"))
    assert deviation is not None and batch.status == "on_hold"
    with pytest.raises(Refusal, match="another person must assess it"):
        deviations.assess_deviation(session, world.users["supervisor"], PASSWORD, deviation, "fine by me")
    session.rollback()
    assert batch.status == "on_hold"
    other = make_user(session, "supervisor", "supervisor2")
    session.commit()
    deviations.assess_deviation(session, other, PASSWORD, deviation, "probe drift; cells unaffected")
    session.commit()
    assert batch.status == "open"


def test_a_correction_after_later_steps_holds_every_later_step(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch, record = _verified_receipt(session, world, study, subject, bench)
    run_step(session, world, study, batch, bench, "processing.digest")
    performer = session.get(type(world.users["technician"]), record.performed_by_id)
    assert performer is not None
    corrections.correct_value(
        session, performer, _value(session, record, "arrival_temperature"), "14", "transcription", study
    )
    session.commit()
    with pytest.raises(
        Refusal, match="the batch is held: a corrected value of 'Receive and accept the tissue'"
    ):
        run_step(session, world, study, batch, bench, "processing.separate")
    session.rollback()


def test_an_enrollment_corrected_and_corrected_back_keeps_its_signatures_invalid(
    session: Session, world: World, study: StudyDefinition
) -> None:
    """Issue 8: subjects were not covered. A name corrected A -> B -> A showed its enrollment and verification
    signatures valid again; a signature binds to the version it signed, for good."""
    from tests.conftest import enroll

    subject = enroll(session, world, study, name="Jordan Example", verified=False)
    study_service.verify_enrollment(session, world.users["investigator"], PASSWORD, subject)
    session.commit()
    assert all(view.valid for view in identity_service.signatures_for(session, subject))
    coordinator = world.users["coordinator"]
    study_service.correct_subject(session, coordinator, subject, "typo in the source", name="Jordan Exampel")
    session.commit()
    views = identity_service.signatures_for(session, subject)
    assert views and not any(view.valid for view in views)
    study_service.correct_subject(
        session, coordinator, subject, "the first name was right", name="Jordan Example"
    )
    session.commit()
    views = identity_service.signatures_for(session, subject)
    assert len(views) == 2 and not any(view.valid for view in views)
    assert all("changed after it was signed" in view.why for view in views)
    # a change to a field the signature does not cover leaves it valid: it is the signed version that counts
    study_service.verify_enrollment(session, world.users["investigator"], PASSWORD, subject)
    session.commit()
    latest = identity_service.signatures_for(session, subject)[-1]
    assert latest.valid


def test_closing_a_deviation_leaves_its_assessment_signature_valid(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    """A new-user review: once QA closed a deviation, the supervisor's assessment showed INVALID ("the record
    has changed since it was signed"): every closed deviation looked tampered with."""
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        run_step(session, world, study, batch, bench, step_key)
    values = {
        **step_values(session, batch, "processing.digest", clock.now()),
        "digestion_temperature": "39.5",
    }
    run_step(session, world, study, batch, bench, "processing.digest", values=values)
    deviation = session.scalar(select(Deviation).where(Deviation.field_key == "digestion_temperature"))
    assert deviation is not None
    deviations.assess_deviation(session, world.users["supervisor"], PASSWORD, deviation, "probe drift")
    session.commit()
    deviations.close_deviation(
        session, world.users["qa"], PASSWORD, deviation, "probe recalibrated", "sensor drift"
    )
    session.commit()
    views = identity_service.signatures_for(session, deviation)
    assert [(v.signature.meaning, v.valid) for v in views] == [("reviewed", True), ("approved", True)]
