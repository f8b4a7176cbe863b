"""Database-enforced immutability, used by migrations: the trail is append-only, GMP rows are never deleted.

Kept as plain SQL per dialect so a migration states exactly what the database enforces.
"""

from __future__ import annotations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION mfg_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: GMP records are append-only (%)', TG_OP, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def append_only(dialect: str, table: str, why: str = "the audit trail is append-only") -> list[str]:
    """Refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) on ``table``; the database's message ends in ``why``
    (no quote characters)."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'UPDATE on {table} is not allowed: {why}'); "
            "END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'DELETE on {table} is not allowed: {why}'); "
            "END",
        ]
    if dialect == "postgresql":
        return [
            PG_FUNCTION,
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION mfg_refuse_change('{why}')",
            # Row triggers do not fire on TRUNCATE.
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION mfg_refuse_change('{why}')",
        ]
    raise NotImplementedError(f"no append-only triggers for {dialect}")


def never_deleted(dialect: str, table: str) -> list[str]:
    """GMP rows are voided or deactivated by new events, never deleted."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'DELETE on {table} is not allowed: "
            f"GMP records are voided, not deleted'); END",
        ]
    if dialect == "postgresql":
        return [
            PG_FUNCTION,
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION mfg_refuse_change('GMP records are voided, not deleted')",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION mfg_refuse_change('GMP records are voided, not deleted')",
        ]
    raise NotImplementedError(f"no delete triggers for {dialect}")


def refuse_replace(
    dialect: str,
    table: str,
    unique_columns: tuple[str, ...] = ("id",),
    why: str = "the audit trail is append-only",
) -> list[str]:
    """SQLite's ``REPLACE INTO`` / ``INSERT OR REPLACE`` deletes the row it conflicts with without firing
    DELETE triggers (unless the connection turned on ``recursive_triggers``, which a sqlite3 shell does not).
    A BEFORE INSERT trigger runs before that conflict is resolved: it refuses an insert that would replace.
    PostgreSQL has no REPLACE, and its ``ON CONFLICT DO UPDATE`` fires the UPDATE trigger."""
    if dialect != "sqlite":
        return []
    clash = " OR ".join(f"{column} = NEW.{column}" for column in unique_columns)
    return [
        f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {clash}) "
        f"BEGIN SELECT RAISE(ABORT, 'REPLACE on {table} is not allowed: {why}'); "
        "END",
    ]


def drop_triggers(dialect: str, table: str) -> list[str]:
    names = [
        f"{table}_no_update",
        f"{table}_no_delete",
        f"{table}_append_only",
        f"{table}_no_truncate",
        f"{table}_no_replace",
    ]
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in names]
    return [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name in names]
