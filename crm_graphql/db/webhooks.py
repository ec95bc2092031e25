"""SQL for webhook endpoints and their deliveries (the outbox the trigger on stage_changes
fills, see migration 0007). Single statements: each commits on its own (autocommit engine)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from crm_graphql.db import driver
from crm_graphql.db.sql import sql
from crm_graphql.db.tables import webhook_deliveries, webhook_endpoints
from crm_graphql.domain.lead import Columns
from crm_graphql.domain.webhooks import (
    AuditEvent,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

ENDPOINT_COLUMNS = ", ".join(
    c.name for c in webhook_endpoints.c if c.name not in ("secret", "previous_secret")
)
DELIVERY_COLUMNS = ", ".join(c.name for c in webhook_deliveries.c)


def endpoint_from_row(row: Columns) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        events=tuple(WebhookEvent(e) for e in row["events"]),
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def delivery_from_row(row: Columns) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        stage_change_id=row["stage_change_id"],
        event=WebhookEvent(row["event"]),
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
    )


_INSERT_ENDPOINT = sql(f"""
INSERT INTO webhook_endpoints (url, description, events, enabled, secret)
VALUES (:url, :description, :events, :enabled, :secret) RETURNING {ENDPOINT_COLUMNS}
""")


async def insert_endpoint(
    conn: AsyncConnection,
    url: str,
    description: str | None,
    events: Sequence[WebhookEvent],
    enabled: bool,
    secret: str,
) -> WebhookEndpoint:
    row = await driver.fetchrow(
        conn,
        _INSERT_ENDPOINT,
        url=url,
        description=description,
        events=[e.value for e in events],
        enabled=enabled,
        secret=secret,
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return endpoint_from_row(row)


# Each column keeps its value when its parameter is NULL (the input left it out).
_UPDATE_ENDPOINT = sql(f"""
UPDATE webhook_endpoints SET
    url = coalesce(:url, url),
    description = CASE WHEN :set_description THEN :description ELSE description END,
    events = coalesce(:events, events),
    enabled = coalesce(:enabled, enabled),
    updated_at = now()
WHERE id = :id RETURNING {ENDPOINT_COLUMNS}
""")


async def update_endpoint(
    conn: AsyncConnection,
    endpoint_id: int,
    url: str | None,
    description: tuple[str | None] | None,
    events: Sequence[WebhookEvent] | None,
    enabled: bool | None,
) -> WebhookEndpoint | None:
    """`description` is a 1-tuple when it changes (its value may be None: cleared)."""
    row = await driver.fetchrow(
        conn,
        _UPDATE_ENDPOINT,
        id=endpoint_id,
        url=url,
        set_description=description is not None,
        description=description[0] if description else None,
        events=None if events is None else [e.value for e in events],
        enabled=enabled,
    )
    return endpoint_from_row(row) if row else None


_DELETE_ENDPOINT = sql("DELETE FROM webhook_endpoints WHERE id = :id RETURNING id")


async def delete_endpoint(conn: AsyncConnection, endpoint_id: int) -> bool:
    """The endpoint and its deliveries (ON DELETE CASCADE)."""
    row = await driver.fetchrow(conn, _DELETE_ENDPOINT, id=endpoint_id)
    return row is not None


_ROTATE_SECRET = sql(f"""
UPDATE webhook_endpoints SET
    previous_secret = secret, previous_secret_expires_at = now() + :grace, secret = :secret,
    updated_at = now()
WHERE id = :id RETURNING {ENDPOINT_COLUMNS}
""")


async def rotate_secret(
    conn: AsyncConnection, endpoint_id: int, secret: str, grace: timedelta
) -> WebhookEndpoint | None:
    row = await driver.fetchrow(conn, _ROTATE_SECRET, id=endpoint_id, secret=secret, grace=grace)
    return endpoint_from_row(row) if row else None


_ENABLED_ENDPOINT_IDS = sql("SELECT id FROM webhook_endpoints WHERE enabled ORDER BY id")


async def enabled_endpoint_ids(conn: AsyncConnection) -> list[int]:
    rows = await driver.fetch(conn, _ENABLED_ENDPOINT_IDS)
    return [row["id"] for row in rows]


_REDELIVER = sql(f"""
UPDATE webhook_deliveries SET status = 'PENDING', attempts = 0, next_attempt_at = now()
WHERE id = :id AND status <> 'PENDING' RETURNING {DELIVERY_COLUMNS}
""")
_DELIVERY_BY_ID = sql(f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = :id")


async def redeliver(conn: AsyncConnection, delivery_id: int) -> WebhookDelivery | None:
    """Send a finished delivery again, with a fresh retry schedule; None if it is pending (or
    missing)."""
    row = await driver.fetchrow(conn, _REDELIVER, id=delivery_id)
    return delivery_from_row(row) if row else None


async def delivery_by_id(conn: AsyncConnection, delivery_id: int) -> WebhookDelivery | None:
    row = await driver.fetchrow(conn, _DELIVERY_BY_ID, id=delivery_id)
    return delivery_from_row(row) if row else None


# --- the delivery worker ------------------------------------------------------------------

# Claims the endpoint's due deliveries. SKIP LOCKED: replicas claiming at the same moment take
# different rows. The claim moves next_attempt_at past the attempt's longest duration: that is
# the lease, so a replica killed mid-attempt leaves the row due again to any replica then. A
# delivery waits while an earlier event of its lead is pending for the same endpoint (in flight
# or waiting to retry), so one lead's events arrive in order.
_CLAIM = sql("""
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.endpoint_id = :endpoint_id AND d.status = 'PENDING' AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries earlier
          WHERE earlier.endpoint_id = d.endpoint_id AND earlier.lead_id = d.lead_id
            AND earlier.status = 'PENDING' AND earlier.stage_change_id < d.stage_change_id
      )
    ORDER BY d.next_attempt_at, d.id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1, last_attempt_at = now(), next_attempt_at = now() + :lease
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.endpoint_id, d.stage_change_id, d.event, d.lead_id, d.attempts
)
SELECT claimed.id, claimed.attempts, claimed.event, claimed.lead_id,
       claimed.stage_change_id,
       endpoint.url, endpoint.secret,
       CASE WHEN endpoint.previous_secret_expires_at > now()
            THEN endpoint.previous_secret END AS previous_secret,
       change.from_stage, change.to_stage, change.at, change.by, change.note,
       coalesce(change.sale_id, CASE WHEN claimed.event = 'LEAD_TRANSFERRED' THEN
           (SELECT sales.id FROM sales WHERE sales.lead_id = claimed.lead_id) END) AS sale_id,
       CASE WHEN claimed.event = 'LEADS_MERGED' THEN (
           -- The merged lead's LOST row: the lead audit row just before (the merge holds the
           -- lock that orders lead audit ids from that row to its commit).
           SELECT merged.id FROM stage_changes lost JOIN leads merged
             ON merged.id = coalesce(lost.merged_from_lead_id, lost.lead_id)
           WHERE lost.id < change.id AND lost.lead_id IS NOT NULL AND lost.to_stage = 'LOST'
             AND merged.merged_into = claimed.lead_id
           ORDER BY lost.id DESC LIMIT 1
       ) END AS merged_lead_id
FROM claimed
JOIN webhook_endpoints endpoint ON endpoint.id = claimed.endpoint_id
JOIN stage_changes change ON change.id = claimed.stage_change_id
ORDER BY claimed.stage_change_id
""")


async def claim_due(
    conn: AsyncConnection, endpoint_id: int, limit: int, lease: timedelta
) -> list[driver.Row]:
    return await driver.fetch(conn, _CLAIM, endpoint_id=endpoint_id, limit=limit, lease=lease)


def audit_event_from_claim(row: Columns) -> AuditEvent:
    return AuditEvent(
        id=row["stage_change_id"],
        event=WebhookEvent(row["event"]),
        lead_id=row["lead_id"],
        sale_id=row["sale_id"],
        from_stage=row["from_stage"],
        to_stage=row["to_stage"],
        at=row["at"],
        by=row["by"],
        note=row["note"],
        merged_lead_id=row["merged_lead_id"],
    )


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    attempts: int  # as claimed: the attempt this is the outcome of
    status: DeliveryStatus
    retry_in: timedelta | None
    status_code: int | None
    error: str | None


# The outcomes of a batch of attempts, in one statement. Each is only written by the attempt
# that claimed the row: once its lease has run out another replica may have claimed it again
# (attempts moved on).
_RECORD_ATTEMPTS = sql("""
UPDATE webhook_deliveries d SET
    status = o.status,
    next_attempt_at = CASE WHEN o.status = 'PENDING' THEN now() + o.retry_in END,
    delivered_at = CASE WHEN o.status = 'DELIVERED' THEN now() ELSE d.delivered_at END,
    last_status_code = o.status_code,
    last_error = o.error
FROM unnest(
    :ids::bigint[], :attempts::int[], :statuses::text[], :retry_ins::interval[],
    :status_codes::int[], :errors::text[]
) AS o(id, attempts, status, retry_in, status_code, error)
WHERE d.id = o.id AND d.attempts = o.attempts AND d.status = 'PENDING'
""")


async def record_attempts(conn: AsyncConnection, results: Sequence[AttemptResult]) -> None:
    await driver.execute(
        conn,
        _RECORD_ATTEMPTS,
        ids=[r.delivery_id for r in results],
        attempts=[r.attempts for r in results],
        statuses=[r.status.value for r in results],
        retry_ins=[r.retry_in for r in results],
        status_codes=[r.status_code for r in results],
        errors=[r.error for r in results],
    )
