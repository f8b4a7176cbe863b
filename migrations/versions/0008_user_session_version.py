"""Sessions end on the server: user_account.session_version (issue 8, sessions and login).

The signed cookie carries the version it was issued with; logout, idle sign-out, deactivation, lock and unlock
raise it, so a cookie copied before any of these no longer signs anyone in. Existing accounts start at 0.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 07:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN keeps the table (and its never-deleted triggers) on SQLite and PostgreSQL alike.
    op.add_column(
        "user_account",
        sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL): no batch rebuild, so the triggers stay in place.
    op.drop_column("user_account", "session_version")
