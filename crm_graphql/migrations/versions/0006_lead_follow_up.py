"""Leads: when the owner plans the next contact.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("next_follow_up_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("leads", "next_follow_up_at")
