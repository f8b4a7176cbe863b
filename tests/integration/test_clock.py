"""One clock in the facility's zone: the demo's expired lot is refused, and a lot in date is accepted, at any
hour the suite runs. The suite used to fail from 00:00 to 06:00 UTC, when the server's date (UTC) is a day
ahead of the lab's (America/Chicago): the demo dated the expired lot from the server's date while the bench
checked expiry against the lab's day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.demo import DEMO_PASSWORD, seed_demo, set_up_bench
from mfg.identity.models import User
from mfg.materials.models import ReagentLot
from mfg.materials.service import MaterialRefused
from mfg.process import batches, steps, workstations
from mfg.process.models import Workstation
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition
from mfg.study.models import Site, Subject
from tests.bench_data import PERFORMER, step_values
from tests.conftest import PASSWORD

INSTANTS = {
    "00:30 UTC (the lab's evening, the day before)": datetime(2026, 12, 1, 0, 30, tzinfo=UTC),
    "05:59 UTC": datetime(2026, 12, 1, 5, 59, tzinfo=UTC),
    "23:30 in the lab": datetime(2026, 12, 1, 23, 30, tzinfo=clock.zone("America/Chicago")),
    "autumn change, 01:30 CST after the repeat": datetime(2026, 11, 1, 7, 30, tzinfo=UTC),
    "spring change, 03:30 CDT": datetime(2027, 3, 14, 8, 30, tzinfo=UTC),
}


def test_today_is_the_facility_day_not_the_server_day() -> None:
    with clock.pinned(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), frozen=True):
        assert clock.today() == date(2026, 11, 30)
        assert clock.local_now().utcoffset() == timedelta(hours=-6)
    with clock.pinned(datetime(2026, 7, 1, 4, 59, tzinfo=UTC), frozen=True):
        assert clock.today() == date(2026, 6, 30)
        assert clock.local_now().utcoffset() == timedelta(hours=-5)


def test_a_pinned_clock_keeps_ticking_unless_frozen() -> None:
    start = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    with clock.pinned(start):
        first = clock.now()
        assert timedelta(0) <= first - start < timedelta(seconds=5)
        assert clock.now() >= first
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    with pytest.raises(ValueError), clock.pinned(datetime(2026, 12, 1, 0, 30)):
        pass


@pytest.mark.parametrize("instant", list(INSTANTS.values()), ids=list(INSTANTS))
def test_the_demo_and_the_expired_lot_refusal_at_any_hour(
    session: Session, study: StudyDefinition, instant: datetime
) -> None:
    with clock.pinned(instant):
        seed_demo(session, "test-setup")
        session.commit()
        expired = session.scalar(select(ReagentLot).where(ReagentLot.scan_code == "LOT-COLL-OLD"))
        assert expired is not None and expired.expiry_date == clock.today() - timedelta(days=1)

        users = {u.username: u for u in session.scalars(select(User))}
        site = session.scalar(select(Site).where(Site.code == "RST"))
        assert site is not None
        form = study_service.EnrollmentForm(
            study_subject_id="ALS-002",
            name="Robin Clock-Test",
            date_of_birth=date(1970, 1, 2),
            medical_record_number="MRN-CLOCK",
            site_id=site.id,
            consent_date=clock.today(),
        )
        subject: Subject = study_service.enroll_subject(session, users["coord"], study, form, DEMO_PASSWORD)
        study_service.verify_enrollment(session, users["inv"], DEMO_PASSWORD, subject)
        batch = batches.start_batch(session, users["coord"], subject, study)
        cabinet = session.scalar(select(Workstation).where(Workstation.code == "BSC-02"))
        assert cabinet is not None
        session.commit()

        def record(step_key: str, **changes: str) -> None:
            user = users["coord" if PERFORMER.get(step_key) == "coordinator" else "tech"]
            if batches.batch_mbr(session, batch).step(step_key).at_workstation:
                workstations.open_at_workstation(session, user, cabinet, batch)
            values = {**step_values(session, batch, step_key, clock.now()), **changes}
            done = steps.record_step(
                session,
                user,
                DEMO_PASSWORD,
                batch,
                step_key,
                steps.StepSubmission(values),
                study,
                cabinet,
            )
            if done.status == "awaiting_verification":
                steps.verify_step(session, users["super"], DEMO_PASSWORD, done)

        for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
            record(step_key)
            session.commit()
        with pytest.raises(MaterialRefused, match="EXPIRED"):
            record("processing.digest", collagenase_lot="LOT-COLL-OLD")
        session.rollback()
        record("processing.digest", collagenase_lot="LOT-COLL-1")
        session.commit()


def test_a_lot_is_usable_through_its_expiry_day_in_the_lab(session: Session, world: object) -> None:
    # 2026-12-01 00:30 UTC is still 30 November in the lab: a lot expiring on 30 November is in date.
    qa = session.scalar(select(User).where(User.role == "qa"))
    assert qa is not None
    with clock.pinned(datetime(2026, 12, 1, 0, 30, tzinfo=UTC)):
        set_up_bench(session, qa, PASSWORD)
        from mfg.materials import service as materials_service

        materials_service.register_lot(
            session,
            "test-setup",
            scan_code="LOT-LAST-DAY",
            name="Collagenase type I",
            catalogue_number="CAT-1",
            lot_number="LD1",
            expiry_date=date(2026, 11, 30),
            status="released",
        )
        lot = materials_service.usable_lot(session, "LOT-LAST-DAY", on=clock.today())
        assert lot.lot_number == "LD1"
