"""A whole batch through the service layer, then the refusals that must leave it untouched."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container
from mfg.dosing.bank import bank_capacity
from mfg.errors import Refusal
from mfg.identity import service as identity_service
from mfg.materials.models import MaterialUse
from mfg.process import batches, corrections, deviations, growth, steps, versions, workstations
from mfg.process.models import Batch, Deviation, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import PERFORMER, STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World


def run_step(
    session: Session,
    world: World,
    study: StudyDefinition,
    batch: Batch,
    bench: Bench,
    step_key: str,
    iteration: int = 1,
    values: dict[str, str] | None = None,
    performer: str | None = None,
) -> StepRecord:
    user = world.users[performer or PERFORMER.get(step_key, "technician")]
    if batches.batch_mbr(session, batch).step(step_key).at_workstation:
        workstations.open_at_workstation(session, user, bench.cabinet, batch)
    record = steps.record_step(
        session,
        user,
        PASSWORD,
        batch,
        step_key,
        steps.StepSubmission(values or step_values(session, batch, step_key, clock.now(), iteration)),
        study,
        bench.cabinet,
    )
    if record.status == "awaiting_verification":
        verifier = world.users["supervisor" if user.role != "supervisor" else "technician"]
        steps.verify_step(session, verifier, PASSWORD, record)
    session.commit()
    return record


def test_a_full_batch_from_collection_to_a_closed_cryobank(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    assert batch.din.startswith("=A9999")
    for step_key, iteration in STEP_SEQUENCE:
        run_step(session, world, study, batch, bench, step_key, iteration)
    assert batch.status == "cryobanked"
    vials = session.scalars(
        select(Container).where(Container.din == batch.din, Container.kind == "cryovial")
    ).all()
    assert len(vials) == 10 and {v.status for v in vials} == {"stored"}
    assert {v.location for v in vials} == {"LN2 tank 2 / rack B / box 4"}
    flasks = session.scalars(
        select(Container).where(Container.din == batch.din, Container.kind == "culture_flask")
    ).all()
    assert len(flasks) == 2 + 4 + 8 and {f.status for f in flasks} == {"consumed"}
    tube = session.scalar(
        select(Container).where(Container.din == batch.din, Container.kind == "tissue_tube")
    )
    assert tube is not None and tube.status == "consumed"
    uses = session.scalar(select(func.count()).select_from(MaterialUse))
    assert uses == 4  # collagenase, medium, platelet lysate, cryomedium
    assert session.scalar(select(func.count()).select_from(Deviation)) == 0
    # Critical steps carry a performed and a verified signature, both valid.
    for record in session.scalars(select(StepRecord).where(StepRecord.batch_id == batch.id)):
        meanings = [v.signature.meaning for v in identity_service.signatures_for(session, record)]
        views = identity_service.signatures_for(session, record)
        assert all(v.valid for v in views)
        step = batches.batch_mbr(session, batch).step(record.step_key)
        assert meanings == (["performed", "verified"] if step.critical else ["performed"])
    grown = growth.passages(session, batch)
    assert [round(p.harvested_cells / p.seeded_cells, 3) for p in grown] == [8.0, 32.0, 32.0]
    bank = bank_capacity(session, batch, study)
    assert bank is not None and bank.total_viable_cells == 10 * 5.0e7
    assert bank.needed_cells == pytest.approx(4 * 1e8 / 0.7)
    assert bank.shortfall_cells == pytest.approx(4e8 / 0.7 - 5e8)
    assert bank.doses_covered == 3  # whole vials: 3 of 5e7 give 1.05e8 after thaw, 10 vials give 3 doses
    assert audit_service.verify(session).ok


def _refused(session: Session, action, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Refusal, match=match):
        action()
    session.rollback()


def test_out_of_order_and_material_refusals_leave_the_batch_untouched(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    tech = world.users["technician"]
    now = clock.now()

    def submit(step_key: str, **changes: str) -> None:
        values = {**step_values(session, batch, step_key, now), **changes}
        steps.record_step(
            session,
            tech,
            PASSWORD,
            batch,
            step_key,
            steps.StepSubmission(values),
            study,
            bench.cabinet,
        )

    workstations.open_at_workstation(session, tech, bench.cabinet, batch)
    session.commit()
    _refused(
        session, lambda: submit("processing.separate"), "comes after 'Mince and digest with collagenase'"
    )
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        run_step(session, world, study, batch, bench, step_key)
    before = session.scalar(select(func.count()).select_from(StepRecord))
    _refused(session, lambda: submit("processing.digest", collagenase_lot="LOT-COLL-OLD"), "EXPIRED")
    _refused(session, lambda: submit("processing.digest", collagenase_lot="LOT-COLL-Q"), "QUARANTINED")
    _refused(session, lambda: submit("processing.digest", collagenase_lot="LOT-MEM-1"), "needs collagenase")
    _refused(session, lambda: submit("processing.digest", digestion_minutes="ninety"), "is not a number")
    _refused(
        session, lambda: submit("processing.digest", digestion_minutes=""), "still missing: Digestion time"
    )
    run_step(session, world, study, batch, bench, "processing.digest")
    _refused(
        session, lambda: submit("processing.separate", centrifuge="CEN-OLD"), "past its calibration date"
    )
    assert session.scalar(select(func.count()).select_from(StepRecord)) == before + 1
    assert audit_service.verify(session).ok


def test_another_subjects_container_and_an_occupied_cabinet_are_refused(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    from tests.conftest import enroll

    other = enroll(session, world, study, "ALS-002", "Robin Other")
    mine = batches.start_batch(session, world.users["coordinator"], subject, study)
    theirs = batches.start_batch(session, world.users["coordinator"], other, study)
    session.commit()
    for batch in (mine, theirs):
        for step_key in ("collection.harvest", "collection.handoff"):
            run_step(session, world, study, batch, bench, step_key)
    tech = world.users["technician"]
    workstations.open_at_workstation(session, tech, bench.cabinet, mine)
    session.commit()
    their_tube = step_values(session, theirs, "receipt.accept", clock.now())["tissue_tube"]
    values = {**step_values(session, mine, "receipt.accept", clock.now()), "tissue_tube": their_tube}
    _refused(
        session,
        lambda: steps.record_step(
            session,
            tech,
            PASSWORD,
            mine,
            "receipt.accept",
            steps.StepSubmission(values),
            study,
            bench.cabinet,
        ),
        "belongs to another subject",
    )
    _refused(
        session,
        lambda: workstations.open_at_workstation(session, tech, bench.cabinet, theirs),
        "sign line clearance",
    )
    workstations.clear_line(session, tech, PASSWORD, bench.cabinet)
    workstations.open_at_workstation(session, tech, bench.cabinet, theirs)
    session.commit()
    assert bench.cabinet.current_batch_id == theirs.id
    assert audit_service.verify(session).ok


def test_self_verification_is_refused(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff"):
        run_step(session, world, study, batch, bench, step_key)
    tech = world.users["technician"]
    workstations.open_at_workstation(session, tech, bench.cabinet, batch)
    record = steps.record_step(
        session,
        tech,
        PASSWORD,
        batch,
        "receipt.accept",
        steps.StepSubmission(step_values(session, batch, "receipt.accept", clock.now())),
        study,
        bench.cabinet,
    )
    session.commit()
    _refused(session, lambda: steps.verify_step(session, tech, PASSWORD, record), "second person")
    assert record.status == "awaiting_verification"
    _refused(
        session,
        lambda: run_step(session, world, study, batch, bench, "processing.digest"),
        "waiting for second-person verification|not done yet",
    )


def test_critical_out_of_range_value_stops_the_batch_until_assessed(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        run_step(session, world, study, batch, bench, step_key)
    values = {
        **step_values(session, batch, "processing.digest", clock.now()),
        "digestion_temperature": "39.5",
        "digestion_minutes": "120",
    }
    run_step(session, world, study, batch, bench, "processing.digest", values=values)
    opened = session.scalars(select(Deviation).order_by(Deviation.id)).all()
    assert [(d.field_key, d.critical, d.value) for d in opened] == [
        ("digestion_temperature", True, "39.5"),
        ("digestion_minutes", False, "120"),
    ]
    assert "36–38 °C" in opened[0].limit_text
    assert batch.status == "on_hold"
    _refused(session, lambda: run_step(session, world, study, batch, bench, "processing.separate"), "STOPPED")
    _refused(
        session,
        lambda: deviations.assess_deviation(session, world.users["technician"], PASSWORD, opened[0], "fine"),
        "supervisor assesses",
    )
    deviations.assess_deviation(
        session,
        world.users["supervisor"],
        PASSWORD,
        opened[0],
        "Thermometer drift; cells unaffected per validation.",
    )
    session.commit()
    assert batch.status == "open"
    run_step(session, world, study, batch, bench, "processing.separate")
    _refused(
        session,
        lambda: deviations.close_deviation(session, world.users["qa"], PASSWORD, opened[1], "", ""),
        "investigation and the root cause",
    )
    deviations.close_deviation(
        session, world.users["qa"], PASSWORD, opened[1], "Timer misread", "Human error; retrained"
    )
    session.commit()
    assert opened[1].status == "closed"
    assert audit_service.verify(session).ok


def test_a_correction_needs_a_reason_keeps_the_old_value_and_invalidates_signatures(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    record = run_step(session, world, study, batch, bench, "collection.harvest")
    weight = batches.current_values(session, record)["tissue_weight"]
    coordinator = world.users["coordinator"]
    _refused(
        session,
        lambda: corrections.correct_value(session, coordinator, weight, "1.7", " ", study),
        "needs a reason",
    )
    _refused(
        session,
        lambda: corrections.correct_value(session, world.users["coordinator2"], weight, "1.7", "typo", study),
        "performer of the step",
    )
    new = corrections.correct_value(session, coordinator, weight, "1.7", "transcription error", study)
    session.commit()
    history = batches.value_history(session, record)
    assert [(v.value, v.supersedes_id) for v in history if v.field_key == "tissue_weight"] == [
        ("1.5", None),
        ("1.7", weight.id),
    ]
    assert new.correction_reason == "transcription error"
    views = identity_service.signatures_for(session, record)
    assert views and not any(v.valid for v in views)
    assert audit_service.verify(session).ok


def test_a_batch_needs_an_approved_mbr(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    from mfg.process.mbr import packaged_mbr_text

    versions.register_mbr(session, "test-setup", packaged_mbr_text())
    session.commit()
    _refused(
        session,
        lambda: batches.start_batch(session, world.users["coordinator"], subject, study),
        "QA must approve",
    )


def test_a_batch_keeps_the_mbr_version_it_started_on(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    from mfg.process.mbr import packaged_mbr_text
    from tests.conftest import enroll

    first = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    v2_text = (
        packaged_mbr_text()
        .replace("version = 1", "version = 2", 1)
        .replace("min = 1.0\n    max = 2.0", "min = 0.8\n    max = 2.0", 1)
    )
    v2 = versions.register_mbr(session, "test-setup", v2_text)
    with pytest.raises(Refusal, match="already registered with different content"):
        versions.register_mbr(
            session, "test-setup", v2_text.replace("0.8", "0.9", 1).replace("version = 2", "version = 1", 1)
        )
    versions.approve_mbr(session, world.users["qa"], PASSWORD, v2)
    session.commit()
    second = batches.start_batch(
        session, world.users["coordinator"], enroll(session, world, study, "ALS-002", "Robin Other"), study
    )
    session.commit()
    assert batches.batch_mbr(session, first).version == 1
    assert batches.batch_mbr(session, second).version == 2
    low = {**step_values(session, first, "collection.harvest", clock.now()), "tissue_weight": "0.9"}
    run_step(session, world, study, first, bench, "collection.harvest", values=low)
    run_step(session, world, study, second, bench, "collection.harvest", values=low)
    held = session.scalars(select(Deviation.batch_id)).all()
    assert held == [first.id]  # 0.9 g is out of v1's 1-2 g, within v2's 0.8-2 g


def test_an_entry_long_after_the_work_is_marked_late(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    from datetime import timedelta

    from tests.bench_data import local

    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    values = step_values(session, batch, "collection.harvest", clock.now())
    record = steps.record_step(
        session,
        world.users["coordinator"],
        PASSWORD,
        batch,
        "collection.harvest",
        steps.StepSubmission(values, performed_at=local(clock.now() - timedelta(hours=2))),
        study,
        bench.cabinet,
    )
    session.commit()
    assert record.late
    assert (record.entered_at - record.performed_at) > timedelta(minutes=90)


def test_the_cabinet_is_a_usable_biosafety_cabinet_of_the_register(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    """A new-user review: BSC-02 out of service, and BSC-77 that is no equipment at all, were both accepted
    as the terminal's cabinet, and a critical step was signed at the out-of-service one."""
    from mfg.materials import service as materials_service
    from mfg.materials.models import Equipment
    from mfg.process.models import Workstation

    with pytest.raises(Refusal, match="BSC-77 is not a biosafety cabinet of the equipment register"):
        workstations.register_workstation(session, "admin", "BSC-77", "Cabinet 77")
    session.rollback()
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        run_step(session, world, study, batch, bench, step_key)
    # the cabinet scanned in a step is the terminal's own
    values = {**step_values(session, batch, "processing.digest", clock.now()), "cabinet": "BSC-02"}
    with pytest.raises(Refusal, match=r"BSC-02 is not the cabinet this terminal works at \(BSC-01\)"):
        run_step(session, world, study, batch, bench, "processing.digest", values=values)
    session.rollback()
    # a cabinet taken out of service stops the work at it, and cannot be chosen
    cabinet = session.scalar(select(Equipment).where(Equipment.asset_tag == "BSC-01"))
    assert cabinet is not None
    materials_service.set_equipment_status(
        session,
        world.users["supervisor"],
        PASSWORD,
        cabinet,
        "out_of_service",
        "HEPA filter failed integrity test",
    )
    session.commit()
    with pytest.raises(Refusal, match="BSC-01"):
        run_step(session, world, study, batch, bench, "processing.digest")
    session.rollback()
    with pytest.raises(Refusal, match="BSC-01"):
        workstations.find_workstation(session, "BSC-01")
    assert batches.latest_record(session, batch, "processing.digest") is None
    assert session.scalar(select(Workstation).where(Workstation.code == "BSC-01")) is not None
