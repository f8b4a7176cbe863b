"""SQLite refuses REPLACE INTO / INSERT OR REPLACE on the audit trail.

REPLACE deletes the row it conflicts with without firing the DELETE trigger (unless the connection set
recursive_triggers, which a sqlite3 shell does not), so it could rewrite an audit event in place. A BEFORE INSERT
trigger that refuses an id (or hash) already present stops it. PostgreSQL has no REPLACE; its ON CONFLICT DO
UPDATE fires the UPDATE trigger that 0001 installed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 07:40:00
"""

from __future__ import annotations

from alembic import op

from mfg.audit.ddl import refuse_replace

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in refuse_replace(op.get_bind().dialect.name, "audit_event", ("id", "hash")):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_replace")
