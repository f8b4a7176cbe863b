"""Bench terminal: master batch records, batches, steps, values, deviations, lots, equipment, workstations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 14:11:59.290343
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mfg.audit.ddl import drop_triggers, never_deleted

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GMP_TABLES = (
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
)


def upgrade() -> None:
    op.create_table(
        "equipment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_tag", sa.String(length=40), nullable=False),
        sa.Column("equipment_type", sa.String(length=60), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("calibration_due", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "status IN ('in_service', 'out_of_service')", name=op.f("ck_equipment_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equipment")),
        sa.UniqueConstraint("asset_tag", name=op.f("uq_equipment_asset_tag")),
    )
    op.create_table(
        "mbr_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("definition_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'approved', 'retired')", name=op.f("ck_mbr_version_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mbr_version")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_mbr_version_code_version")),
    )
    op.create_table(
        "reagent_lot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("catalogue_number", sa.String(length=60), nullable=False),
        sa.Column("lot_number", sa.String(length=60), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "status IN ('quarantined', 'released', 'rejected')", name=op.f("ck_reagent_lot_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reagent_lot")),
        sa.UniqueConstraint("scan_code", name=op.f("uq_reagent_lot_scan_code")),
    )
    op.create_table(
        "batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("din", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("mbr_version_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'on_hold', 'rejected', 'cryobanked')", name=op.f("ck_batch_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["mbr_version_id"], ["mbr_version.id"], name=op.f("fk_batch_mbr_version_id_mbr_version")
        ),
        sa.ForeignKeyConstraint(
            ["started_by_id"], ["user_account.id"], name=op.f("fk_batch_started_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], name=op.f("fk_batch_subject_id_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch")),
        sa.UniqueConstraint("din", name=op.f("uq_batch_din")),
    )
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batch_subject_id"), ["subject_id"], unique=False)

    op.create_table(
        "workstation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("current_batch_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["current_batch_id"], ["batch.id"], name=op.f("fk_workstation_current_batch_id_batch")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workstation")),
        sa.UniqueConstraint("code", name=op.f("uq_workstation_code")),
    )
    op.create_table(
        "line_clearance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workstation_id", sa.Integer(), nullable=False),
        sa.Column("previous_batch_id", sa.Integer(), nullable=False),
        sa.Column("cleared_by_id", sa.Integer(), nullable=False),
        sa.Column("cleared_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cleared_by_id"], ["user_account.id"], name=op.f("fk_line_clearance_cleared_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["previous_batch_id"], ["batch.id"], name=op.f("fk_line_clearance_previous_batch_id_batch")
        ),
        sa.ForeignKeyConstraint(
            ["workstation_id"], ["workstation.id"], name=op.f("fk_line_clearance_workstation_id_workstation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_clearance")),
    )
    op.create_table(
        "step_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("step_key", sa.String(length=80), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("performed_by_id", sa.Integer(), nullable=False),
        sa.Column("performed_at", sa.DateTime(), nullable=False),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("workstation_id", sa.Integer(), nullable=True),
        sa.Column("verified_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('awaiting_verification', 'done')", name=op.f("ck_step_record_status_known")
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=op.f("fk_step_record_batch_id_batch")),
        sa.ForeignKeyConstraint(
            ["performed_by_id"], ["user_account.id"], name=op.f("fk_step_record_performed_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["verified_by_id"], ["user_account.id"], name=op.f("fk_step_record_verified_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["workstation_id"], ["workstation.id"], name=op.f("fk_step_record_workstation_id_workstation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_record")),
        sa.UniqueConstraint(
            "batch_id", "step_key", "iteration", name=op.f("uq_step_record_batch_id_step_key_iteration")
        ),
    )
    with op.batch_alter_table("step_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_step_record_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "deviation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("step_record_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("field_key", sa.String(length=60), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("limit_text", sa.String(length=120), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("assessment", sa.Text(), nullable=True),
        sa.Column("assessed_by_id", sa.Integer(), nullable=True),
        sa.Column("investigation", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'assessed', 'closed')", name=op.f("ck_deviation_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["assessed_by_id"], ["user_account.id"], name=op.f("fk_deviation_assessed_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=op.f("fk_deviation_batch_id_batch")),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["user_account.id"], name=op.f("fk_deviation_closed_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["step_record_id"], ["step_record.id"], name=op.f("fk_deviation_step_record_id_step_record")
        ),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], name=op.f("fk_deviation_subject_id_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deviation")),
        sa.UniqueConstraint("number", name=op.f("uq_deviation_number")),
    )
    with op.batch_alter_table("deviation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deviation_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "equipment_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_record_id", sa.Integer(), nullable=False),
        sa.Column("field_key", sa.String(length=60), nullable=False),
        sa.Column("equipment_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["equipment_id"], ["equipment.id"], name=op.f("fk_equipment_use_equipment_id_equipment")
        ),
        sa.ForeignKeyConstraint(
            ["step_record_id"], ["step_record.id"], name=op.f("fk_equipment_use_step_record_id_step_record")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equipment_use")),
    )
    with op.batch_alter_table("equipment_use", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_equipment_use_equipment_id"), ["equipment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_equipment_use_step_record_id"), ["step_record_id"], unique=False)

    op.create_table(
        "field_value",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_record_id", sa.Integer(), nullable=False),
        sa.Column("field_key", sa.String(length=60), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("number", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("in_spec", sa.Boolean(), nullable=False),
        sa.Column("entered_by_id", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("correction_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entered_by_id"], ["user_account.id"], name=op.f("fk_field_value_entered_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["step_record_id"], ["step_record.id"], name=op.f("fk_field_value_step_record_id_step_record")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["field_value.id"], name=op.f("fk_field_value_supersedes_id_field_value")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_field_value")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_field_value_supersedes_id")),
    )
    with op.batch_alter_table("field_value", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_field_value_step_record_id"), ["step_record_id"], unique=False)

    op.create_table(
        "material_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_record_id", sa.Integer(), nullable=False),
        sa.Column("field_key", sa.String(length=60), nullable=False),
        sa.Column("reagent_lot_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reagent_lot_id"], ["reagent_lot.id"], name=op.f("fk_material_use_reagent_lot_id_reagent_lot")
        ),
        sa.ForeignKeyConstraint(
            ["step_record_id"], ["step_record.id"], name=op.f("fk_material_use_step_record_id_step_record")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_material_use")),
    )
    with op.batch_alter_table("material_use", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_material_use_reagent_lot_id"), ["reagent_lot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_material_use_step_record_id"), ["step_record_id"], unique=False)

    dialect = op.get_bind().dialect.name
    for table in GMP_TABLES:
        for statement in never_deleted(dialect, table):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in GMP_TABLES:
        for statement in drop_triggers(dialect, table):
            op.execute(statement)
    with op.batch_alter_table("material_use", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_material_use_step_record_id"))
        batch_op.drop_index(batch_op.f("ix_material_use_reagent_lot_id"))

    op.drop_table("material_use")
    with op.batch_alter_table("field_value", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_field_value_step_record_id"))

    op.drop_table("field_value")
    with op.batch_alter_table("equipment_use", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equipment_use_step_record_id"))
        batch_op.drop_index(batch_op.f("ix_equipment_use_equipment_id"))

    op.drop_table("equipment_use")
    with op.batch_alter_table("deviation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deviation_batch_id"))

    op.drop_table("deviation")
    with op.batch_alter_table("step_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_record_batch_id"))

    op.drop_table("step_record")
    op.drop_table("line_clearance")
    op.drop_table("workstation")
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_subject_id"))

    op.drop_table("batch")
    op.drop_table("reagent_lot")
    op.drop_table("mbr_version")
    op.drop_table("equipment")
