"""Two database roles (issue 8, item 3; DESIGN §7). The review found that the role serving the application
owned the schema, so it could DISABLE or DROP the audit trail's triggers, replace ``mfg_refuse_change()``,
delete events and re-hash the rest. In production ``mfg init`` runs as the owner (MFG_ADMIN_DATABASE_URL)
and grants the application's role rows only: every one of those attempts is refused by PostgreSQL itself,
and the system still runs its whole reference scenario as that role.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mfg import db_roles
from mfg.db import make_engine
from tests.conftest import DatabaseServer, run_cli

# What the owner of the schema could do to rewrite the trail, and the app role now cannot.
ATTACKS = {
    "disable the triggers": "ALTER TABLE audit_event DISABLE TRIGGER ALL",
    "disable one trigger": "ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only",
    "drop the trigger": "DROP TRIGGER audit_event_append_only ON audit_event",
    "replace the trigger function": (
        "CREATE OR REPLACE FUNCTION mfg_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN OLD; END; $$"
    ),
    "drop the trigger function": "DROP FUNCTION mfg_refuse_change() CASCADE",
    "skip triggers for the session": "SET session_replication_role = replica",
    "update an event": "UPDATE audit_event SET actor = 'someone else' WHERE id = 1",
    "delete an event": "DELETE FROM audit_event WHERE id = (SELECT max(id) FROM audit_event)",
    "truncate the trail": "TRUNCATE audit_event",
    "silence new events with a rule": ("CREATE RULE swallow AS ON INSERT TO audit_event DO INSTEAD NOTHING"),
    "add a trigger to the trail": (
        "CREATE TRIGGER shadow BEFORE INSERT ON audit_event FOR EACH ROW "
        "EXECUTE FUNCTION mfg_refuse_change('blocked')"
    ),
    "delete a GMP row": "DELETE FROM subject",
    "create a table": "CREATE TABLE shadow (id integer)",
    "create a function": (
        "CREATE FUNCTION mfg_shadow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$"
    ),
    "alter a table": "ALTER TABLE subject ADD COLUMN note text",
    "drop the trail": "DROP TABLE audit_event",
    "rename the trail": "ALTER TABLE audit_event RENAME TO audit_event_old",
}


@pytest.fixture
def postgres(db_server: DatabaseServer) -> DatabaseServer:
    if not db_server.is_postgres:
        pytest.skip("database roles are PostgreSQL's: set MFG_TEST_DATABASE_URL to run this test")
    return db_server


def _as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture
def two_roles(postgres: DatabaseServer, tmp_path: Path) -> tuple[str, str]:
    """An empty database set up as the README's production set-up says: (owner URL, application URL). The
    owner is an ordinary role that owns the database, not a superuser."""
    owner_role = postgres.new_role()
    owner_url = _as_role(postgres.new_database(migrated=False), owner_role)
    assert postgres.admin is not None
    with postgres.admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{make_url(owner_url).database}" OWNER TO "{owner_role}"'))
    app_url = _as_role(owner_url, postgres.new_role())
    done = run_cli(app_url, "init", tmp_path=tmp_path, env={"MFG_ADMIN_DATABASE_URL": owner_url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rows only" in done.stdout
    return owner_url, app_url


def _refused(engine: Engine, statement: str) -> str:
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql(statement)
        except DBAPIError as exc:
            return str(exc.orig).splitlines()[0]
        connection.rollback()
    return ""


def _triggers(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass "
                "AND NOT tgisinternal"
            )
        )
        return {name: enabled for name, enabled in rows}


def test_the_application_role_cannot_switch_off_or_rewrite_the_trail(
    two_roles: tuple[str, str], tmp_path: Path
) -> None:
    owner_url, app_url = two_roles
    demo = run_cli(
        app_url,
        "demo",
        "--out",
        str(tmp_path / "labels"),
        tmp_path=tmp_path,
        env={"MFG_ADMIN_DATABASE_URL": owner_url},
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    app, owner = make_engine(app_url), make_engine(owner_url)
    try:
        triggers_before = _triggers(owner)
        assert set(triggers_before) == {"audit_event_append_only", "audit_event_no_truncate"}
        allowed = {what for what, statement in ATTACKS.items() if not _refused(app, statement)}
        assert allowed == set(), f"the application's role could {sorted(allowed)}"
        assert _triggers(owner) == triggers_before  # still there, still enabled
        assert db_roles.excess_rights(app) == []
        assert db_roles.excess_rights(owner)  # the owner is what the app must not be
    finally:
        app.dispose()
        owner.dispose()
    checked = run_cli(app_url, "audit", "verify", tmp_path=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_refusals_name_the_missing_privilege(two_roles: tuple[str, str]) -> None:
    _owner_url, app_url = two_roles
    app = make_engine(app_url)
    try:
        assert "must be owner of table audit_event" in _refused(app, ATTACKS["disable the triggers"])
        assert "permission denied for schema public" in _refused(app, ATTACKS["replace the trigger function"])
        assert "must be owner of function mfg_refuse_change" in _refused(
            app, ATTACKS["drop the trigger function"]
        )
        assert "permission denied for table audit_event" in _refused(app, ATTACKS["update an event"])
    finally:
        app.dispose()


def test_serving_as_the_owner_is_warned_of(postgres: DatabaseServer, database_url: str) -> None:
    # The test databases belong to a superuser: exactly what production must not serve as.
    engine = make_engine(database_url)
    try:
        assert "it is a superuser" in db_roles.excess_rights(engine)
    finally:
        engine.dispose()


def test_init_refuses_a_role_that_does_not_exist(postgres: DatabaseServer, tmp_path: Path) -> None:
    owner_url = postgres.new_database(migrated=False)
    app_url = _as_role(owner_url, "mfg_no_such_role")
    done = run_cli(app_url, "init", tmp_path=tmp_path, env={"MFG_ADMIN_DATABASE_URL": owner_url})
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_init_refuses_urls_of_two_databases(postgres: DatabaseServer, tmp_path: Path) -> None:
    one, other = postgres.new_database(migrated=False), postgres.new_database(migrated=False)
    done = run_cli(one, "init", tmp_path=tmp_path, env={"MFG_ADMIN_DATABASE_URL": other})
    assert done.returncode == 1
    assert "different databases" in done.stderr


def test_grants_give_the_trail_select_and_insert_only() -> None:
    statements = db_roles.grant_statements("app", ["audit_event", "subject", "alembic_version"])
    assert 'GRANT SELECT, INSERT ON TABLE "public"."audit_event" TO "app"' in statements
    assert 'GRANT SELECT, INSERT, UPDATE ON TABLE "public"."subject" TO "app"' in statements
    assert 'GRANT SELECT ON TABLE "public"."alembic_version" TO "app"' in statements
    assert not any("DELETE" in s or "TRUNCATE" in s or "ALL PRIVILEGES" in s for s in statements)
    assert db_roles.quoted('x"; DROP TABLE y; --') == '"x""; DROP TABLE y; --"'


def test_a_restore_grants_the_application_role_rows_only(
    postgres: DatabaseServer, two_roles: tuple[str, str], tmp_path: Path
) -> None:
    """The archive carries no grants: restore, as the owner, grants the application's role again."""
    owner_url, app_url = two_roles
    assert (
        run_cli(
            app_url,
            "demo",
            "--out",
            str(tmp_path / "labels"),
            tmp_path=tmp_path,
            env={"MFG_ADMIN_DATABASE_URL": owner_url},
        ).returncode
        == 0
    )
    archive = tmp_path / "mfg.pgdump"
    made = run_cli(app_url, "backup", "--out", str(archive), tmp_path=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    owner_role = make_url(owner_url).username
    empty = _as_role(postgres.new_database(migrated=False), str(owner_role))
    assert postgres.admin is not None
    with postgres.admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{make_url(empty).database}" OWNER TO "{owner_role}"'))
    restored_app_url = _as_role(empty, str(make_url(app_url).username))
    done = run_cli(
        restored_app_url, "restore", str(archive), tmp_path=tmp_path, env={"MFG_ADMIN_DATABASE_URL": empty}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rows only" in done.stdout
    checked = run_cli(restored_app_url, "audit", "verify", tmp_path=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    app = make_engine(restored_app_url)
    try:
        assert db_roles.excess_rights(app) == []
        assert _refused(app, ATTACKS["disable the triggers"])
    finally:
        app.dispose()
