"""Dose orders: the investigator's signed prescription of each injection (visit, level, weight, reason).

Only the ``dose_order`` table; dose preparation builds on it in later revisions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 14:34:32.862681
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mfg.audit.ddl import drop_triggers, never_deleted

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dose_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("injection_number", sa.Integer(), nullable=False),
        sa.Column("protocol_visit", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("window_end", sa.Date(), nullable=False),
        sa.Column("dose_cells", sa.Float(), nullable=False),
        sa.Column("body_weight_kg", sa.Float(), nullable=False),
        sa.Column("change_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("ordered_by_id", sa.Integer(), nullable=False),
        sa.Column("ordered_at", sa.DateTime(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('ordered', 'in_preparation', 'prepared', 'cancelled')",
            name=op.f("ck_dose_order_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["ordered_by_id"], ["user_account.id"], name=op.f("fk_dose_order_ordered_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subject.id"], name=op.f("fk_dose_order_subject_id_subject")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose_order")),
    )
    with op.batch_alter_table("dose_order", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dose_order_subject_id"), ["subject_id"], unique=False)

    # A prescription is cancelled with a reason, never deleted.
    for statement in never_deleted(op.get_bind().dialect.name, "dose_order"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_triggers(op.get_bind().dialect.name, "dose_order"):
        op.execute(statement)
    with op.batch_alter_table("dose_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dose_order_subject_id"))

    op.drop_table("dose_order")
