"""Pages a lab opens all day run a fixed number of SQL statements: the batch page does not grow with the steps
recorded, the subject page not with the dose orders and batches, the home page not with the subjects.

Measured with a cursor-execute listener on the application's engine, at two sizes of the same record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from mfg import clock
from mfg.dosing import service as order_service
from mfg.process import batches, steps, workstations
from mfg.process.models import Batch
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import PERFORMER, STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, enroll, login


@contextmanager
def counted(app: Flask) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app.extensions["mfg.engine"]
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def statements_for(app: Flask, client: FlaskClient, url: str) -> int:
    client.get(url)  # warm: the same session state for both sizes
    with counted(app) as statements:
        response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return len(statements)


def record(
    session: Session, world: World, study: StudyDefinition, bench: Bench, batch: Batch, n: int
) -> None:
    """Record steps of the reference sequence up to the n-th, verifying the critical ones."""
    done = sum(p.count for p in batches.progress_of(session, batch).values())
    for step_key, iteration in STEP_SEQUENCE[done:n]:
        user = world.users[PERFORMER.get(step_key, "technician")]
        if batches.batch_mbr(session, batch).step(step_key).at_workstation:
            workstations.open_at_workstation(session, user, bench.cabinet, batch)
        values = step_values(session, batch, step_key, clock.now(), iteration)
        done_record = steps.record_step(
            session, user, PASSWORD, batch, step_key, steps.StepSubmission(values), study, bench.cabinet
        )
        if done_record.status == "awaiting_verification":
            verifier = world.users["supervisor" if user.role != "supervisor" else "technician"]
            steps.verify_step(session, verifier, PASSWORD, done_record)
        session.commit()


def test_the_batch_page_does_not_grow_with_the_steps(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    client = app.test_client()
    login(client, "supervisor")
    url = f"/bench/batches/{batch.id}"
    passage_1 = [k for k, _ in STEP_SEQUENCE].index("expansion.passage") + 1
    record(session, world, study, bench, batch, passage_1)
    few = statements_for(app, client, url)
    record(session, world, study, bench, batch, passage_1 + 2)  # two more passages, one more growth row each
    many = statements_for(app, client, url)
    assert batches.progress_of(session, batch)["expansion.passage"].count == 3
    assert many == few, f"{few} statements with {passage_1} steps, {many} with {passage_1 + 2}"
    # the whole bank: still a fixed number (the bank card adds its own few)
    record(session, world, study, bench, batch, len(STEP_SEQUENCE))
    assert statements_for(app, client, url) < 60


def _order(session: Session, world: World, study: StudyDefinition, subject: Subject, injection: int) -> None:
    order_service.place_order(
        session,
        world.users["investigator"],
        PASSWORD,
        subject,
        study,
        injection_number=injection,
        dose_cells=5e7,
        body_weight_kg=70.0,
        first_due=clock.today() + timedelta(days=10) if injection == 1 else None,
        change_reason=None,
    )
    session.commit()


def test_the_subject_page_does_not_grow_with_orders_and_batches(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    client = app.test_client()
    login(client, "investigator")
    url = f"/clinic/subjects/{subject.id}"
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    _order(session, world, study, subject, 1)
    few = statements_for(app, client, url)
    record(session, world, study, bench, batch, 3)
    _order(session, world, study, subject, 2)
    _order(session, world, study, subject, 3)
    many = statements_for(app, client, url)
    assert many == few, f"{few} statements with 1 order, {many} with 3"


def test_the_home_page_does_not_grow_with_the_subjects(
    app: Flask, session: Session, world: World, study: StudyDefinition
) -> None:
    client = app.test_client()
    login(client, "coordinator")
    enroll(session, world, study, "ALS-001")
    few = statements_for(app, client, "/")
    for number in range(2, 9):
        enroll(session, world, study, f"ALS-{number:03d}", name=f"Subject Number{number}")
    many = statements_for(app, client, "/")
    assert many == few, f"{few} statements with 1 subject, {many} with 8"
