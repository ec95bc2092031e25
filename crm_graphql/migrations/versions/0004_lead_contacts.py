"""Lead contact fields, duplicate guard, merges, trigram search and import keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED_OPEN_LEAD = "stage <> 'LOST' AND duplicate_of IS NULL"
SEARCH_TEXT = (
    "lower(coalesce(contact_name, '') || ' ' || coalesce(company_name, '') || ' ' "
    "|| coalesce(email, '') || ' ' || coalesce(website, ''))"
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.add_column("leads", sa.Column("contact_name", sa.String(200)))
    op.add_column("leads", sa.Column("company_name", sa.String(200)))
    op.add_column("leads", sa.Column("email", sa.String(254)))
    op.add_column("leads", sa.Column("phone", sa.String(20)))
    op.add_column("leads", sa.Column("website", sa.String(2048)))
    op.add_column("leads", sa.Column("website_domain", sa.String(253)))
    op.add_column("leads", sa.Column("duplicate_of", sa.BigInteger))
    op.add_column("leads", sa.Column("merged_into", sa.BigInteger))
    op.add_column("leads", sa.Column("lost_reason", sa.Text))
    op.add_column("leads", sa.Column("import_key", sa.String(64)))
    op.create_foreign_key("fk_leads_duplicate_of_leads", "leads", "leads", ["duplicate_of"], ["id"])
    op.create_foreign_key("fk_leads_merged_into_leads", "leads", "leads", ["merged_into"], ["id"])
    op.create_unique_constraint("uq_leads_import_key", "leads", ["import_key"])
    for column in ("email", "phone", "website_domain"):
        op.create_index(
            f"uq_leads_open_{column}",
            "leads",
            [column],
            unique=True,
            postgresql_where=sa.text(GUARDED_OPEN_LEAD),
        )
    op.execute(f"CREATE INDEX ix_leads_search_trgm ON leads USING gin ({SEARCH_TEXT} gin_trgm_ops)")

    op.add_column("stage_changes", sa.Column("note", sa.Text))
    op.add_column("stage_changes", sa.Column("merged_from_lead_id", sa.BigInteger))
    op.create_foreign_key(
        "fk_stage_changes_merged_from_lead_id_leads",
        "stage_changes",
        "leads",
        ["merged_from_lead_id"],
        ["id"],
    )
    op.create_index(
        "ix_stage_changes_origin_id",
        "stage_changes",
        [sa.text("coalesce(merged_from_lead_id, lead_id)"), "id"],
        postgresql_where=sa.text("lead_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_stage_changes_origin_id", "stage_changes")
    op.drop_constraint("fk_stage_changes_merged_from_lead_id_leads", "stage_changes")
    op.drop_column("stage_changes", "merged_from_lead_id")
    op.drop_column("stage_changes", "note")
    op.drop_index("ix_leads_search_trgm", "leads")
    for column in ("email", "phone", "website_domain"):
        op.drop_index(f"uq_leads_open_{column}", "leads")
    op.drop_constraint("uq_leads_import_key", "leads")
    op.drop_constraint("fk_leads_merged_into_leads", "leads")
    op.drop_constraint("fk_leads_duplicate_of_leads", "leads")
    for column in (
        "import_key",
        "lost_reason",
        "merged_into",
        "duplicate_of",
        "website_domain",
        "website",
        "phone",
        "email",
        "company_name",
        "contact_name",
    ):
        op.drop_column("leads", column)
    # pg_trgm stays: other objects of the database may use it, and it is harmless.
