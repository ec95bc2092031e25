"""Webhooks as data: the events an endpoint may subscribe to, a delivery's states and the
retry schedule. Pure: the delivery worker (crm_graphql/webhooks) does the I/O."""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class WebhookEvent(StrEnum):
    """What happened; each audit row (stage_changes) is one event of exactly one kind."""

    LEAD_CREATED = "LEAD_CREATED"
    LEAD_STAGE_CHANGED = "LEAD_STAGE_CHANGED"
    LEAD_TRANSFERRED = "LEAD_TRANSFERRED"
    SALE_STAGE_CHANGED = "SALE_STAGE_CHANGED"
    LEADS_MERGED = "LEADS_MERGED"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # due now, in flight, or waiting for its next attempt
    DELIVERED = "DELIVERED"  # the endpoint answered 2xx
    FAILED = "FAILED"  # every attempt failed; redeliverWebhook sends it again


@dataclass(frozen=True)
class RetrySchedule:
    """Attempt n (1-based) that fails is followed by attempt n+1 after about
    first_delay * 2**(n-1), give or take `jitter` of it, so endpoints that failed together do
    not all come back at once; after `max_attempts` the delivery is FAILED."""

    first_delay: timedelta = timedelta(seconds=10)
    max_attempts: int = 14  # 13 retries: 10 s doubling to 11.4 h, 22.75 h in all
    jitter: float = 0.2

    def nominal_delay(self, attempts: int) -> timedelta:
        return self.first_delay * 2.0 ** (attempts - 1)

    def delay_after(self, attempts: int, rng: random.Random | None = None) -> timedelta | None:
        """How long after the `attempts`-th failed attempt to try again; None: give up."""
        if attempts >= self.max_attempts:
            return None
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return self.nominal_delay(attempts) * spread

    def nominal_delays(self) -> list[timedelta]:
        """The wait before each retry, without jitter (docs/webhooks.md shows them)."""
        return [self.nominal_delay(n) for n in range(1, self.max_attempts)]


@dataclass(frozen=True)
class WebhookEndpoint:
    id: int
    url: str
    description: str | None
    events: tuple[WebhookEvent, ...]
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    id: int
    endpoint_id: int
    stage_change_id: int  # the event's id
    event: WebhookEvent
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class AuditEvent:
    """One audit row as an event: what a delivery's payload is built from. Nothing here
    changes after the commit, so every attempt sends the same body."""

    id: int  # the audit row's
    event: WebhookEvent
    lead_id: int  # the lead it happened on (a sale's lead for a sale)
    sale_id: int | None  # the sale changed, or (LEAD_TRANSFERRED) created
    from_stage: str | None
    to_stage: str
    at: datetime
    by: str | None
    note: str | None
    merged_lead_id: int | None  # LEADS_MERGED: the lead folded into lead_id
