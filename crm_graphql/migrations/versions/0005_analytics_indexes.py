"""Indexes for pipeline analytics over the stage-change audit trail.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each subject's changes in time order, covering what the funnel reads: pipelineStats
    # walks them with an index-only scan instead of sorting the audit trail.
    op.create_index(
        "ix_stage_changes_lead_id_at_id",
        "stage_changes",
        ["lead_id", "at", "id"],
        postgresql_include=["to_stage"],
        postgresql_where=sa.text("lead_id IS NOT NULL"),
    )
    op.create_index(
        "ix_stage_changes_sale_id_at_id",
        "stage_changes",
        ["sale_id", "at", "id"],
        postgresql_include=["from_stage", "to_stage"],
        postgresql_where=sa.text("sale_id IS NOT NULL"),
    )
    # The outcome (transferred or lost) of each scored lead, for the score's track record.
    op.create_index(
        "ix_stage_changes_lead_outcome",
        "stage_changes",
        ["lead_id"],
        postgresql_include=["to_stage", "at"],
        postgresql_where=sa.text("lead_id IS NOT NULL AND to_stage IN ('TRANSFERRED', 'LOST')"),
    )


def downgrade() -> None:
    op.drop_index("ix_stage_changes_lead_outcome", table_name="stage_changes")
    op.drop_index("ix_stage_changes_sale_id_at_id", table_name="stage_changes")
    op.drop_index("ix_stage_changes_lead_id_at_id", table_name="stage_changes")
