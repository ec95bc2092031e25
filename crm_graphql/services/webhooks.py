"""Webhook endpoints and their deliveries: admin-only use cases, each one statement."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import webhooks as db
from crm_graphql.db.tables import webhook_deliveries, webhook_endpoints
from crm_graphql.domain.access import Actor, Permission, require
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation, invalid_input
from crm_graphql.domain.lead import Columns
from crm_graphql.domain.text import unstorable_text
from crm_graphql.domain.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from crm_graphql.services.errors import not_found
from crm_graphql.services.pagination import KeysetQuery, Page, PageArgs, SortKey
from crm_graphql.settings import Settings
from crm_graphql.webhooks.addresses import UnsafeUrl, UrlPolicy
from crm_graphql.webhooks.signing import new_secret

T = TypeVar("T")
DESCRIPTION_MAX_LENGTH = 500
ENDPOINT_SORT_KEY = SortKey("CREATED_AT", webhook_endpoints.c.created_at, datetime)
DELIVERY_SORT_KEY = SortKey("CREATED_AT", webhook_deliveries.c.created_at, datetime)


@dataclass(frozen=True)
class WithSecret:
    """An endpoint and its signing secret, which is shown this once."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class EndpointFields:
    """What createWebhook sets and updateWebhook may change; None: not given."""

    url: str | None = None
    events: Sequence[WebhookEvent] | None = None
    description: tuple[str | None] | None = None  # a 1-tuple when given (None clears it)
    enabled: bool | None = None


def _checked_events(events: Sequence[WebhookEvent]) -> list[WebhookEvent]:
    if not events:
        raise invalid_input("events", "Subscribe to at least one event.")
    return sorted(set(events), key=list(WebhookEvent).index)


def _checked_description(description: str | None) -> str | None:
    if description is None or not description.strip():
        return None
    if violation := unstorable_text(description, "description"):
        raise RuleViolation(violation)
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise invalid_input("description", f"At most {DESCRIPTION_MAX_LENGTH} characters.")
    return description.strip()


class WebhookService:
    def __init__(self, engine: AsyncEngine, settings: Settings, policy: UrlPolicy) -> None:
        self.engine = engine
        self.settings = settings
        self.policy = policy

    async def _checked_url(self, url: str) -> str:
        url = url.strip()
        if violation := unstorable_text(url, "url"):
            raise RuleViolation(violation)
        try:
            await self.policy.target(url)
        except UnsafeUrl as refused:
            raise invalid_input("url", str(refused)) from None
        return url

    async def _checked(self, fields: EndpointFields) -> EndpointFields:
        """The fields normalised; every invalid one reported at once, nothing written."""
        violations: list[Violation] = []
        url = events = description = None
        try:
            url = None if fields.url is None else await self._checked_url(fields.url)
        except RuleViolation as violation:
            violations.extend(violation.violations)
        try:
            events = None if fields.events is None else _checked_events(fields.events)
        except RuleViolation as violation:
            violations.extend(violation.violations)
        try:
            if fields.description is not None:
                description = (_checked_description(fields.description[0]),)
        except RuleViolation as violation:
            violations.extend(violation.violations)
        if violations:
            raise RuleViolation(*violations)
        return EndpointFields(url, events, description, fields.enabled)

    async def create(self, actor: Actor, fields: EndpointFields) -> WithSecret:
        require(actor, Permission.MANAGE_WEBHOOKS)
        checked = await self._checked(fields)
        if checked.url is None or checked.events is None:
            raise ValueError("createWebhook needs a url and events")
        secret = new_secret()
        async with self.engine.connect() as conn:
            endpoint = await db.insert_endpoint(
                conn,
                checked.url,
                checked.description[0] if checked.description else None,
                checked.events,
                True if checked.enabled is None else checked.enabled,
                secret,
            )
        return WithSecret(endpoint, secret)

    async def update(
        self, actor: Actor, endpoint_id: int, fields: EndpointFields
    ) -> WebhookEndpoint:
        require(actor, Permission.MANAGE_WEBHOOKS)
        checked = await self._checked(fields)
        async with self.engine.connect() as conn:
            endpoint = await db.update_endpoint(
                conn, endpoint_id, checked.url, checked.description, checked.events, checked.enabled
            )
        if endpoint is None:
            raise not_found("webhook", "webhook_id")
        return endpoint

    async def delete(self, actor: Actor, endpoint_id: int) -> None:
        require(actor, Permission.MANAGE_WEBHOOKS)
        async with self.engine.connect() as conn:
            if not await db.delete_endpoint(conn, endpoint_id):
                raise not_found("webhook", "webhook_id")

    async def rotate_secret(self, actor: Actor, endpoint_id: int) -> WithSecret:
        require(actor, Permission.MANAGE_WEBHOOKS)
        secret = new_secret()
        grace = timedelta(seconds=self.settings.webhook_secret_grace_s)
        async with self.engine.connect() as conn:
            endpoint = await db.rotate_secret(conn, endpoint_id, secret, grace)
        if endpoint is None:
            raise not_found("webhook", "webhook_id")
        return WithSecret(endpoint, secret)

    async def redeliver(self, actor: Actor, delivery_id: int) -> WebhookDelivery:
        require(actor, Permission.MANAGE_WEBHOOKS)
        async with self.engine.connect() as conn:
            delivery = await db.redeliver(conn, delivery_id)
            if delivery is None:
                if await db.delivery_by_id(conn, delivery_id) is None:
                    raise not_found("delivery", "delivery_id")
                raise RuleViolation(
                    Violation(
                        ErrorCode.INVALID_TRANSITION,
                        "The delivery is still pending; it is sent again once it has been "
                        "delivered or has failed.",
                        ("delivery_id",),
                    )
                )
        return delivery

    async def endpoints_page(self, actor: Actor, args: PageArgs) -> Page[WebhookEndpoint]:
        require(actor, Permission.MANAGE_WEBHOOKS)
        return await self._page(
            webhook_endpoints, ENDPOINT_SORT_KEY, [], db.endpoint_from_row, args
        )

    async def deliveries_page(
        self,
        actor: Actor,
        endpoint_id: int,
        args: PageArgs,
        statuses: Sequence[DeliveryStatus] | None = None,
    ) -> Page[WebhookDelivery]:
        """Newest first."""
        require(actor, Permission.MANAGE_WEBHOOKS)
        conditions = [webhook_deliveries.c.endpoint_id == endpoint_id]
        if statuses is not None:
            conditions.append(webhook_deliveries.c.status.in_([s.value for s in statuses]))
        return await self._page(
            webhook_deliveries, DELIVERY_SORT_KEY, conditions, db.delivery_from_row, args
        )

    async def _page(
        self,
        table: Table,
        sort: SortKey,
        conditions: Sequence[ColumnElement[bool]],
        to_node: Callable[[Columns], T],
        args: PageArgs,
    ) -> Page[T]:
        query = KeysetQuery(
            engine=self.engine,
            table=table,
            sort=sort,
            descending=True,
            conditions=conditions,
            to_node=to_node,
            default_page_size=self.settings.default_page_size,
            max_page_size=self.settings.max_page_size,
        )
        return await query.page(args)
