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
