"""people (issue 12, items 2, 4, 5): OIDC step-up links, owner presence for prod, documentation confirmation

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_up_reservations") as batch:
        batch.add_column(sa.Column("oidc_state", sa.String(64), nullable=True))
        batch.add_column(sa.Column("oidc_nonce", sa.String(64), nullable=True))
        batch.add_column(sa.Column("oidc_verifier", sa.String(128), nullable=True))
        batch.create_unique_constraint("uq_step_up_reservations_oidc_state", ["oidc_state"])
    op.create_table(
        "prod_presence",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=False, index=True),
        sa.Column("window_id", sa.Integer(), sa.ForeignKey("windows.id"), nullable=False, unique=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_in_by", sa.String(32), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("absent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "docs_confirmations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=False, unique=True),
        sa.Column("state", sa.String(12), nullable=False, index=True),
        sa.Column("url", sa.Text(), nullable=False, server_default=""),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_by", sa.String(32), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("link", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("docs_confirmations")
    op.drop_table("prod_presence")
    with op.batch_alter_table("step_up_reservations") as batch:
        batch.drop_constraint("uq_step_up_reservations_oidc_state", type_="unique")
        batch.drop_column("oidc_verifier")
        batch.drop_column("oidc_nonce")
        batch.drop_column("oidc_state")
