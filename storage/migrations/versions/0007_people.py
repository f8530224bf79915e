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
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_up", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("delegated_from", sa.String(length=32), nullable=True))
    op.create_table(
        "step_up_secrets",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "step_up_reservations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("requirement", sa.String(length=100), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum("pending", "confirmed", "void", name="reservationstate", native_enum=False, length=12),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["change_id"], ["changes.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("step_up_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_step_up_reservations_change_id", ["change_id"], unique=False)
        batch_op.create_index("ix_step_up_reservations_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("step_up_reservations")
    op.drop_table("step_up_secrets")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("delegated_from")
        batch_op.drop_column("step_up")
    op.drop_table("mail_optouts")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("mail_to")
