"""hostile input: issue 14 (replayed Slack interactions are de-duplicated)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``slack_deliveries`` holds one row per handled modal submission (view id + submitted values) and click
(action_ts + user), so a captured, validly signed request replayed later is dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_deliveries",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_slack_deliveries_at", "slack_deliveries", ["at"])


def downgrade() -> None:
    op.drop_index("ix_slack_deliveries_at", table_name="slack_deliveries")
    op.drop_table("slack_deliveries")
