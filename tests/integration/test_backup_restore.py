"""Issue 8, item 8: `mfg backup --out FILE` and `mfg restore FILE` into an empty database.

A restore is verified as `mfg audit verify` verifies (chain, HMACs, checkpoints): a restored chain that
does not hold the checkpoints kept outside the database fails, and one that holds them says whether its head
is the last checkpoint's or extends it. Runs on SQLite and, with MFG_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from mfg.audit import ddl
from mfg.audit import service as audit_service
from mfg.audit.ddl import drop_triggers
from mfg.cli import alembic_config
from mfg.db import make_engine, make_session_factory, session_scope
from mfg.demo import seed_demo
from mfg.study import service as study_service
from mfg.study.models import Site
from tests.conftest import DatabaseServer, require_tool, run_cli

# --- helpers --------------------------------------------------------------------------------------------


@pytest.fixture
def seeded(database_url: str, session: Session, db_server: DatabaseServer) -> str:
    """The demo data (what `mfg serve --demo` seeds) in this test's database."""
    if db_server.is_postgres:
        require_tool("pg_dump", "backs up PostgreSQL")
        require_tool("pg_restore", "restores PostgreSQL backups")
    seed_demo(session, "test-setup")
    session.commit()
    return database_url


@pytest.fixture
def empty_database(db_server: DatabaseServer) -> Iterator[Callable[[], str]]:
    """New empty databases (no tables): what a restore goes into."""
    made: list[str] = []

    def make() -> str:
        made.append(db_server.new_database(migrated=False))
        return made[-1]

    yield make
    for url in made:
        db_server.drop(url)


def _cli(url: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Each test keeps its own checkpoint file: the run's default one is shared by every test.
    return run_cli(url, *args, env={"MFG_CHECKPOINT_FILE": str(tmp_path / "checkpoints.jsonl"), **env})


@dataclass(frozen=True)
class Backup:
    path: Path
    sha256: str
    head_id: int
    head_hash: str


def _backup(url: str, tmp_path: Path, name: str = "backup") -> Backup:
    out = tmp_path / name
    result = _cli(url, tmp_path, "backup", "--out", str(out))
    assert result.returncode == 0, result.stderr
    digest = re.search(r"^sha256 ([0-9a-f]{64})$", result.stdout, re.M)
    head = re.search(r"^chain head: audit event (\d+) hash ([0-9a-f]{64})$", result.stdout, re.M)
    assert digest and head, result.stdout
    return Backup(out, digest[1], int(head[1]), head[2])


def _checkpoint(url: str, tmp_path: Path) -> None:
    result = _cli(url, tmp_path, "audit", "checkpoint")
    assert result.returncode == 0, result.stderr


def _refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 1 with one line on stderr, no stack trace."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def _contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    engine = make_engine(url, begin="deferred")
    try:
        with engine.connect() as conn:
            return {
                table: sorted(
                    (tuple(row) for row in conn.execute(text(f'SELECT * FROM "{table}"'))), key=repr
                )
                for table in inspect(conn).get_table_names()
            }
    finally:
        engine.dispose()


def _head(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT max(id) FROM audit_event")).scalar_one())


def _rename(session: Session, site_code: str, name: str) -> None:
    site = session.scalars(select(Site).where(Site.code == site_code)).one()
    audit_service.update(session, "test-setup", site, reason="renamed", name=name)
    session.commit()


# --- the round trip -------------------------------------------------------------------------------------


def test_a_backup_restores_into_an_empty_database_and_matches_its_checkpoint(
    seeded: str, engine: Engine, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    _checkpoint(seeded, tmp_path)
    backup = _backup(seeded, tmp_path)
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert backup.sha256 == hashlib.sha256(backup.path.read_bytes()).hexdigest()
    with engine.connect() as conn:
        head = conn.execute(text("SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1")).one()
    assert (backup.head_id, backup.head_hash) == tuple(head)

    target = empty_database()
    # Into the schema owner's database when it is named; MFG_DATABASE_URL names the (full) source.
    result = _cli(seeded, tmp_path, "restore", str(backup.path), MFG_ADMIN_DATABASE_URL=target)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"restored {backup.path} (sha256 {backup.sha256}) into ")
    assert f"the chain's head, audit event {head.id}, matches the last checkpoint (" in result.stdout
    assert lines[-1] == f"audit trail intact: {head.id} events"

    # Every row of every table, the audit trail and alembic_version included, is the source's.
    restored = _contents(target)
    assert restored == _contents(seeded)
    assert len(restored["audit_event"]) == head.id and restored["subject"]
    # The database's own guard came back with it: the trail refuses changes.
    restored_engine = make_engine(target)
    try:
        with pytest.raises(Exception, match="not allowed"), restored_engine.begin() as conn:
            conn.execute(text("UPDATE audit_event SET reason = 'x' WHERE id = 1"))
    finally:
        restored_engine.dispose()


def test_restore_refuses_a_database_that_is_not_empty_or_a_missing_key_and_changes_nothing(
    seeded: str, db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    backup = _backup(seeded, tmp_path)
    # Without the key the restore could not be verified: refused before anything is written.
    target = empty_database()
    missing_key = tmp_path / "no-key"
    _refused(
        _cli(target, tmp_path, "restore", str(backup.path), MFG_AUDIT_KEY_FILE=str(missing_key)),
        f"no audit key at {missing_key}",
    )
    assert _contents(target) == {}

    migrated = db_server.new_database()  # tables, no rows
    try:
        for target in (migrated, seeded):
            before = _contents(target)
            _refused(
                _cli(target, tmp_path, "restore", str(backup.path)),
                "the target database is not empty (",
            )
            assert _contents(target) == before
    finally:
        db_server.drop(migrated)


# --- consistency while the servers write ----------------------------------------------------------------


def _keep_renaming(url: str, site_id: int, stop: threading.Event) -> int:
    """What a server does: one GMP change and its event per transaction, until told to stop."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    written = 0
    try:
        while not stop.is_set():
            with session_scope(factory) as session:
                site = session.get(Site, site_id)
                audit_service.update(session, "writer", site, reason="renamed", name=f"Site {written}")
            written += 1
    finally:
        engine.dispose()
    return written


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_a_backup_taken_while_a_server_writes_is_consistent(
    seeded: str, engine: Engine, session: Session, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    site_id = session.scalars(select(Site.id).where(Site.code == "RST")).one()
    session.rollback()
    start = _head(engine)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        writer = pool.submit(_keep_renaming, seeded, site_id, stop)
        try:
            _wait_until(lambda: _head(engine) >= start + 10, "the writer is under way")
            before = _head(engine)
            backup = _backup(seeded, tmp_path)
            after = _head(engine)
            _wait_until(lambda: _head(engine) > after, "the writer wrote after the backup")
        finally:
            stop.set()
        assert writer.result() > 0
    # The writer wrote before, during and after the backup's snapshot.
    assert before < backup.head_id < _head(engine), (before, backup.head_id, _head(engine))

    target = empty_database()
    result = _cli(target, tmp_path, "restore", str(backup.path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"audit trail intact: {backup.head_id} events"
    # Every rename up to the backup's head is in it, the row and its event alike.
    restored = make_engine(target, begin="deferred")
    try:
        with restored.connect() as conn:
            name = conn.execute(text("SELECT name FROM site WHERE id = :id"), {"id": site_id}).scalar_one()
            assert _head(restored) == backup.head_id
    finally:
        restored.dispose()
    assert name == f"Site {backup.head_id - start - 1}"


# --- what a restore finds -------------------------------------------------------------------------------


def _tamper(execute: Callable[[str], object], dialect: str) -> None:
    """Rewrite event 3 and cut the chain's head, as the schema's owner can once the triggers are gone."""
    for statement in drop_triggers(dialect, "audit_event"):
        execute(statement)
    execute("UPDATE audit_event SET reason = 'rewritten' WHERE id = 3")
    execute("DELETE FROM audit_event WHERE id = (SELECT max(id) FROM audit_event)")


def test_a_tampered_backup_restores_as_broken_and_exits_1(
    seeded: str, db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    _checkpoint(seeded, tmp_path)
    if db_server.is_postgres:
        # A custom-format archive is compressed: tamper with what it is made of.
        engine = make_engine(seeded)
        try:
            with engine.begin() as conn:
                _tamper(lambda sql: conn.execute(text(sql)), "postgresql")
        finally:
            engine.dispose()
        backup = _backup(seeded, tmp_path)
    else:
        backup = _backup(seeded, tmp_path)
        with sqlite3.connect(backup.path) as conn:
            _tamper(conn.execute, "sqlite")
        conn.close()
    head = backup.head_id if db_server.is_postgres else backup.head_id - 1

    result = _cli(empty_database(), tmp_path, "restore", str(backup.path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("audit trail BROKEN: ") for line in lines), lines
    assert "  audit event 3: its content does not match its hash (altered)" in lines
    assert any(
        f"names audit event {head + 1}, but the trail ends at event {head}: truncated" in line
        for line in lines
    ), lines


def test_a_backup_without_its_triggers_restores_as_broken_and_exits_1(
    seeded: str, db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    """The data verifies; the schema no longer protects it (and PostgreSQL: offers the app a way round)."""
    dialect = "postgresql" if db_server.is_postgres else "sqlite"
    expected = ddl.expected_triggers(dialect)
    tables = sorted({trigger.table for trigger in expected.values()})
    _checkpoint(seeded, tmp_path)
    if db_server.is_postgres:
        engine = make_engine(seeded)
        try:
            with engine.begin() as conn:
                for table in tables:
                    for statement in drop_triggers(dialect, table):
                        conn.execute(text(statement))
                conn.execute(
                    text(
                        "CREATE FUNCTION mfg_maintenance(q text) RETURNS void LANGUAGE plpgsql "
                        "SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$"
                    )
                )
        finally:
            engine.dispose()
        backup = _backup(seeded, tmp_path)
    else:
        backup = _backup(seeded, tmp_path)
        with sqlite3.connect(backup.path) as conn:
            for table in tables:
                for statement in drop_triggers(dialect, table):
                    conn.execute(statement)
        conn.close()

    result = _cli(empty_database(), tmp_path, "restore", str(backup.path))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    extra = 1 if db_server.is_postgres else 0
    assert f"audit trail BROKEN: {len(expected) + extra} problems" in lines, lines
    assert any(
        line.startswith("  trigger audit_event_no_delete on audit_event is missing") for line in lines
    ) or any(
        line.startswith("  trigger audit_event_append_only on audit_event is missing") for line in lines
    ), lines
    if db_server.is_postgres:
        assert any(line.startswith("  function mfg_maintenance(q text) is not one") for line in lines), lines


def test_a_backup_of_an_extended_chain_holds_its_checkpoint_and_an_older_one_is_found_short(
    seeded: str, engine: Engine, session: Session, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    _checkpoint(seeded, tmp_path)
    anchored = _head(engine)
    _rename(session, "RST", "Rochester, renamed once")
    _rename(session, "RST", "Rochester, renamed twice")
    extended = _backup(seeded, tmp_path, "extended")
    assert extended.head_id == anchored + 2

    result = _cli(empty_database(), tmp_path, "restore", str(extended.path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"the chain extends the last checkpoint (audit event {anchored}, " in result.stdout
    assert "by 2 events" in result.stdout

    # Once a later head is anchored, the older backup lacks what the checkpoint remembers.
    _rename(session, "RST", "Rochester, renamed thrice")
    _checkpoint(seeded, tmp_path)
    result = _cli(empty_database(), tmp_path, "restore", str(extended.path))
    assert result.returncode == 1
    assert (
        f"names audit event {anchored + 3}, but the trail ends at event {anchored + 2}: truncated"
        in result.stdout
    )


def test_a_backup_from_an_earlier_release_is_upgraded_then_verified(
    db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    if db_server.is_postgres:
        require_tool("pg_dump", "backs up PostgreSQL")
        require_tool("pg_restore", "restores PostgreSQL backups")
    old = empty_database()
    command.upgrade(alembic_config(old), "0007")
    engine = make_engine(old)
    try:
        with session_scope(make_session_factory(engine)) as session:
            study_service.create_site(
                session, "old-release", code="OLD", name="Old site", kind="clinical", address="Rochester"
            )
    finally:
        engine.dispose()
    backup = _backup(old, tmp_path)

    result = _cli(empty_database(), tmp_path, "restore", str(backup.path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upgraded to the latest migration (the backup was made by an earlier release)" in result.stdout
    assert result.stdout.splitlines()[-1] == f"audit trail intact: {backup.head_id} events"


# --- refusals -------------------------------------------------------------------------------------------


def test_restore_refuses_a_file_of_the_wrong_kind(
    db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "a.sqlite3") as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    (tmp_path / "a.pgdump").write_bytes(b"PGDMP" + bytes(200))
    (tmp_path / "notes.txt").write_text("not a backup\n")
    other, target_name = ("a.sqlite3", "PostgreSQL") if db_server.is_postgres else ("a.pgdump", "SQLite")
    target = empty_database()

    kind = "a SQLite database" if other == "a.sqlite3" else "a PostgreSQL (pg_dump custom format) archive"
    _refused(
        _cli(target, tmp_path, "restore", str(tmp_path / other)),
        f"{tmp_path / other} is {kind}, but the target database is {target_name}",
    )
    _refused(
        _cli(target, tmp_path, "restore", str(tmp_path / "notes.txt")), "is neither a SQLite database nor"
    )
    _refused(
        _cli(target, tmp_path, "restore", str(tmp_path / "none")), f"no backup file at {tmp_path / 'none'}"
    )
    # The right kind, damaged: the tool's complaint in one line, and the target still empty.
    damaged = tmp_path / "damaged"
    if db_server.is_postgres:
        require_tool("pg_restore", "restores PostgreSQL backups")
        damaged.write_bytes(b"PGDMP" + b"garbage" * 100)
        _refused(_cli(target, tmp_path, "restore", str(damaged)), "pg_restore failed: ")
    else:
        damaged.write_bytes(b"SQLite format 3\x00" + b"garbage" * 100)
        _refused(_cli(target, tmp_path, "restore", str(damaged)), "file is not a database")
    assert _contents(target) == {}


def test_backup_never_overwrites_a_file(seeded: str, tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.write_text("yesterday's backup")
    _refused(
        _cli(seeded, tmp_path, "backup", "--out", str(existing)),
        f"{existing} already exists: a backup never overwrites a file",
    )
    assert existing.read_text() == "yesterday's backup"
    missing_folder = tmp_path / "no-such-folder" / "backup"
    _refused(
        _cli(seeded, tmp_path, "backup", "--out", str(missing_folder)), f"cannot create {missing_folder}"
    )


def test_backup_of_a_missing_or_uninitialised_database_is_refused(
    db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    if not db_server.is_postgres:
        missing = tmp_path / "missing.sqlite3"
        _refused(
            _cli(f"sqlite:///{missing}", tmp_path, "backup", "--out", str(tmp_path / "b")),
            f"no database file at {missing}",
        )
        assert not missing.exists()
    # What MFG_DATABASE_URL names before `mfg init` (the instance folder's SQLite file starts empty).
    uninitialised = empty_database()
    if not db_server.is_postgres:
        (tmp_path / "empty.sqlite3").touch()
        uninitialised = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    _refused(
        _cli(uninitialised, tmp_path, "backup", "--out", str(tmp_path / "b")),
        "the database has no audit trail",
    )
    assert not (tmp_path / "b").exists()


def test_without_the_postgresql_tools_backup_and_restore_say_so(
    database_url: str, db_server: DatabaseServer, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    if not db_server.is_postgres:
        pytest.skip("only PostgreSQL needs pg_dump and pg_restore")
    no_tools = {"PATH": str(tmp_path / "empty-bin")}
    out = tmp_path / "backup"
    _refused(
        _cli(database_url, tmp_path, "backup", "--out", str(out), **no_tools), "pg_dump is not installed"
    )
    assert not out.exists()
    out.write_bytes(b"PGDMP" + bytes(100))
    _refused(_cli(empty_database(), tmp_path, "restore", str(out), **no_tools), "pg_restore is not installed")


def test_the_password_reaches_the_postgresql_tools_in_their_environment_not_their_command_line() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from mfg.backup import _libpq

    conninfo, env = _libpq("postgresql://mfg_owner:s3cr%40t@db.example:6543/mfg?sslmode=require")
    assert "s3cr" not in conninfo and env["PGPASSWORD"] == "s3cr@t"
    assert conninfo_to_dict(conninfo) == {
        "host": "db.example",
        "port": "6543",
        "user": "mfg_owner",
        "dbname": "mfg",
        "sslmode": "require",
    }
