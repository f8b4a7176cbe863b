"""A password an administrator chose is for one sign-in only: user_account.password_must_change (issue 8).

An administrator created an account with a password of its own choosing, signed in as it and recorded a
calibration: whoever sets a password could sign as its holder. Accounts an administrator creates now carry this
flag; they sign in only to choose their own password and sign nothing until then. Existing accounts start
without it (false): their holders already sign with passwords of their own.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN keeps the table (and its never-deleted triggers) on SQLite and PostgreSQL alike.
    op.add_column(
        "user_account",
        sa.Column("password_must_change", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL): no batch rebuild, so the triggers stay in place.
    op.drop_column("user_account", "password_must_change")
