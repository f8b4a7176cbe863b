"""Label control: every print and reprint of a label, with who, why and how many.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:29:32.739746
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mfg.audit.ddl import drop_triggers, never_deleted

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_print",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("label_kind", sa.String(length=20), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("reprint", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("printed_by_id", sa.Integer(), nullable=False),
        sa.Column("printed_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "label_kind IN ('container', 'syringe', 'shipper')", name=op.f("ck_label_print_label_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["container_id"], ["container.id"], name=op.f("fk_label_print_container_id_container")
        ),
        sa.ForeignKeyConstraint(
            ["printed_by_id"], ["user_account.id"], name=op.f("fk_label_print_printed_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_print")),
    )
    with op.batch_alter_table("label_print", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_label_print_container_id"), ["container_id"], unique=False)

    for statement in never_deleted(op.get_bind().dialect.name, "label_print"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_triggers(op.get_bind().dialect.name, "label_print"):
        op.execute(statement)
    with op.batch_alter_table("label_print", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_print_container_id"))

    op.drop_table("label_print")
