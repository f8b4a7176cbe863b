"""Foundation: audit trail, accounts and signatures, sites, subjects, containers, DIN sequences.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 14:00:17.159318
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mfg.audit.ddl import append_only, drop_triggers, never_deleted

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GMP_TABLES = ("user_account", "signature", "site", "subject", "container", "container_parent", "din_sequence")


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("entity_type", sa.String(length=60), nullable=False),
        sa.Column("entity_id", sa.String(length=120), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_event_hash")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_entity_type"), ["entity_type"], unique=False)

    op.create_table(
        "din_sequence",
        sa.Column("facility_id", sa.String(length=5), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("facility_id", "year", name=op.f("pk_din_sequence")),
    )
    op.create_table(
        "site",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("isbt_facility_id", sa.String(length=5), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind IN ('clinical', 'manufacturing')", name=op.f("ck_site_kind_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site")),
        sa.UniqueConstraint("code", name=op.f("uq_site_code")),
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('technician', 'supervisor', 'qc_analyst', 'qa', 'pharmacist', 'nurse', 'coordinator', 'investigator', 'admin')",
            name=op.f("ck_user_account_role_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("username", name=op.f("uq_user_account_username")),
    )
    op.create_table(
        "signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signer_id", sa.Integer(), nullable=False),
        sa.Column("printed_name", sa.String(length=200), nullable=False),
        sa.Column("signer_role", sa.String(length=32), nullable=False),
        sa.Column("signed_at", sa.DateTime(), nullable=False),
        sa.Column("meaning", sa.String(length=20), nullable=False),
        sa.Column("entity_type", sa.String(length=60), nullable=False),
        sa.Column("entity_id", sa.String(length=120), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "meaning IN ('performed', 'verified', 'reviewed', 'approved', 'released', 'rejected', 'dispensed', 'administered')",
            name=op.f("ck_signature_meaning_known"),
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["user_account.id"], name=op.f("fk_signature_signer_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature")),
    )
    with op.batch_alter_table("signature", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signature_entity_type"), ["entity_type"], unique=False)

    op.create_table(
        "subject",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_code", sa.String(length=40), nullable=False),
        sa.Column("study_subject_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("medical_record_number", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("consent_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("coi_identifier", sa.String(length=13), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("enrolled_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('enrolled', 'withdrawn', 'completed')", name=op.f("ck_subject_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["enrolled_by_id"], ["user_account.id"], name=op.f("fk_subject_enrolled_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_subject_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject")),
        sa.UniqueConstraint("coi_identifier", name=op.f("uq_subject_coi_identifier")),
        sa.UniqueConstraint(
            "study_code", "study_subject_id", name=op.f("uq_subject_study_code_study_subject_id")
        ),
    )
    op.create_table(
        "container",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("din", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("location", sa.String(length=120), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=True),
        sa.Column("contents", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('tissue_tube', 'culture_flask', 'cryovial', 'syringe', 'shipper', 'sample_tube')",
            name=op.f("ck_container_kind_known"),
        ),
        sa.CheckConstraint(
            "status IN ('in_use', 'consumed', 'stored', 'released', 'quarantined', 'destroyed', 'administered')",
            name=op.f("ck_container_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["holder_id"], ["user_account.id"], name=op.f("fk_container_holder_id_user_account")
        ),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], name=op.f("fk_container_subject_id_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_container")),
        sa.UniqueConstraint("scan_id", name=op.f("uq_container_scan_id")),
    )
    with op.batch_alter_table("container", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_container_din"), ["din"], unique=False)
        batch_op.create_index(batch_op.f("ix_container_subject_id"), ["subject_id"], unique=False)

    op.create_table(
        "container_parent",
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"], ["container.id"], name=op.f("fk_container_parent_child_id_container")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["container.id"], name=op.f("fk_container_parent_parent_id_container")
        ),
        sa.PrimaryKeyConstraint("child_id", "parent_id", name=op.f("pk_container_parent")),
    )

    dialect = op.get_bind().dialect.name
    for statement in append_only(dialect, "audit_event"):
        op.execute(statement)
    for table in GMP_TABLES:
        for statement in never_deleted(dialect, table):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("audit_event", *GMP_TABLES):
        for statement in drop_triggers(dialect, table):
            op.execute(statement)
    op.drop_table("container_parent")
    with op.batch_alter_table("container", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_container_subject_id"))
        batch_op.drop_index(batch_op.f("ix_container_din"))

    op.drop_table("container")
    op.drop_table("subject")
    with op.batch_alter_table("signature", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signature_entity_type"))

    op.drop_table("signature")
    op.drop_table("user_account")
    op.drop_table("site")
    op.drop_table("din_sequence")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_entity_type"))

    op.drop_table("audit_event")
