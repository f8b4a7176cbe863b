"""Alembic: one head, an empty database upgrades, and the models say what the migrations built."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from mfg.cli import alembic_config, upgrade_database
from mfg.db import make_engine
from mfg.models import Base
from mfg.study.models import Subject
from tests.conftest import DatabaseServer, World, run_cli


def test_there_is_exactly_one_head(database_url: str) -> None:
    assert len(ScriptDirectory.from_config(alembic_config(database_url)).get_heads()) == 1


def test_upgrade_from_an_empty_database_creates_every_table(db_server: DatabaseServer) -> None:
    url = db_server.new_database(migrated=False)
    try:
        upgrade_database(url)
        engine = make_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert set(Base.metadata.tables) <= tables
    finally:
        db_server.drop(url)


def test_models_match_the_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_init_is_idempotent(database_url: str) -> None:
    for _ in range(2):
        result = run_cli(database_url, "init")
        assert result.returncode == 0, result.stderr
        assert "database ready" in result.stdout


def test_downgrade_to_base_and_upgrade_again(db_server: DatabaseServer) -> None:
    from alembic import command

    url = db_server.new_database(migrated=False)
    try:
        upgrade_database(url)
        command.downgrade(alembic_config(url), "base")
        upgrade_database(url)
        engine = make_engine(url)
        try:
            assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    finally:
        db_server.drop(url)


def test_tables_rebuilt_by_later_migrations_still_refuse_deletes(
    engine: Engine, session: Session, world: World, subject: Subject, bench: object
) -> None:
    # 0005 rebuilds `batch` on SQLite (batch mode); its delete trigger must come back with it.
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    from mfg.process import batches
    from mfg.study.definition import load_study

    batches.start_batch(session, world.users["coordinator"], subject, load_study())
    session.commit()
    for table in ("batch", "audit_event", "subject", "mbr_version"):
        with pytest.raises(DatabaseError, match="not allowed"), engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))


def test_an_account_older_than_a_users_column_still_verifies_after_the_upgrade(
    db_server: DatabaseServer,
) -> None:
    """Migrations added user_account columns with a server default (0008 session_version, 0011
    password_must_change): an account created before them has a trail that never names them. It verifies after
    the upgrade, and after it signs in and out (the first event naming session_version says it was the
    migration's 0); its holder chose its password long ago, so it is no one-time password."""
    import sqlalchemy as sa
    from alembic import command

    from mfg import clock
    from mfg.audit import rules
    from mfg.audit import service as audit_service
    from mfg.db import UTCDateTime, make_session_factory, session_scope
    from mfg.identity import passwords
    from mfg.identity import service as identity_service
    from tests.conftest import PASSWORD

    url = db_server.new_database(migrated=False)
    engine = None
    try:
        command.upgrade(alembic_config(url), "0007")
        engine = make_engine(url)
        # user_account as release 0007 knew it, and the row and event its create_user wrote
        old_table = sa.table(
            "user_account",
            *(sa.column(name) for name in ("username", "full_name", "role", "password_hash")),
            *(sa.column(name) for name in ("active", "failed_logins", "locked", "last_login_at")),
            sa.column("created_at", UTCDateTime()),
        )
        values = {
            "username": "veteran",
            "full_name": "Vera Veteran",
            "role": "qa",
            "password_hash": passwords.hash_password(PASSWORD),
            "active": True,
            "failed_logins": 0,
            "locked": False,
            "last_login_at": None,
            "created_at": clock.now(),
        }
        with session_scope(make_session_factory(engine)) as s:
            s.execute(sa.insert(old_table).values(**values))
            user_id = s.scalar(sa.text("SELECT id FROM user_account WHERE username = 'veteran'"))
            trail = {name: rules.audit_value(value) for name, value in values.items()}
            trail["password_hash"] = rules.redact(values["password_hash"])
            audit_service.record_event(
                s,
                actor="release-0007",
                action="create",
                entity_type="user_account",
                entity_id=str(user_id),
                changes={name: [None, value] for name, value in {"id": user_id, **trail}.items()},
            )

        upgrade_database(url)
        factory = make_session_factory(engine)
        with factory() as s:
            verdict = audit_service.verify(s)
            assert verdict.ok, verdict.problems
        with session_scope(factory) as s:
            user = identity_service.authenticate(s, "veteran", PASSWORD)
            assert (user.session_version, user.password_must_change) == (0, False)
            identity_service.end_sessions(s, user, action="logout", reason="signed out")
        with factory() as s:
            verdict = audit_service.verify(s)
            assert verdict.ok, verdict.problems
    finally:
        if engine is not None:
            engine.dispose()
        db_server.drop(url)
