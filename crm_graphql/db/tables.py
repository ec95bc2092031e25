"""Table definitions. Queries use SQLAlchemy Core: rows map to the frozen domain records."""

from enum import Enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
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
    bindparam,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import BindParameter

from crm_graphql.domain.access import Role
from crm_graphql.domain.enums import ActivityKind, LeadSource, LeadStage, SaleStage
from crm_graphql.domain.lead import DUPLICATE_KEY_FIELDS
from crm_graphql.domain.webhooks import DeliveryStatus, WebhookEvent

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _one_of(column: str, values: type[Enum]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


# For compiling SQL texts ahead of time. SQLAlchemy leaves its dialects' __init__ unannotated.
POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]

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
    Column("contact_name", String(200)),
    Column("company_name", String(200)),
    Column("email", String(254)),  # lower-cased
    Column("phone", String(20)),  # E.164
    Column("website", String(2048)),
    Column("website_domain", String(253)),  # host without www.: compared for duplicates
    # Set when created with allowDuplicate next to this open lead; such a lead is outside the
    # uniqueness guard (the unique indexes below), which covers every other open lead.
    Column("duplicate_of", BigInteger, ForeignKey("leads.id")),
    Column("merged_into", BigInteger, ForeignKey("leads.id")),
    Column("lost_reason", Text),
    # sha256 of the normalised CSV row a lead was imported from: a rerun skips it.
    Column("import_key", String(64)),
    Column("next_follow_up_at", DateTime(timezone=True)),
    CheckConstraint(_one_of("source", LeadSource), name="source"),
    CheckConstraint(_one_of("stage", LeadStage), name="stage"),
    CheckConstraint("activity_count >= 0", name="activity_count"),
    CheckConstraint("(score_value IS NULL) = (score IS NULL)", name="score_complete"),
    UniqueConstraint("import_key"),
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

GUARDED_OPEN_LEAD = text("stage <> 'LOST' AND duplicate_of IS NULL")
# Field name -> the column its duplicate key is stored in (domain/lead.py declares them).
DUPLICATE_KEY_COLUMNS = {
    f.name: leads.c[column] for f in DUPLICATE_KEY_FIELDS if (column := f.spec.duplicate_column)
}
# The guard's unique indexes are named with this prefix: a violation of one is a duplicate.
DUPLICATE_GUARD_PREFIX = "uq_leads_open_"
for _column in DUPLICATE_KEY_COLUMNS.values():
    Index(
        f"{DUPLICATE_GUARD_PREFIX}{_column.name}",
        _column,
        unique=True,
        postgresql_where=GUARDED_OPEN_LEAD,
    )


def _inline(value: str) -> BindParameter[str]:
    return bindparam(None, value, String, literal_execute=True)


def _or_empty(column: Column[str]) -> ColumnElement[str]:
    return func.coalesce(column, _inline(""))


# What `leads(filter: {search})` matches; the trigram index is built on this very expression.
# Literals are inlined (not bound) so the planner can match the query to the index.
_SPACE = _inline(" ")
LEAD_SEARCH_TEXT: ColumnElement[str] = func.lower(
    _or_empty(leads.c.contact_name)
    + _SPACE
    + _or_empty(leads.c.company_name)
    + _SPACE
    + _or_empty(leads.c.email)
    + _SPACE
    + _or_empty(leads.c.website)
)
# The opclass goes into the expression text: alembic cannot compare a labelled expression, and
# with `gin_trgm_ops` in the text it skips the comparison instead of reporting a change.
_search_sql = LEAD_SEARCH_TEXT.compile(
    dialect=POSTGRESQL, compile_kwargs={"literal_binds": True, "include_table": False}
)
leads.append_constraint(
    Index("ix_leads_search_trgm", text(f"({_search_sql}) gin_trgm_ops"), postgresql_using="gin")
)


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
    Column("note", Text),
    # The lead this change happened on, when a merge moved it to the lead in lead_id.
    Column("merged_from_lead_id", BigInteger, ForeignKey("leads.id")),
    CheckConstraint("(lead_id IS NULL) <> (sale_id IS NULL)", name="one_subject"),
)
# The lead a change happened on: its own linear history, wherever a merge moved the row.
STAGE_CHANGE_ORIGIN: ColumnElement[int] = func.coalesce(
    stage_changes.c.merged_from_lead_id, stage_changes.c.lead_id
)
Index(
    "ix_stage_changes_lead_id_id",
    stage_changes.c.lead_id,
    stage_changes.c.id,
    postgresql_where=stage_changes.c.lead_id.is_not(None),
)
Index(
    "ix_stage_changes_origin_id",
    STAGE_CHANGE_ORIGIN,
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

# Webhook endpoints (docs/webhooks.md). The secret signs every delivery; after a rotation the
# previous one signs too until it expires.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("url", Text, nullable=False),
    Column("description", Text),
    Column("events", ARRAY(Text), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        f"events <@ ARRAY[{', '.join(repr(str(e)) for e in WebhookEvent)}]::text[]",
        name="events",
    ),
)

# The outbox: one row per event and endpoint, inserted by the trigger on stage_changes (see
# migration 0007) in the transaction that writes the audit row. next_attempt_at is also the
# lease of a claimed attempt: a replica that dies mid-attempt leaves the row due again then.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "endpoint_id",
        BigInteger,
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The event: its id is the audit row's, the same for every endpoint and every attempt.
    Column(
        "stage_change_id",
        BigInteger,
        ForeignKey("stage_changes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event", String(32), nullable=False),
    # Events of one lead reach an endpoint in stage_change_id order (a sale's: its lead's).
    Column("lead_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default=DeliveryStatus.PENDING.value),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now()),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_one_of("event", WebhookEvent), name="event"),
    CheckConstraint(_one_of("status", DeliveryStatus), name="status"),
    UniqueConstraint("endpoint_id", "stage_change_id"),
)
PENDING_DELIVERY = text("status = 'PENDING'")
Index(
    "ix_webhook_deliveries_due",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.next_attempt_at,
    webhook_deliveries.c.id,
    postgresql_where=PENDING_DELIVERY,
)
Index(
    "ix_webhook_deliveries_lead_order",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.lead_id,
    webhook_deliveries.c.stage_change_id,
    postgresql_where=PENDING_DELIVERY,
)
Index(
    "ix_webhook_deliveries_endpoint_created_at_id",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.created_at,
    webhook_deliveries.c.id,
)
