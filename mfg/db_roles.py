"""Two database roles in production (DESIGN §7): the schema's owner migrates; the application only reads and
writes rows.

PostgreSQL lets only a table's owner (or a superuser) ALTER it, DISABLE or DROP its triggers, and only a
function's owner replace it. So when the application connects as a role that owns nothing, has no CREATE on
the schema and holds only SELECT and INSERT on the audit trail, nothing it can do (or anyone who steals its
password) can switch off the append-only triggers or rewrite the chain. ``mfg init`` runs as the owner
(MFG_ADMIN_DATABASE_URL) and grants the application's role (the user of MFG_DATABASE_URL) exactly this.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, make_url, text

from mfg.db import normalise_url

# Rows here are only ever added: the chain and its signatures' evidence.
INSERT_ONLY_TABLES = frozenset({"audit_event"})
# The application reads the migration revision (is the database current?) and never writes it.
READ_ONLY_TABLES = frozenset({"alembic_version"})


def role_of(url: str) -> str | None:
    return make_url(url).username


def same_database(one: str, other: str) -> bool:
    """Two URLs for one database (the roles may differ)."""
    a, b = make_url(normalise_url(one)), make_url(normalise_url(other))
    return (a.drivername, a.host, a.port, a.database) == (b.drivername, b.host, b.port, b.database)


def quoted(name: str) -> str:
    """A PostgreSQL identifier, quoted whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


def _tables(connection: Connection) -> list[str]:
    return list(
        connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        ).scalars()
    )


def grant_statements(role_name: str, tables: list[str], schema_name: str = "public") -> list[str]:
    """What the application's role may do: read every table, add rows, update the rows that are state (a
    batch's status, an account's failed logins); never delete, truncate, alter, or touch the trail's rows."""
    role, schema = quoted(role_name), quoted(schema_name)
    statements = [
        # PostgreSQL before 15 lets everyone create objects in the public schema.
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        # USAGE draws the next id; no UPDATE, so setval cannot rewind the trail's ids.
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
    ]
    for table in tables:
        if table in READ_ONLY_TABLES:
            rights = "SELECT"
        elif table in INSERT_ONLY_TABLES:
            rights = "SELECT, INSERT"
        else:
            rights = "SELECT, INSERT, UPDATE"
        statements.append(f"GRANT {rights} ON TABLE {schema}.{quoted(table)} TO {role}")
    return statements


def grant_application_role(owner: Engine, role: str) -> None:
    """Give ``role`` the application's rights on the owner's schema (after every migration: new tables)."""
    with owner.begin() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if exists is None:
            raise LookupError(
                f"the database role {role!r} (the user of MFG_DATABASE_URL) does not exist: "
                "create it first (README: production set-up)"
            )
        schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        for statement in grant_statements(role, _tables(connection), schema):
            connection.exec_driver_sql(statement)


def excess_rights(engine: Engine) -> list[str]:
    """Why the application's connection could rewrite the trail, if it could: it is a superuser, it owns
    tables (and so their triggers), or it may create objects in the schema. Empty means the two roles are
    set up as DESIGN §7 asks."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT r.rolsuper, r.rolbypassrls, "
                "has_schema_privilege(current_user, current_schema(), 'CREATE'), "
                "(SELECT count(*) FROM pg_tables t WHERE t.schemaname = current_schema() "
                " AND t.tableowner = current_user), "
                "has_table_privilege(current_user, 'audit_event', 'UPDATE, DELETE, TRUNCATE') "
                "FROM pg_roles r WHERE r.rolname = current_user"
            )
        ).one()
    superuser, bypass_rls, can_create, owned, can_change_trail = row
    reasons = []
    if superuser or bypass_rls:
        reasons.append("it is a superuser")
    if owned:
        reasons.append(f"it owns {owned} tables (and can disable their triggers)")
    if can_create:
        reasons.append("it may create objects in the schema")
    if can_change_trail:
        reasons.append("it may update, delete or truncate the audit trail")
    return reasons
