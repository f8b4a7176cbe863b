"""Calibration is a GMP record: equipment_calibration, and equipment.calibration_due follows from it (issue 8).

An administrator could change an item's calibration date with no signature; the terminal then accepted the item.
A calibration is now a row of its own (certificate reference, result, who recorded it, signed), append-only in
the database; the item's due date is the next due date of its latest passing calibration, and NULL until it
has one. Dates already on existing items stay as they are: the next calibration is recorded as a record.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mfg.audit.ddl import append_only, drop_triggers, never_deleted, refuse_replace

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "equipment_calibration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("equipment_id", sa.Integer(), nullable=False),
        sa.Column("calibrated_on", sa.Date(), nullable=False),
        sa.Column("next_due", sa.Date(), nullable=True),
        sa.Column("certificate_ref", sa.String(length=80), nullable=False),
        sa.Column("result", sa.String(length=10), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("result IN ('pass', 'fail')", name=op.f("ck_equipment_calibration_result_known")),
        sa.CheckConstraint(
            "(result = 'pass' AND next_due > calibrated_on) OR (result = 'fail' AND next_due IS NULL)",
            name=op.f("ck_equipment_calibration_next_due_follows_result"),
        ),
        sa.ForeignKeyConstraint(
            ["equipment_id"], ["equipment.id"], name=op.f("fk_equipment_calibration_equipment_id_equipment")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["user_account.id"],
            name=op.f("fk_equipment_calibration_recorded_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equipment_calibration")),
    )
    with op.batch_alter_table("equipment_calibration", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_equipment_calibration_equipment_id"), ["equipment_id"], unique=False
        )
    _equipment_calibration_due(nullable=True)

    dialect = op.get_bind().dialect.name
    # Recorded once, followed by a later record if wrong: never changed, deleted, or replaced (SQLite).
    why = "calibration records are append-only"
    for statement in append_only(dialect, "equipment_calibration", why) + refuse_replace(
        dialect, "equipment_calibration", why=why
    ):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    never_calibrated = (
        op.get_bind()
        .execute(sa.text("SELECT asset_tag FROM equipment WHERE calibration_due IS NULL ORDER BY asset_tag"))
        .scalars()
        .all()
    )
    if never_calibrated:
        # Revision 0008 cannot say "never calibrated", and inventing a date would be a record nobody signed.
        raise RuntimeError(
            "cannot downgrade below 0009: equipment with no calibration on record "
            f"({', '.join(never_calibrated)}) has no calibration date that 0008 could hold"
        )
    for statement in drop_triggers(dialect, "equipment_calibration"):
        op.execute(statement)
    with op.batch_alter_table("equipment_calibration", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equipment_calibration_equipment_id"))
    op.drop_table("equipment_calibration")
    _equipment_calibration_due(nullable=False)


def _equipment_calibration_due(*, nullable: bool) -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("equipment", schema=None) as batch_op:
        batch_op.alter_column("calibration_due", existing_type=sa.Date(), nullable=nullable)
    if dialect == "sqlite":
        # SQLite's batch mode rebuilt the table, and its triggers went with the old one.
        for statement in never_deleted(dialect, "equipment"):
            op.execute(statement)
