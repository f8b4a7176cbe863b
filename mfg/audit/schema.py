"""The database's own protection of the trail, checked: the data may verify while the triggers that keep it
append-only are gone, disabled or bypassed, so `mfg audit verify` and `mfg restore` check the schema too.

Each missing, disabled or altered trigger, each trigger or function the migrations did not create, is one
problem. Only the schema's owner (or a superuser) can cause any of them: a restored archive can carry them.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, text

from mfg.audit import ddl

# pg_trigger.tgtype bits (PostgreSQL's include/catalog/pg_trigger.h)
_ROW, _BEFORE = 1 << 0, 1 << 1
_EVENT_BITS = {"INSERT": 1 << 2, "DELETE": 1 << 3, "UPDATE": 1 << 4, "TRUNCATE": 1 << 5}
_INSTEAD = 1 << 6


def problems(connection: Connection) -> list[str]:
    """One sentence per way the schema differs from what the migrations protect; empty when it matches."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return _sqlite_problems(connection)
    if dialect == "postgresql":
        return _postgresql_problems(connection)
    return [f"the schema's protection cannot be checked on {dialect}"]


def _missing(trigger: ddl.ExpectedTrigger) -> str:
    return (
        f"trigger {trigger.name} on {trigger.table} is missing: the database no longer refuses "
        f"{' or '.join(sorted(trigger.events))} on {trigger.table}"
    )


def _sqlite_problems(connection: Connection) -> list[str]:
    expected = ddl.expected_triggers("sqlite")
    actual = {
        name: (table, sql)
        for name, table, sql in connection.execute(
            text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
        )
    }
    found: list[str] = []
    for name, trigger in expected.items():
        if name not in actual:
            found.append(_missing(trigger))
        elif actual[name] != (trigger.table, trigger.sql):
            # SQLite keeps a trigger's CREATE statement verbatim: any other text is another trigger.
            found.append(f"trigger {name} on {actual[name][0]} is not the one the migrations create")
    found.extend(
        f"trigger {name} on {table} is not one the migrations create"
        for name, (table, _sql) in sorted(actual.items())
        if name not in expected
    )
    return found


def _postgresql_problems(connection: Connection) -> list[str]:
    expected = ddl.expected_triggers("postgresql")
    rows = connection.execute(
        text(
            "SELECT t.tgname, c.relname, t.tgenabled, t.tgtype, t.tgqual IS NOT NULL, t.tgattr::text <> '', "
            "p.proname = 'mfg_refuse_change' AND p.pronamespace = n.oid "
            "AND pg_get_function_identity_arguments(p.oid) = '' "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
        )
    ).all()
    actual = {row[0]: row[1:] for row in rows}
    found: list[str] = []
    for name, trigger in expected.items():
        if name not in actual:
            found.append(_missing(trigger))
            continue
        table, enabled, tgtype, has_when, has_columns, our_function = actual[name]
        wanted = _BEFORE | (_ROW if trigger.for_each_row else 0) | sum(_EVENT_BITS[e] for e in trigger.events)
        if table != trigger.table or tgtype != wanted or has_when or has_columns or not our_function:
            found.append(f"trigger {name} on {table} is not the one the migrations create")
        elif enabled not in ("O", "A"):
            # D: disabled; R: fires only under session_replication_role = replica, so not for the application.
            found.append(f"trigger {name} on {table} is disabled")
    found.extend(
        f"trigger {name} on {row[0]} is not one the migrations create"
        for name, row in sorted(actual.items())
        if name not in expected
    )
    found.extend(_postgresql_function_problems(connection))
    found.extend(
        f"rule {name} on {table} is not one the migrations create (it can rewrite or skip writes)"
        for name, table in connection.execute(
            text("SELECT rulename, tablename FROM pg_rules WHERE schemaname = current_schema() ORDER BY 1")
        )
    )
    return found


def _postgresql_function_problems(connection: Connection) -> list[str]:
    """The schema holds one function, mfg_refuse_change, as the migrations wrote it: anything else (above all
    a SECURITY DEFINER function, which runs with its owner's rights) could let the application's role past
    the triggers."""
    body_sha = hashlib.sha256(ddl.pg_function_body().encode()).hexdigest()
    found: list[str] = []
    seen = False
    for name, arguments, security_definer, source in connection.execute(
        text(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosecdef, p.prosrc "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = current_schema() ORDER BY 1, 2"
        )
    ):
        signature = f"{name}({arguments})"
        definer = " and is SECURITY DEFINER (it runs with its owner's rights)" if security_definer else ""
        if name != "mfg_refuse_change" or arguments:
            found.append(f"function {signature} is not one the migrations create{definer}")
            continue
        seen = True
        if security_definer:
            found.append(f"function {signature} is SECURITY DEFINER (it runs with its owner's rights)")
        if hashlib.sha256((source or "").encode()).hexdigest() != body_sha:
            found.append(f"function {signature} does not have the body the migrations create")
    if not seen:
        found.append("function mfg_refuse_change() is missing: the triggers have nothing to call")
    return found
