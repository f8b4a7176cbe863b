"""Keyed audit chain: each event carries the HMAC of its hash under a key kept outside the database.

Events already in the trail keep a NULL hmac: the migration has no key (and must not have one). `mfg init`
appends a keyed "key_introduced" event after them when none of them is keyed, which verify takes as the point
where keyed events begin.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 07:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch rebuild on SQLite): the table and its triggers stay as they are.
    op.add_column("audit_event", sa.Column("hmac", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), again without a rebuild that would lose the triggers.
    op.drop_column("audit_event", "hmac")
