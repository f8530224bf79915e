"""advisory fix lines: issue 9 (CSAF remediations on matches)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

``advisory_matches.remediation``: the vendor's fix line (CSAF ``vendor_fix`` remediation) for the product a
match is on; empty where the advisory gives none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advisory_matches") as batch:
        batch.add_column(sa.Column("remediation", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("advisory_matches") as batch:
        batch.drop_column("remediation")
