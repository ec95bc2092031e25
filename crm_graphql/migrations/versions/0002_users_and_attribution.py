"""Users (the people tokens name) and who created, owns, moved and transferred what.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "'manager', 'sales', 'admin'"

# (table, column): each references users.id; null on rows written before authentication.
ATTRIBUTION = (
    ("leads", "created_by"),
    ("leads", "owner_id"),
    ("sales", "transferred_by"),
    ("stage_changes", "by"),
)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "first_seen", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "last_seen", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(f"role IN ({ROLES})", name="ck_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    for table, column in ATTRIBUTION:
        op.add_column(table, sa.Column(column, sa.Text))
        op.create_foreign_key(f"fk_{table}_{column}_users", table, "users", [column], ["id"])


def downgrade() -> None:
    for table, column in ATTRIBUTION:
        op.drop_constraint(f"fk_{table}_{column}_users", table, type_="foreignkey")
        op.drop_column(table, column)
    op.drop_table("users")
