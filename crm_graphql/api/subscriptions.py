"""Subscriptions over WebSocket (graphql-transport-ws): live lead stage changes."""

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket

from crm_graphql.api.audiences import audience_of, member_socket, next_frame_prefix, next_message
from crm_graphql.api.ids import decode_id_of
from crm_graphql.api.queries import as_graphql_error
from crm_graphql.api.types import LeadInfo, LeadStage, LeadType
from crm_graphql.db.tables import MAX_ID
from crm_graphql.domain.access import readable_lead_stages
from crm_graphql.domain.errors import RuleViolation
from crm_graphql.domain.lead import LeadStageChanged
from crm_graphql.events.feed import Rendered
from crm_graphql.strawberry_overrides import current_operation

# "Try Again Later": a standard code, retried by the graphql-ws client; resuming with `after`
# set to the last cursor received loses nothing.
CLOSE_TOO_SLOW = 1013
CLOSE_TOO_SLOW_REASON = "subscriber too slow"
CURSOR_PREFIX = "LeadStageChange:"

_closing: set[asyncio.Task[None]] = set()  # keeps close tasks alive until they finish


def encode_change_cursor(change_id: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{change_id}".encode()).decode().rstrip("=")


def decode_change_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, binascii.Error, UnicodeError):
        text = ""
    raw_id = text.removeprefix(CURSOR_PREFIX)
    if not text.startswith(CURSOR_PREFIX) or not raw_id.isdigit() or int(raw_id) > MAX_ID:
        raise GraphQLError(
            "`after` is not a cursor of leadStageChanged.",
            extensions={"code": "INVALID_INPUT", "field": ["after"]},
        )
    return int(raw_id)


@strawberry.type(description="A committed change of a lead's stage.")
class LeadStageChangedEvent:
    lead: LeadType = strawberry.field(description="The lead as it was when the event was sent.")
    from_: LeadStage | None = strawberry.field(name="from", description="Null at creation.")
    to: LeadStage
    at: datetime
    cursor: str = strawberry.field(
        description="Pass as `after` to resume right after this event, on any server."
    )

    @classmethod
    def from_domain(cls, event: LeadStageChanged) -> "LeadStageChangedEvent":
        return cls(
            lead=LeadType.from_domain(event.lead),
            from_=event.change.from_stage,
            to=event.change.to_stage,
            at=event.change.at,
            cursor=encode_change_cursor(event.change.id),
        )


def close_as_too_slow(websocket: WebSocket) -> None:
    async def close() -> None:
        # Waits until the socket drains: a client that reads again gets what was already sent,
        # then this close frame.
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(CLOSE_TOO_SLOW, CLOSE_TOO_SLOW_REASON)

    task = asyncio.create_task(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Stage changes of one lead, or of every lead without `leadId`, as they "
        "commit. With `after` (a cursor from an earlier event), every change after it is "
        "replayed first. A connection that falls too far behind is closed with code 1013."
    )
    async def lead_stage_changed(
        self, info: LeadInfo, lead_id: strawberry.ID | None = None, after: str | None = None
    ) -> AsyncIterator[LeadStageChangedEvent]:
        context = info.context
        actor = context.actor  # UNAUTHENTICATED without a valid, unexpired token
        readable_lead_stages(actor)  # FORBIDDEN unless the role may read some leads
        lead_pk = None
        if lead_id is not None:
            try:
                lead_pk = decode_id_of("Lead", lead_id, "leadId")
            except RuleViolation as violation:
                raise as_graphql_error(violation) from None
            # A lead the caller may not read loads as None: it does not exist for them.
            context.renew_loaders()  # the socket's earlier operations may have cached it
            if await context.loaders.lead.load(lead_pk) is None:
                raise GraphQLError(
                    "No lead has this ID.", extensions={"code": "NOT_FOUND", "field": ["leadId"]}
                )
        position = decode_change_cursor(after) if after is not None else None
        websocket = context.request
        # Over graphql-transport-ws, live events are executed once for every subscriber with
        # the same document, variables and rights, and sent here framed with this operation's
        # id (api/audiences.py). Replayed events are executed for this subscriber alone.
        operation = current_operation.get()
        audience = (
            audience_of(
                info.schema,  # type: ignore[arg-type]
                operation,
                info.field_name,
                context,
                actor,
                LeadStageChangedEvent.from_domain,
            )
            if operation is not None
            else None
        )
        prefix = next_frame_prefix(operation.id) if operation is not None else b""
        changes = context.services.changes.changes(
            actor,
            lead_pk,
            position,
            on_overflow=lambda: close_as_too_slow(websocket),
            audience=audience,
            sink=member_socket(websocket.scope, prefix, context.authentication)
            if audience is not None
            else None,
        )

        async def events() -> AsyncIterator[LeadStageChangedEvent]:
            async with contextlib.aclosing(changes):
                async for change in changes:
                    if isinstance(change, Rendered):
                        context.check_token()  # else UNAUTHENTICATED ends the subscription
                        await websocket.send_text(next_message(prefix, change.payload))
                        continue
                    context.start_subscription_event()
                    yield LeadStageChangedEvent.from_domain(change)

        return events()
