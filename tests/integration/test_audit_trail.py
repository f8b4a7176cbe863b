"""The audit trail as an inspector would test it: append-only in the database, tamper-evident, unforked."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from mfg.audit import service as audit_service
from mfg.audit.ddl import drop_triggers
from mfg.audit.models import AuditEvent
from mfg.db import make_engine, make_session_factory
from mfg.study.models import Subject
from tests.conftest import World, run_cli


def _event_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one()


def test_enrollment_writes_field_level_events_that_verify(session: Session, subject: Subject) -> None:
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "subject", AuditEvent.entity_id == str(subject.id))
    ).all()
    assert [e.action for e in events] == ["create"]
    assert '"name":[null,"Jordan Example"]' in events[0].changes
    assert audit_service.verify(session).ok


def test_database_refuses_update_of_an_audit_event(engine: Engine, subject: Subject) -> None:
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'someone-else' WHERE id = 1"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_event WHERE id = 1")).scalar_one() == "test-setup"


def test_database_refuses_delete_of_an_audit_event(engine: Engine, subject: Subject) -> None:
    before = _event_count(engine)
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE id = 1"))
    assert _event_count(engine) == before


def test_database_refuses_truncate_of_the_audit_trail(engine: Engine, subject: Subject) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL (SQLite's DELETE is covered above)")
    before = _event_count(engine)
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_event"))
    assert _event_count(engine) == before


COLUMNS = "id, occurred_at, actor, action, entity_type, entity_id, changes, detail, reason, prev_hash, hash"


def test_sqlite_refuses_replace_into_the_audit_trail(
    database_url: str, engine: Engine, subject: Subject
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite's (PostgreSQL's ON CONFLICT DO UPDATE fires the UPDATE trigger)")
    path = engine.url.database
    assert path
    # A plain sqlite3 connection, as a sqlite3 shell would open it: recursive_triggers is off, so REPLACE's
    # delete of the conflicting row would fire no DELETE trigger.
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA recursive_triggers").fetchone() == (0,)
        for statement in (
            f"REPLACE INTO audit_event ({COLUMNS}) SELECT id, occurred_at, 'someone-else', action, "
            "entity_type, entity_id, changes, detail, reason, prev_hash, hash "
            "FROM audit_event WHERE id = 1",
            f"INSERT OR REPLACE INTO audit_event ({COLUMNS}) SELECT 999, occurred_at, 'someone-else', "
            "action, entity_type, entity_id, changes, detail, reason, prev_hash, hash "
            "FROM audit_event WHERE id = 1",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="REPLACE on audit_event is not allowed"):
                conn.execute(statement)
            conn.rollback()
        assert conn.execute("SELECT actor FROM audit_event WHERE id = 1").fetchone() == ("test-setup",)
        assert conn.execute("SELECT count(*) FROM audit_event WHERE id = 999").fetchone() == (0,)
    finally:
        conn.close()


def test_database_refuses_delete_of_a_subject(engine: Engine, subject: Subject) -> None:
    with pytest.raises(DatabaseError, match="not allowed"), engine.begin() as conn:
        conn.execute(text("DELETE FROM subject"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subject")).scalar_one() == 1


def test_verify_cli_reports_an_intact_trail(database_url: str, subject: Subject, engine: Engine) -> None:
    result = run_cli(database_url, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"audit trail intact: {_event_count(engine)} events"


def test_verify_cli_names_a_subject_changed_outside_the_application(
    database_url: str, engine: Engine, subject: Subject
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE subject SET name = 'Someone Else' WHERE id = :id"), {"id": subject.id})
    result = run_cli(database_url, "audit", "verify")
    assert result.returncode == 1
    assert f"table subject row {subject.id}: field name is 'Someone Else'" in result.stdout
    assert "'Jordan Example'" in result.stdout


def test_verify_cli_names_a_removed_audit_event(database_url: str, engine: Engine, subject: Subject) -> None:
    total = _event_count(engine)
    victim = total // 2
    with engine.begin() as conn:
        for statement in drop_triggers(engine.dialect.name, "audit_event"):
            conn.execute(text(statement))
        conn.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": victim})
    result = run_cli(database_url, "audit", "verify")
    assert result.returncode == 1
    assert f"audit event {victim} missing" in result.stdout


def test_verify_names_an_altered_event(engine: Engine, session: Session, subject: Subject) -> None:
    with engine.begin() as conn:
        for statement in drop_triggers(engine.dialect.name, "audit_event"):
            conn.execute(text(statement))
        conn.execute(text("UPDATE audit_event SET reason = 'rewritten' WHERE id = 3"))
    result = audit_service.verify(session)
    assert not result.ok and result.broken_event_id == 3
    assert "audit event 3: its content does not match its hash" in result.problem


def test_verify_names_a_row_inserted_without_a_trail(engine: Engine, session: Session, world: World) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO site (code, name, kind, address, active) "
                "VALUES ('XX', 'Ghost', 'clinical', 'nowhere', :active)"
            ),
            {"active": True},
        )
    result = audit_service.verify(session)
    assert not result.ok
    assert "table site row" in result.problem and "has no audit trail" in result.problem


def _append_events(url: str, writer: str, count: int) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    for n in range(count):
        with factory() as session:
            audit_service.record_event(
                session,
                actor=writer,
                action="note",
                entity_type="test",
                entity_id=f"{writer}-{n}",
                detail={"n": n},
            )
            session.commit()
    engine.dispose()


def test_two_processes_appending_leave_one_unforked_chain(database_url: str, session: Session) -> None:
    """Two writers in separate processes, 500 events each: one chain, every link intact."""
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_events, args=(database_url, f"writer{i}", 500)) for i in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
        assert process.exitcode == 0
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert len(events) == 1000
    assert len({e.prev_hash for e in events}) == 1000  # a fork would reuse a previous hash
    assert {e.actor for e in events} == {"writer1", "writer2"}
    result = audit_service.verify(session)
    assert result.ok, result.problem
    assert result.events == 1000


def test_verify_reads_one_snapshot_and_lets_writers_commit_meanwhile(
    database_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify pauses between reading the trail and reading the tables while a server adds a site: it must
    neither block that writer (SQLite) nor see the site without its events (PostgreSQL)."""
    from mfg.audit import key as audit_key
    from mfg.audit import rules
    from mfg.db import session_scope
    from mfg.study import service as study_service

    paused, resume = threading.Event(), threading.Event()
    real_replay = rules.replay

    def replay_then_pause(*args):  # type: ignore[no-untyped-def]
        state = real_replay(*args)
        paused.set()
        resume.wait(60)
        return state

    monkeypatch.setattr(rules, "replay", replay_then_pause)
    results: list[audit_service.VerifyResult] = []
    verifier = threading.Thread(
        target=lambda: results.append(
            audit_service.verify_database(database_url, key=audit_key.current_key(), checkpoints=())
        )
    )
    verifier.start()
    assert paused.wait(60)

    def write() -> None:
        writer = make_engine(database_url)
        try:
            with session_scope(make_session_factory(writer)) as session:
                study_service.create_site(
                    session, "server", code="NEW", name="New site", kind="clinical", address="Rochester"
                )
        finally:
            writer.dispose()

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=10)
    committed_while_verifying = not writer.is_alive()
    resume.set()
    verifier.join(timeout=60)
    writer.join(timeout=60)
    assert committed_while_verifying, "verify blocked a writer"
    assert results and results[0].ok, results[0].problems if results else "verify did not finish"
