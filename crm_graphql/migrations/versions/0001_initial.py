"""Leads, sales, activities and the stage-change audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEAD_SOURCES = "'SCANNER', 'PARTNER', 'MANUAL'"
LEAD_STAGES = "'NEW', 'CONTACTED', 'QUALIFIED', 'TRANSFERRED', 'LOST'"
SALE_STAGES = "'NEW', 'KYC', 'AGREEMENT', 'PAID', 'LOST'"
ACTIVITY_KINDS = "'CALL', 'EMAIL', 'MEETING', 'NOTE'"


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("business_domain", sa.String(120)),
        sa.Column("activity_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("score_value", sa.Float),
        sa.Column("score", sa.dialects.postgresql.JSONB),
        *_timestamps(),
        sa.CheckConstraint(f"source IN ({LEAD_SOURCES})", name="ck_leads_source"),
        sa.CheckConstraint(f"stage IN ({LEAD_STAGES})", name="ck_leads_stage"),
        sa.CheckConstraint("activity_count >= 0", name="ck_leads_activity_count"),
        sa.CheckConstraint(
            "(score_value IS NULL) = (score IS NULL)", name="ck_leads_score_complete"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
    )
    op.create_index("ix_leads_created_at_id", "leads", ["created_at", "id"])
    op.create_index("ix_leads_updated_at_id", "leads", ["updated_at", "id"])
    op.create_index(
        "ix_leads_score_sort_id", "leads", [sa.text("coalesce(score_value, -1.0)"), "id"]
    )
    op.create_index("ix_leads_stage", "leads", ["stage"])
    op.create_index("ix_leads_source", "leads", ["source"])

    op.create_table(
        "sales",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(f"stage IN ({SALE_STAGES})", name="ck_sales_stage"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_sales_lead_id_leads"),
        sa.UniqueConstraint("lead_id", name="uq_sales_lead_id"),
        sa.PrimaryKeyConstraint("id", name="pk_sales"),
    )
    op.create_index("ix_sales_created_at_id", "sales", ["created_at", "id"])
    op.create_index("ix_sales_stage", "sales", ["stage"])

    op.create_table(
        "stage_changes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("lead_id", sa.BigInteger),
        sa.Column("sale_id", sa.BigInteger),
        sa.Column("from_stage", sa.String(16)),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "(lead_id IS NULL) <> (sale_id IS NULL)", name="ck_stage_changes_one_subject"
        ),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_stage_changes_lead_id_leads"),
        sa.ForeignKeyConstraint(["sale_id"], ["sales.id"], name="fk_stage_changes_sale_id_sales"),
        sa.PrimaryKeyConstraint("id", name="pk_stage_changes"),
    )
    op.create_index(
        "ix_stage_changes_lead_id_id",
        "stage_changes",
        ["lead_id", "id"],
        postgresql_where=sa.text("lead_id IS NOT NULL"),
    )
    op.create_index(
        "ix_stage_changes_sale_id_id",
        "stage_changes",
        ["sale_id", "id"],
        postgresql_where=sa.text("sale_id IS NOT NULL"),
    )

    op.create_table(
        "activities",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(f"kind IN ({ACTIVITY_KINDS})", name="ck_activities_kind"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_activities_lead_id_leads"),
        sa.PrimaryKeyConstraint("id", name="pk_activities"),
    )
    op.create_index("ix_activities_lead_id_id", "activities", ["lead_id", "id"])


def downgrade() -> None:
    op.drop_table("activities")
    op.drop_table("stage_changes")
    op.drop_table("sales")
    op.drop_table("leads")
