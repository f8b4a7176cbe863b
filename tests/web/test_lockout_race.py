"""The lockout threshold holds under concurrency (issue 8, red-team finding): a wrong password is counted, and
the account locked at the threshold, in the same locked transaction in which it was checked. It used to be
counted later, in a transaction of its own after the rollback, so every request waiting for the chain lock
checked its password before any failure was counted: 15 parallel wrong logins all counted against a threshold
of 5 and none refused as locked; a right signature password among 8 wrong ones still signed.
Runs on SQLite and, with MFG_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.identity import passwords
from mfg.identity.models import Signature, User
from mfg.process import batches, steps, workstations
from mfg.process.models import StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import PERFORMER, STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, all_at_once, build_app, login

THRESHOLD = 3


def _account(factory: sessionmaker[Session], username: str) -> User:
    with factory() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        return user


def _events(factory: sessionmaker[Session], user: User, *actions: str) -> list[AuditEvent]:
    with factory() as s:
        return list(
            s.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.entity_type == "user_account",
                    AuditEvent.entity_id == str(user.id),
                    AuditEvent.action.in_(actions),
                )
                .order_by(AuditEvent.id)
            )
        )


def test_parallel_wrong_logins_count_exactly_the_threshold_then_meet_a_locked_account(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=THRESHOLD)
    clients = [app.test_client() for _ in range(8)]
    codes = all_at_once([lambda c=c: login(c, "pharmacist", "wrong-password").status_code for c in clients])
    assert codes == [401] * 8
    account = _account(session_factory, "pharmacist")
    assert account.locked and account.failed_logins == THRESHOLD
    counted = [e.action for e in _events(session_factory, account, "login_failed", "lockout")]
    assert counted == ["login_failed"] * (THRESHOLD - 1) + ["lockout"]
    # the later ones were refused as locked, each on record with the reason
    refused = _events(session_factory, account, "login_refused")
    assert len(refused) == 8 - THRESHOLD
    assert all("account locked" in e.detail for e in refused)
    # the right password no longer signs in
    assert login(app.test_client(), "pharmacist").status_code == 401
    with session_factory() as s:
        assert audit_service.verify(s).ok


def _awaiting_verification(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> int:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
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
            record_id = done.id
            session.rollback()
            return record_id
    raise AssertionError("no critical step in the sequence")


def test_parallel_wrong_signature_passwords_lock_the_signer_and_the_right_one_then_does_not_sign(
    database_url: str,
    tmp_path: Path,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_id = _awaiting_verification(session, world, study, subject, bench)
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=THRESHOLD)
    terminals = []
    for _ in range(7):
        client = app.test_client()
        assert login(client, "qcanalyst").status_code == 302
        terminals.append(client)

    # The right password is sent once THRESHOLD wrong ones have been checked: checked means counted, so it
    # meets a locked account (before the fix it met an unlocked one, the failures not yet counted).
    checked_wrong = threading.Semaphore(0)
    matches = passwords.password_matches

    def watched(password_hash: str, password: str) -> bool:
        result = matches(password_hash, password)
        if not result:
            checked_wrong.release()
        return result

    monkeypatch.setattr(passwords, "password_matches", watched)

    def verify(client: Any, password: str) -> int:
        url = f"/bench/records/{record_id}/verify"
        return client.post(url, data={"username": "supervisor", "password": password}).status_code

    def the_right_one() -> int:
        for _ in range(THRESHOLD):
            assert checked_wrong.acquire(timeout=120)
        return verify(terminals[-1], PASSWORD)

    work = [lambda c=c: verify(c, "wrong-password") for c in terminals[:-1]] + [the_right_one]
    statuses = all_at_once(work)
    assert statuses == [422] * 7

    supervisor = _account(session_factory, "supervisor")
    assert supervisor.locked and supervisor.failed_logins == THRESHOLD
    counted = [e.action for e in _events(session_factory, supervisor, "login_failed", "lockout")]
    assert counted == ["login_failed"] * (THRESHOLD - 1) + ["lockout"]
    with session_factory() as s:
        assert not s.scalars(
            select(Signature)
            .where(Signature.entity_type == "step_record", Signature.entity_id == str(record_id))
            .where(Signature.meaning == "verified")
        ).all()
        record = s.get(StepRecord, record_id)
        assert record is not None and record.status == "awaiting_verification"
        assert audit_service.verify(s).ok


def test_a_step_signed_with_a_wrong_password_is_not_stored_and_the_failure_is_counted(
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
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=THRESHOLD)
    client = app.test_client()
    assert login(client, "coordinator").status_code == 302
    with session_factory() as s:
        events_before = s.scalar(func.max(AuditEvent.id))
    form = {**{f"f.{k}": v for k, v in values.items()}, "password": "wrong-password"}
    response = client.post(f"/bench/batches/{batch_id}/steps/collection.harvest", data=form)
    assert response.status_code == 422
    coordinator = _account(session_factory, "coordinator")
    assert coordinator.failed_logins == 1 and not coordinator.locked
    with session_factory() as s:
        assert not s.scalars(select(StepRecord).where(StepRecord.batch_id == batch_id)).all()
        new_events = s.scalars(select(AuditEvent).where(AuditEvent.id > (events_before or 0))).all()
        assert [e.action for e in new_events] == ["login_failed"]
        assert audit_service.verify(s).ok
