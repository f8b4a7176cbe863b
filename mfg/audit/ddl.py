"""Database-enforced immutability, used by migrations: the trail is append-only, GMP rows are never deleted.

Kept as plain SQL per dialect so a migration states exactly what the database enforces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# --- what the migrations leave in place, for `mfg audit verify` and `mfg restore` to check -------------

# Every table the migrations protect, and how (append-only: reason, the columns REPLACE would clash on).
# tests/integration/test_audit_schema.py migrates a new database and fails if its triggers differ from these.
APPEND_ONLY_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "audit_event": ("the audit trail is append-only", ("id", "hash")),
    "equipment_calibration": ("calibration records are append-only", ("id",)),
}
NEVER_DELETED_TABLES: tuple[str, ...] = (
    # 0001
    "user_account",
    "signature",
    "site",
    "subject",
    "container",
    "container_parent",
    "din_sequence",
    # 0002
    "mbr_version",
    "workstation",
    "batch",
    "step_record",
    "field_value",
    "deviation",
    "line_clearance",
    "reagent_lot",
    "equipment",
    "material_use",
    "equipment_use",
    # 0003 .. 0005
    "label_print",
    "dose_order",
    "final_product",
)


def protection(dialect: str) -> list[str]:
    """Every statement that protects the schema at the latest migration (the function once, then triggers)."""
    statements: list[str] = []
    for table, (why, unique_columns) in APPEND_ONLY_TABLES.items():
        statements += append_only(dialect, table, why) + refuse_replace(dialect, table, unique_columns, why)
    for table in NEVER_DELETED_TABLES:
        statements += never_deleted(dialect, table)
    return list(dict.fromkeys(statements))


@dataclass(frozen=True)
class ExpectedTrigger:
    name: str
    table: str
    sql: str  # as created: SQLite keeps this text verbatim
    events: frozenset[str]  # INSERT, UPDATE, DELETE, TRUNCATE
    for_each_row: bool


_CREATE_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) BEFORE ([A-Z ]+?) ON (\w+) ")


def expected_triggers(dialect: str) -> dict[str, ExpectedTrigger]:
    """The triggers :func:`protection` creates, by name: derived from the same statements, so the check cannot
    drift from what the migrations run."""
    found: dict[str, ExpectedTrigger] = {}
    for statement in protection(dialect):
        match = _CREATE_TRIGGER.match(statement)
        if match is None:
            continue  # the PostgreSQL function
        name, events, table = match.groups()
        found[name] = ExpectedTrigger(
            name=name,
            table=table,
            sql=statement,
            events=frozenset(events.split(" OR ")),
            for_each_row=dialect == "sqlite" or "FOR EACH ROW" in statement,
        )
    return found


def pg_function_body() -> str:
    """``prosrc`` of the one function the migrations create: the text between its dollar quotes."""
    return PG_FUNCTION.split("$$")[1]
