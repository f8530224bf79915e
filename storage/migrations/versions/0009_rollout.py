"""rollout: issue 11 (rollout policy)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Reserved in the linear chain so that parallel work lands without competing heads; empty until filled.
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
