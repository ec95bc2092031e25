"""Webhook endpoints, and the outbox of their deliveries filled from the audit trail.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = (
    "LEAD_CREATED",
    "LEAD_STAGE_CHANGED",
    "LEAD_TRANSFERRED",
    "SALE_STAGE_CHANGED",
    "LEADS_MERGED",
)
_EVENT_LIST = ", ".join(f"'{event}'" for event in EVENTS)

# Every audit row is one event. The outbox rows are written by the statement that writes the
# audit rows, so they commit (or roll back) with the change whichever code path made it, and
# a crash after the commit loses nothing. A statement-level trigger inserts once per statement
# (the bulk import writes thousands of audit rows in one), and does nothing while no endpoint
# is enabled. A sale's events are ordered with its lead's.
ENQUEUE = """
CREATE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, stage_change_id, event, lead_id)
    SELECT endpoint.id, change.id, change.event, change.lead_id
    FROM (
        SELECT added.id,
               CASE
                   WHEN added.sale_id IS NOT NULL THEN 'SALE_STAGE_CHANGED'
                   WHEN added.from_stage IS NULL THEN 'LEAD_CREATED'
                   WHEN added.from_stage = added.to_stage THEN 'LEADS_MERGED'
                   WHEN added.to_stage = 'TRANSFERRED' THEN 'LEAD_TRANSFERRED'
                   ELSE 'LEAD_STAGE_CHANGED'
               END AS event,
               coalesce(
                   added.merged_from_lead_id,
                   added.lead_id,
                   (SELECT sales.lead_id FROM sales WHERE sales.id = added.sale_id)
               ) AS lead_id
        FROM added
    ) AS change
    JOIN webhook_endpoints AS endpoint
      ON endpoint.enabled AND change.event = ANY (endpoint.events)
    ORDER BY change.id, endpoint.id;
    RETURN NULL;
END
$$
"""
TRIGGER = """
CREATE TRIGGER stage_changes_webhooks AFTER INSERT ON stage_changes
REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION webhook_enqueue();
"""


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            f"events <@ ARRAY[{_EVENT_LIST}]::text[]", name="ck_webhook_endpoints_events"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger(), nullable=False),
        sa.Column("stage_change_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="PENDING", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=True,
        ),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(f"event IN ({_EVENT_LIST})", name="ck_webhook_deliveries_event"),
        sa.CheckConstraint(
            "status IN ('PENDING', 'DELIVERED', 'FAILED')", name="ck_webhook_deliveries_status"
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name="fk_webhook_deliveries_endpoint_id_webhook_endpoints",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stage_change_id"],
            ["stage_changes.id"],
            name="fk_webhook_deliveries_stage_change_id_stage_changes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint(
            "endpoint_id",
            "stage_change_id",
            name="uq_webhook_deliveries_endpoint_id_stage_change_id",
        ),
    )
    pending = sa.text("status = 'PENDING'")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at", "id"],
        postgresql_where=pending,
    )
    op.create_index(
        "ix_webhook_deliveries_lead_order",
        "webhook_deliveries",
        ["endpoint_id", "lead_id", "stage_change_id"],
        postgresql_where=pending,
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_created_at_id",
        "webhook_deliveries",
        ["endpoint_id", "created_at", "id"],
    )
    op.execute(ENQUEUE)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER stage_changes_webhooks ON stage_changes")
    op.execute("DROP FUNCTION webhook_enqueue()")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
