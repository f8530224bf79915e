"""advisories trust: issue 9 (SLA from discovery per match, priority tiers, digests, EPSS scores)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Each match gets the time patchwarden first saw that system affected (``discovered``), its own SLA due
date and priority tier; a record reached through a per-system digest says so (``digested_at``); FIRST's
EPSS scores live in a table of their own (one row per CVE, the latest daily file).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advisory_matches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("discovered", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("due", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.String(length=32), nullable=False, server_default=""))
        batch_op.create_index(batch_op.f("ix_advisory_matches_due"), ["due"], unique=False)
    with op.batch_alter_table("advisories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digested_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "epss_scores",
        sa.Column("cve", sa.String(length=32), nullable=False),
        sa.Column("epss", sa.Double(), nullable=False),
        sa.Column("percentile", sa.Double(), nullable=False),
        sa.Column("score_date", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("cve"),
    )


def downgrade() -> None:
    op.drop_table("epss_scores")
    with op.batch_alter_table("advisories", schema=None) as batch_op:
        batch_op.drop_column("digested_at")
    with op.batch_alter_table("advisory_matches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_advisory_matches_due"))
        batch_op.drop_column("priority")
        batch_op.drop_column("due")
        batch_op.drop_column("discovered")
