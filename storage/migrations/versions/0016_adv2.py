"""VEX not-affected matches: issue 9 (a vendor's known_not_affected is stored, with its justification)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

``advisory_matches.justification``: for a match whose ``status`` is ``not_affected`` (a vendor's CSAF VEX
``known_not_affected`` statement for that product), the VEX justification label (``component_not_present``,
``vulnerable_code_not_in_execute_path``, ...); ``reason`` keeps the statement in words. Empty otherwise.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advisory_matches") as batch:
        batch.add_column(sa.Column("justification", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("advisory_matches") as batch:
        batch.drop_column("justification")
