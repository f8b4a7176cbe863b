"""The dose in the syringe, measured (issue 9): final_product.concentration_per_ml.

The final count's mean viable concentration is stored beside the delivered dose it gives (that
concentration times the volume in the syringe), so the label prints both as measured. Existing products
keep NULL: they were settled from a single count.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 10:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN keeps the table (and its never-deleted triggers) on SQLite and PostgreSQL alike.
    op.add_column("final_product", sa.Column("concentration_per_ml", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("final_product", "concentration_per_ml")
