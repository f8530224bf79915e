"""audit hardening: issue 14 part 1 (tamper-evident control log)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Reserved in the linear chain so that parallel work lands without competing heads; empty until filled.
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
