"""auto approval: approve-after-N-days with a veto window (issue 11)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_approvals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=False, index=True),
        sa.Column("stage", sa.String(8), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("veto_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("vetoed_by", sa.String(32), nullable=True),
        sa.Column("veto_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("vetoed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("change_id", "stage", "revision", name="uq_auto_approval_once"),
    )


def downgrade() -> None:
    op.drop_table("auto_approvals")
