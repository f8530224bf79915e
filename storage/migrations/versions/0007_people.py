"""people: issue 12 (e-mail announcements and opt-outs, step-up enrolment and confirmations)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail_to", sa.String(length=320), nullable=True))
    op.create_table(
        "mail_optouts",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "system"),
    )


def downgrade() -> None:
    op.drop_table("mail_optouts")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("mail_to")
