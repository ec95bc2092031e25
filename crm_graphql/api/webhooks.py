"""Webhook management over GraphQL (admins only; docs/webhooks.md). Mutations report broken
rules in `errors`, as the others do; another role gets FORBIDDEN."""

from datetime import datetime
from typing import Any

import strawberry

from crm_graphql.api.ids import decode_id_of, encode_global_id
from crm_graphql.api.mutations import attempt
from crm_graphql.api.queries import as_graphql_error
from crm_graphql.api.types import CountedConnection, LeadInfo, UserError, page_info
from crm_graphql.domain import webhooks as domain
from crm_graphql.domain.errors import RuleViolation
from crm_graphql.services.pagination import Page, PageArgs
from crm_graphql.services.webhooks import EndpointFields, WithSecret
from crm_graphql.webhooks import payloads

# Aliases of the domain enums, registered as GraphQL enums on the classes (api/types.py).
WebhookEvent = domain.WebhookEvent
WebhookDeliveryStatus = domain.DeliveryStatus
strawberry.enum(WebhookEvent, description="What a webhook is sent for.")
strawberry.enum(WebhookDeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type(
    name="WebhookDelivery", description="One event sent (or to be sent) to one endpoint."
)
class WebhookDeliveryType:
    record: strawberry.Private[domain.WebhookDelivery]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_global_id("WebhookDelivery", self.record.id))

    @strawberry.field(description="The `webhook-id` header: the same on every attempt.")
    def event_id(self) -> str:
        return payloads.event_id(self.record.stage_change_id)

    @strawberry.field
    def event(self) -> WebhookEvent:
        return self.record.event

    @strawberry.field
    def status(self) -> WebhookDeliveryStatus:
        return self.record.status

    @strawberry.field(description="Attempts made since the event (or the last redelivery).")
    def attempt_count(self) -> int:
        return self.record.attempts

    @strawberry.field(description="The HTTP status of the last attempt, if it got an answer.")
    def last_status_code(self) -> int | None:
        return self.record.last_status_code

    @strawberry.field(description="Why the last attempt failed, if it did.")
    def last_error(self) -> str | None:
        return self.record.last_error

    @strawberry.field
    def last_attempt_at(self) -> datetime | None:
        return self.record.last_attempt_at

    @strawberry.field(description="When it is tried next; null once delivered or failed.")
    def next_attempt_at(self) -> datetime | None:
        return self.record.next_attempt_at

    @strawberry.field
    def delivered_at(self) -> datetime | None:
        return self.record.delivered_at

    @strawberry.field
    def created_at(self) -> datetime:
        return self.record.created_at


@strawberry.type
class WebhookDeliveryEdge:
    node: WebhookDeliveryType
    cursor: str


@strawberry.type
class WebhookDeliveryConnection(CountedConnection):
    edges: list[WebhookDeliveryEdge]


@strawberry.type(name="Webhook", description="An endpoint the server calls when events happen.")
class WebhookType:
    record: strawberry.Private[domain.WebhookEndpoint]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_global_id("Webhook", self.record.id))

    @strawberry.field
    def url(self) -> str:
        return self.record.url

    @strawberry.field
    def description(self) -> str | None:
        return self.record.description

    @strawberry.field
    def events(self) -> list[WebhookEvent]:
        return list(self.record.events)

    @strawberry.field(description="A disabled endpoint is sent nothing, and queues nothing.")
    def enabled(self) -> bool:
        return self.record.enabled

    @strawberry.field
    def created_at(self) -> datetime:
        return self.record.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.record.updated_at

    @strawberry.field(description="Deliveries to this endpoint, newest first.")
    async def deliveries(
        self,
        info: LeadInfo,
        first: int | None = None,
        after: str | None = None,
        status: list[WebhookDeliveryStatus] | None = None,
    ) -> WebhookDeliveryConnection:
        try:
            page = await info.context.services.webhooks.deliveries_page(
                info.context.actor, self.record.id, PageArgs(first=first, after=after), status
            )
        except RuleViolation as violation:
            raise as_graphql_error(violation) from None
        return WebhookDeliveryConnection(
            edges=[
                WebhookDeliveryEdge(node=WebhookDeliveryType(record=e.node), cursor=e.cursor)
                for e in page.edges
            ],
            page_info=page_info(page),
            page=page,
        )


@strawberry.type
class WebhookEdge:
    node: WebhookType
    cursor: str


@strawberry.type
class WebhookConnection(CountedConnection):
    edges: list[WebhookEdge]

    @classmethod
    def from_page(cls, page: Page[domain.WebhookEndpoint]) -> "WebhookConnection":
        return cls(
            edges=[
                WebhookEdge(node=WebhookType(record=e.node), cursor=e.cursor) for e in page.edges
            ],
            page_info=page_info(page),
            page=page,
        )


@strawberry.input
class CreateWebhookInput:
    url: str = strawberry.field(
        description="http(s); in production https, to a public address (docs/webhooks.md)."
    )
    events: list[WebhookEvent]
    description: str | None = None
    enabled: bool = True


@strawberry.input
class UpdateWebhookInput:
    webhook_id: strawberry.ID
    url: str | None = strawberry.field(default=strawberry.UNSET, description="Left out: kept.")
    events: list[WebhookEvent] | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: kept; changes only later events."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: kept; null clears it."
    )
    enabled: bool | None = strawberry.field(default=strawberry.UNSET, description="Left out: kept.")


@strawberry.input
class WebhookIdInput:
    webhook_id: strawberry.ID


@strawberry.input
class RedeliverWebhookInput:
    delivery_id: strawberry.ID


@strawberry.type
class WebhookWithSecretPayload:
    webhook: WebhookType | None
    secret: str | None = strawberry.field(
        description="The signing secret (whsec_...). Shown only in this answer: store it now."
    )
    errors: list[UserError]

    @classmethod
    def of(cls, result: WithSecret | None, errors: list[UserError]) -> "WebhookWithSecretPayload":
        return cls(
            webhook=WebhookType(record=result.endpoint) if result else None,
            secret=result.secret if result else None,
            errors=errors,
        )


@strawberry.type
class UpdateWebhookPayload:
    webhook: WebhookType | None
    errors: list[UserError]


@strawberry.type
class DeleteWebhookPayload:
    deleted_webhook_id: strawberry.ID | None
    errors: list[UserError]


@strawberry.type
class RedeliverWebhookPayload:
    delivery: WebhookDeliveryType | None
    errors: list[UserError]


def _given(value: Any) -> Any:
    return None if value is strawberry.UNSET else value


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Register an endpoint; the answer holds its secret, once.")
    async def create_webhook(
        self, info: LeadInfo, input: CreateWebhookInput
    ) -> WebhookWithSecretPayload:
        webhooks = info.context.services.webhooks
        fields = EndpointFields(input.url, input.events, (input.description,), input.enabled)
        result, errors = await attempt(
            info.context, lambda: webhooks.create(info.context.actor, fields)
        )
        return WebhookWithSecretPayload.of(result, errors)

    @strawberry.mutation(description="Change an endpoint's URL, events, description or state.")
    async def update_webhook(
        self, info: LeadInfo, input: UpdateWebhookInput
    ) -> UpdateWebhookPayload:
        webhooks = info.context.services.webhooks
        description = None if input.description is strawberry.UNSET else (input.description,)
        fields = EndpointFields(
            _given(input.url), _given(input.events), description, _given(input.enabled)
        )

        async def action() -> domain.WebhookEndpoint:
            endpoint_id = decode_id_of("Webhook", input.webhook_id, "webhookId")
            return await webhooks.update(info.context.actor, endpoint_id, fields)

        endpoint, errors = await attempt(info.context, action)
        return UpdateWebhookPayload(
            webhook=WebhookType(record=endpoint) if endpoint else None, errors=errors
        )

    @strawberry.mutation(description="Remove an endpoint and its deliveries.")
    async def delete_webhook(self, info: LeadInfo, input: WebhookIdInput) -> DeleteWebhookPayload:
        webhooks = info.context.services.webhooks

        async def action() -> strawberry.ID:
            endpoint_id = decode_id_of("Webhook", input.webhook_id, "webhookId")
            await webhooks.delete(info.context.actor, endpoint_id)
            return input.webhook_id

        deleted, errors = await attempt(info.context, action)
        return DeleteWebhookPayload(deleted_webhook_id=deleted, errors=errors)

    @strawberry.mutation(
        description="A new signing secret, returned once; the previous one also signs for a "
        "grace period (CRM_WEBHOOK_SECRET_GRACE_S, a day by default)."
    )
    async def rotate_webhook_secret(
        self, info: LeadInfo, input: WebhookIdInput
    ) -> WebhookWithSecretPayload:
        webhooks = info.context.services.webhooks

        async def action() -> WithSecret:
            endpoint_id = decode_id_of("Webhook", input.webhook_id, "webhookId")
            return await webhooks.rotate_secret(info.context.actor, endpoint_id)

        result, errors = await attempt(info.context, action)
        return WebhookWithSecretPayload.of(result, errors)

    @strawberry.mutation(
        description="Send a delivered or failed delivery again, with a fresh retry schedule."
    )
    async def redeliver_webhook(
        self, info: LeadInfo, input: RedeliverWebhookInput
    ) -> RedeliverWebhookPayload:
        webhooks = info.context.services.webhooks

        async def action() -> domain.WebhookDelivery:
            delivery_id = decode_id_of("WebhookDelivery", input.delivery_id, "deliveryId")
            return await webhooks.redeliver(info.context.actor, delivery_id)

        delivery, errors = await attempt(info.context, action)
        return RedeliverWebhookPayload(
            delivery=WebhookDeliveryType(record=delivery) if delivery else None, errors=errors
        )


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="Webhook endpoints, newest first (admins only).")
    async def webhooks(
        self, info: LeadInfo, first: int | None = None, after: str | None = None
    ) -> WebhookConnection:
        try:
            page = await info.context.services.webhooks.endpoints_page(
                info.context.actor, PageArgs(first=first, after=after)
            )
        except RuleViolation as violation:
            raise as_graphql_error(violation) from None
        return WebhookConnection.from_page(page)
