"""A reserved (step-up) approval may be a delegate's: issue 12 (delegation and step-up together)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

``step_up_reservations.delegated_from``: the away approver a delegate's reserved vote is cast for (NULL: the
person's own vote). The confirmation counts it for that delegator, if the delegation is still in force then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_up_reservations") as batch:
        batch.add_column(sa.Column("delegated_from", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("step_up_reservations") as batch:
        batch.drop_column("delegated_from")
