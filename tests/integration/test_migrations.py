"""Alembic: one head, an empty database upgrades, and the models say what the migrations built."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from mfg.cli import alembic_config, upgrade_database
from mfg.db import make_engine
from mfg.models import Base
from tests.conftest import DatabaseServer, run_cli


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
