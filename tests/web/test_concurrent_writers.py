"""Writers lock before they read (issue 8, finding 1): concurrent requests on one account or one step; then
the audit trail must verify and every counter must be exact. On PostgreSQL the lock used to be taken at the
first write, after the request had read: failed logins were lost, 8 simultaneous wrong passwords did not lock
an account, two verifications of one step both succeeded, and `mfg audit verify` failed on an untampered
trail. Runs on SQLite and, with MFG_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.identity.models import Signature, User
from mfg.process import batches, steps, workstations
from mfg.process.models import StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import PERFORMER, STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, all_at_once, build_app, login


def _account(factory: sessionmaker[Session], username: str) -> User:
    with factory() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        return user


def test_concurrent_wrong_passwords_are_each_counted(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=100)
    clients = [app.test_client() for _ in range(8)]

    def attempts(client: Any) -> Callable[[], list[int]]:
        return lambda: [login(client, "nurse", "wrong-password").status_code for _ in range(6)]

    codes = all_at_once([attempts(c) for c in clients])
    assert {code for batch in codes for code in batch} == {401}
    assert _account(session_factory, "nurse").failed_logins == 48
    with session_factory() as s:
        assert audit_service.verify(s).ok


def test_simultaneous_wrong_passwords_lock_the_account_at_the_threshold(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=5)
    clients = [app.test_client() for _ in range(8)]
    all_at_once([lambda c=c: login(c, "pharmacist", "wrong-password") for c in clients])
    account = _account(session_factory, "pharmacist")
    # A wrong password is counted in the transaction that checked it: five are counted, the account locks
    # once, at the fifth, and the three after it meet a locked account.
    assert account.locked and account.failed_logins == 5
    with session_factory() as s:
        counted = s.scalars(
            select(AuditEvent.action).where(
                AuditEvent.entity_type == "user_account",
                AuditEvent.entity_id == str(account.id),
                AuditEvent.action.in_(("login_failed", "lockout")),
            )
        ).all()
        assert len(counted) == account.failed_logins and counted.count("lockout") == 1
        assert audit_service.verify(s).ok


def test_logins_racing_failed_logins_leave_a_trail_that_verifies(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=100)
    work: list[Callable[[], Any]] = []
    for i in range(8):
        client = app.test_client()
        password = PASSWORD if i % 2 else "wrong-password"
        work.append(lambda c=client, p=password: [login(c, "investigator", p).status_code for _ in range(4)])
    all_at_once(work)
    with session_factory() as s:
        result = audit_service.verify(s)
        assert result.ok, result


def test_two_simultaneous_verifications_of_one_step_give_one_signature(
    database_url: str,
    tmp_path: Path,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    critical = None
    for step_key, iteration in STEP_SEQUENCE:
        user = world.users[PERFORMER.get(step_key, "technician")]
        if batches.batch_mbr(session, batch).step(step_key).at_workstation:
            workstations.open_at_workstation(session, user, bench.cabinet, batch)
        values = step_values(session, batch, step_key, clock.now(), iteration)
        done = steps.record_step(
            session, user, PASSWORD, batch, step_key, steps.StepSubmission(values), study, bench.cabinet
        )
        session.commit()
        if done.status == "awaiting_verification":
            critical = done
            break
    assert critical is not None
    record_id = critical.id
    session.rollback()
    app = build_app(database_url, tmp_path)
    verifiers = []
    for username in ("supervisor", "qcanalyst"):
        client = app.test_client()
        assert login(client, username).status_code == 302
        verifiers.append(client)
    statuses = all_at_once(
        [
            lambda c=client, u=username: (
                c.post(
                    f"/bench/records/{record_id}/verify", data={"username": u, "password": PASSWORD}
                ).status_code
            )
            for client, username in zip(verifiers, ("supervisor", "supervisor"), strict=True)
        ]
    )
    assert sorted(statuses) == [302, 422]
    with session_factory() as s:
        verified = s.scalars(
            select(Signature).where(
                Signature.entity_type == "step_record",
                Signature.entity_id == str(record_id),
                Signature.meaning == "verified",
            )
        ).all()
        assert len(verified) == 1
        assert s.get(StepRecord, record_id).status == "done"  # type: ignore[union-attr]
        assert audit_service.verify(s).ok


def test_a_read_only_request_takes_no_write_lock(database_url: str, tmp_path: Path, world: World) -> None:
    """Readers never wait for the chain lock: no BEGIN IMMEDIATE, no advisory lock on a GET."""
    app = build_app(database_url, tmp_path)
    client = app.test_client()
    login(client, "coordinator")
    seen: list[str] = []
    engine = app.extensions["mfg.engine"]

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        assert client.get("/clinic/subjects").status_code == 200
        assert not any("IMMEDIATE" in s or "advisory" in s for s in seen), seen
        seen.clear()
        client.post("/clinic/subjects/new", data={"study_subject_id": ""})  # a writer, refused
        assert any("IMMEDIATE" in s or "advisory" in s for s in seen), seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_the_same_step_recorded_at_once_from_two_terminals_is_refused_once_not_a_500(
    database_url: str,
    tmp_path: Path,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    values = step_values(session, batch, "collection.harvest", clock.now())
    batch_id = batch.id
    session.rollback()
    app = build_app(database_url, tmp_path)
    terminals = []
    for username in ("coordinator", "coordinator2"):
        client = app.test_client()
        assert login(client, username).status_code == 302
        terminals.append(client)
    form = {**{f"f.{k}": v for k, v in values.items()}, "password": PASSWORD}
    responses = all_at_once(
        [
            lambda c=c: c.post(f"/bench/batches/{batch_id}/steps/collection.harvest", data=form)
            for c in terminals
        ]
    )
    assert sorted(r.status_code for r in responses) == [302, 422]
    refused = next(r for r in responses if r.status_code == 422)
    assert "already recorded" in refused.get_data(as_text=True)
    with session_factory() as s:
        assert len(s.scalars(select(StepRecord).where(StepRecord.batch_id == batch_id)).all()) == 1
        assert audit_service.verify(s).ok
