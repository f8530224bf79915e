"""first hour: deployments.bypass_reason, the ``--now`` reason shown on the change card (issue 13)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

An emergency deploy outside any window was told only in the thread; the card's Deployments line now says
it ran outside a window and why. NULL for every deployment that ran in its window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("bypass_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("bypass_reason")
