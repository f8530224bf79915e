"""people (issue 12, items 2, 4, 5): OIDC step-up links, owner presence for prod, documentation confirmation

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_up_reservations") as batch:
        batch.add_column(sa.Column("oidc_state", sa.String(64), nullable=True))
        batch.add_column(sa.Column("oidc_nonce", sa.String(64), nullable=True))
        batch.add_column(sa.Column("oidc_verifier", sa.String(128), nullable=True))
        batch.create_unique_constraint("uq_step_up_reservations_oidc_state", ["oidc_state"])


def downgrade() -> None:
    with op.batch_alter_table("step_up_reservations") as batch:
        batch.drop_constraint("uq_step_up_reservations_oidc_state", type_="unique")
        batch.drop_column("oidc_verifier")
        batch.drop_column("oidc_nonce")
        batch.drop_column("oidc_state")
