"""Dose preparation: dose batches (same DIN, own division) and the final product.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 14:36:19.168708
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mfg.audit.ddl import drop_triggers, never_deleted

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "final_product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("dose_order_id", sa.Integer(), nullable=False),
        sa.Column("syringe_id", sa.Integer(), nullable=False),
        sa.Column("din", sa.String(length=16), nullable=False),
        sa.Column("product_code", sa.String(length=10), nullable=False),
        sa.Column("formulated_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("prescribed_cells", sa.Float(), nullable=False),
        sa.Column("expected_cells", sa.Float(), nullable=False),
        sa.Column("final_volume_ml", sa.Float(), nullable=False),
        sa.Column("delivered_cells", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("block_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('awaiting_count', 'blocked', 'awaiting_release')",
            name=op.f("ck_final_product_status_known"),
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=op.f("fk_final_product_batch_id_batch")),
        sa.ForeignKeyConstraint(
            ["dose_order_id"], ["dose_order.id"], name=op.f("fk_final_product_dose_order_id_dose_order")
        ),
        sa.ForeignKeyConstraint(
            ["syringe_id"], ["container.id"], name=op.f("fk_final_product_syringe_id_container")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_final_product")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_final_product_batch_id")),
        sa.UniqueConstraint("dose_order_id", name=op.f("uq_final_product_dose_order_id")),
        sa.UniqueConstraint("syringe_id", name=op.f("uq_final_product_syringe_id")),
    )
    with op.batch_alter_table("batch", schema=None) as batch_op:
        # existing batches are collection batches: division 00
        batch_op.add_column(sa.Column("division", sa.String(length=2), nullable=False, server_default="00"))
        batch_op.add_column(sa.Column("dose_order_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_batch_din"), type_="unique")
        batch_op.create_index(batch_op.f("ix_batch_din"), ["din"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_batch_din_division"), ["din", "division"])
        batch_op.create_unique_constraint(batch_op.f("uq_batch_dose_order_id"), ["dose_order_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_batch_dose_order_id_dose_order"), "dose_order", ["dose_order_id"], ["id"]
        )
        batch_op.drop_constraint(batch_op.f("ck_batch_status_known"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_batch_status_known"),
            "status IN ('open', 'on_hold', 'rejected', 'cryobanked', 'prepared')",
        )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        # SQLite's batch mode rebuilt the table, and its triggers went with the old one.
        for statement in never_deleted(dialect, "batch"):
            op.execute(statement)
    for statement in never_deleted(dialect, "final_product"):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_triggers(dialect, "final_product"):
        op.execute(statement)
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_batch_status_known"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_batch_status_known"), "status IN ('open', 'on_hold', 'rejected', 'cryobanked')"
        )
        batch_op.drop_constraint(batch_op.f("fk_batch_dose_order_id_dose_order"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_batch_dose_order_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_batch_din_division"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_batch_din"))
        batch_op.create_unique_constraint(batch_op.f("uq_batch_din"), ["din"])
        batch_op.drop_column("dose_order_id")
        batch_op.drop_column("division")

    if dialect == "sqlite":
        for statement in never_deleted(dialect, "batch"):
            op.execute(statement)
    op.drop_table("final_product")
