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
    op.create_table(
        "advisory_exceptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("advisory_id", sa.Integer(), sa.ForeignKey("advisories.id"), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("justification", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approvals", sa.JSON(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("renewal_of", sa.Integer(), nullable=True),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("previous_status", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("message_ts", sa.String(32), nullable=True),
    )
    op.create_index("ix_advisory_exceptions_advisory_id", "advisory_exceptions", ["advisory_id"])
    op.create_index("ix_advisory_exceptions_until", "advisory_exceptions", ["until"])
    op.create_index("ix_advisory_exceptions_state", "advisory_exceptions", ["state"])


def downgrade() -> None:
    op.drop_table("advisory_exceptions")
    with op.batch_alter_table("advisories") as batch:
        batch.drop_column("remediation")
        batch.drop_column("remediated_at")
