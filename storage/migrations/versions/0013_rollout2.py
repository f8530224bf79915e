"""rollout through the runner: rings, reboot and credential per deployment (issue 11)

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03

``deployments.rings``: ``[{name, targets, status, started, finished}]``; ``deployments.reboot``:
``{required, done, scheduled}``; ``deployments.credential``: ``{provider, key_id, serial, valid_before}`` (the
record only, never the secret).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("rings", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("reboot", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("credential", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("credential")
        batch.drop_column("reboot")
        batch.drop_column("rings")
