"""A card remembers how far into the control log it shows its change: issue 14 (durable card refreshes)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

``changes.card_seq``: the newest control-log entry of the change that its Slack card showed when it was last
rendered (or handed to the outbox). A change with a newer entry has a card that fell behind (the process died
between a commit and its ``chat.update``); a sweep re-renders it. Existing cards are taken to be current.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("card_seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=True))
    op.execute(
        "UPDATE changes SET card_seq = (SELECT max(a.seq) FROM audit_log a WHERE a.change_id = changes.id) "
        "WHERE thread_ts IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("card_seq")
