"""close the loop: issue 10 (artifacts, remediation, exceptions, VEX)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Reserved in the linear chain so that parallel work lands without competing heads; empty until filled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advisories") as batch:
        batch.add_column(sa.Column("remediated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("remediation", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("advisories") as batch:
        batch.drop_column("remediation")
        batch.drop_column("remediated_at")
