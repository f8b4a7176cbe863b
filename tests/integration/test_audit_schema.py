"""The schema's protection of the trail is part of what `mfg audit verify` and `mfg restore` check: data that
verifies is not enough when the triggers that keep it append-only are gone, disabled or bypassed.

Runs on SQLite and, with MFG_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from mfg.audit import ddl
from mfg.audit import schema as audit_schema
from mfg.study.models import Subject
from tests.conftest import run_cli

MALICIOUS = (
    "CREATE FUNCTION mfg_maintenance(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
    "AS $$ BEGIN EXECUTE q; END $$"
)


def _triggers(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(
                text(
                    "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
                )
            )
        return dict(rows.all())


def test_the_migrations_create_exactly_the_triggers_the_check_expects(engine: Engine) -> None:
    """A migration that protects a new table (or stops protecting one) must update ddl's table lists."""
    expected = ddl.expected_triggers(engine.dialect.name)
    assert _triggers(engine) == {name: trigger.table for name, trigger in expected.items()}
    with engine.connect() as conn:
        assert audit_schema.problems(conn) == []


def _verify(database_url: str, tmp_path: Path) -> tuple[int, list[str]]:
    result = run_cli(database_url, "audit", "verify", env={"MFG_CHECKPOINT_FILE": str(tmp_path / "cp")})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


def test_every_missing_trigger_is_one_problem(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    expected = ddl.expected_triggers(engine.dialect.name)
    tables = {trigger.table for trigger in expected.values()}
    with engine.begin() as conn:
        for table in sorted(tables):
            for statement in ddl.drop_triggers(engine.dialect.name, table):
                conn.execute(text(statement))
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert f"audit trail BROKEN: {len(expected)} problems" in lines
    for name, trigger in expected.items():
        assert any(line.startswith(f"  trigger {name} on {trigger.table} is missing") for line in lines), name


def test_an_altered_trigger_is_found(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    dialect = engine.dialect.name
    with engine.begin() as conn:
        if dialect == "sqlite":
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
            conn.execute(
                text(
                    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event WHEN 0 "
                    "BEGIN SELECT RAISE(ABORT, 'no'); END"
                )
            )
            altered = "audit_event_no_delete"
        else:
            conn.execute(text("DROP TRIGGER audit_event_append_only ON audit_event"))
            conn.execute(
                text(
                    "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
                    "FOR EACH ROW WHEN (false) EXECUTE FUNCTION mfg_refuse_change('x')"
                )
            )
            altered = "audit_event_append_only"
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert f"  trigger {altered} on audit_event is not the one the migrations create" in lines


def test_postgresql_disabled_triggers_and_foreign_functions_are_found(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite triggers cannot be disabled, and it has no functions")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        conn.execute(text("ALTER TABLE site ENABLE REPLICA TRIGGER site_no_delete"))
        conn.execute(text(MALICIOUS))
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION mfg_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RETURN OLD; END $$"
            )
        )
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert "audit trail BROKEN: 4 problems" in lines, lines
    assert "  trigger audit_event_append_only on audit_event is disabled" in lines
    assert "  trigger site_no_delete on site is disabled" in lines
    assert (
        "  function mfg_maintenance(q text) is not one the migrations create and is SECURITY DEFINER "
        "(it runs with its owner's rights)"
    ) in lines
    assert "  function mfg_refuse_change() does not have the body the migrations create" in lines
