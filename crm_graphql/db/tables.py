"""Table definitions. Queries use SQLAlchemy Core: rows map to the frozen domain records."""

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from crm_graphql.domain.access import Role
from crm_graphql.domain.enums import ActivityKind, LeadSource, LeadStage, SaleStage

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _one_of(column: str, values: type) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


MAX_ID = 2**63 - 1  # the largest BigInteger identity value
NO_SCORE_SORT_KEY = -1.0  # unscored leads sort below every real score (0 to 1)

# The people the tokens name, recorded on their first write; `id` is the token's `sub`.
users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_one_of("role", Role), name="role"),
)

leads = Table(
    "leads",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("source", String(16), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("business_domain", String(120)),
    Column("activity_count", Integer, nullable=False, server_default=text("0")),
    Column("score_value", Float),
    # recommendation, reasons, factors, scorer and its version, scored_at and the inputs
    # it was computed on
    Column("score", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Null only on rows written before authentication existed.
    Column("created_by", Text, ForeignKey("users.id")),
    Column("owner_id", Text, ForeignKey("users.id")),
    CheckConstraint(_one_of("source", LeadSource), name="source"),
    CheckConstraint(_one_of("stage", LeadStage), name="stage"),
    CheckConstraint("activity_count >= 0", name="activity_count"),
    CheckConstraint("(score_value IS NULL) = (score IS NULL)", name="score_complete"),
)
Index("ix_leads_created_at_id", leads.c.created_at, leads.c.id)
Index("ix_leads_updated_at_id", leads.c.updated_at, leads.c.id)
Index(
    "ix_leads_score_sort_id",
    func.coalesce(leads.c.score_value, NO_SCORE_SORT_KEY),
    leads.c.id,
)
Index("ix_leads_stage", leads.c.stage)
Index("ix_leads_source", leads.c.source)

sales = Table(
    "sales",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("lead_id", BigInteger, ForeignKey("leads.id"), nullable=False, unique=True),
    Column("stage", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("transferred_by", Text, ForeignKey("users.id")),
    CheckConstraint(_one_of("stage", SaleStage), name="stage"),
)
Index("ix_sales_created_at_id", sales.c.created_at, sales.c.id)
Index("ix_sales_stage", sales.c.stage)

# The audit trail: one row per stage change of a lead or a sale, creation included.
stage_changes = Table(
    "stage_changes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("lead_id", BigInteger, ForeignKey("leads.id")),
    Column("sale_id", BigInteger, ForeignKey("sales.id")),
    Column("from_stage", String(16)),
    Column("to_stage", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("by", Text, ForeignKey("users.id")),
    CheckConstraint("(lead_id IS NULL) <> (sale_id IS NULL)", name="one_subject"),
)
Index(
    "ix_stage_changes_lead_id_id",
    stage_changes.c.lead_id,
    stage_changes.c.id,
    postgresql_where=stage_changes.c.lead_id.is_not(None),
)
Index(
    "ix_stage_changes_sale_id_id",
    stage_changes.c.sale_id,
    stage_changes.c.id,
    postgresql_where=stage_changes.c.sale_id.is_not(None),
)
# Pipeline analytics (db/analytics.py): each subject's changes in time order, covering the
# columns it reads, and the terminal change of each lead.
Index(
    "ix_stage_changes_lead_id_at_id",
    stage_changes.c.lead_id,
    stage_changes.c.at,
    stage_changes.c.id,
    postgresql_include=["to_stage"],
    postgresql_where=stage_changes.c.lead_id.is_not(None),
)
Index(
    "ix_stage_changes_sale_id_at_id",
    stage_changes.c.sale_id,
    stage_changes.c.at,
    stage_changes.c.id,
    postgresql_include=["from_stage", "to_stage"],
    postgresql_where=stage_changes.c.sale_id.is_not(None),
)
Index(
    "ix_stage_changes_lead_outcome",
    stage_changes.c.lead_id,
    postgresql_include=["to_stage", "at"],
    postgresql_where=text("lead_id IS NOT NULL AND to_stage IN ('TRANSFERRED', 'LOST')"),
)

activities = Table(
    "activities",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("lead_id", BigInteger, ForeignKey("leads.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_one_of("kind", ActivityKind), name="kind"),
)
Index("ix_activities_lead_id_id", activities.c.lead_id, activities.c.id)

# Models trained by `crm-graphql scorer train`; the newest version of a kind is the one in use.
scoring_models = Table(
    "scoring_models",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("trained_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # coefficients, intercept, feature names, scaler means and scales
    Column("params", JSONB, nullable=False),
    # held-out evaluation at training time, the split and the class counts
    Column("metrics", JSONB, nullable=False),
    UniqueConstraint("kind", "version"),
)
