"""audit hardening: issue 14 part 1 (checkpoints published to witnesses, the control log streamed)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``audit_checkpoints.published_at`` marks a checkpoint copied outside the database (witness file/URL, audit
channel, stream); ``audit_head`` carries the audit key's signature of the
newest entry; ``audit_stream_cursor`` remembers how far the log was streamed to each target.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("signature", sa.String(length=128), nullable=True))
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE audit_checkpoints SET published_at = signed_at")  # older ones were posted as before
    op.create_table(
        "audit_stream_cursor",
        sa.Column("target", sa.String(length=200), primary_key=True),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_stream_cursor")
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_column("published_at")
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("signature")
        batch.drop_column("key_id")
        batch.drop_column("signed_at")
