"""Subscription events executed once per audience instead of once per subscriber.

Subscribers who sent the same document, with the same values for the variables its event
selection uses, and who see the same things (their role: every read rule in domain/access.py
depends on the role alone) would each get the very same `next` payload for an event. They form
one audience of the change feed (events/feed.py): each event is executed and encoded once for
all of them, and each socket only frames that payload with its own operation id. The root
field's own arguments (`leadId`, `after`) choose which events a subscriber gets and from where,
not how an event renders, so they are left out of the key: the feed still filters and replays
per subscriber.
"""

import asyncio
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    VariableNode,
    Visitor,
    get_operation_ast,
    visit,
)
from graphql.language.visitor import SKIP, VisitorAction
from starlette.types import Scope
from strawberry.execution import optimized_is_awaitable

from crm_graphql.api.context import Context
from crm_graphql.domain.access import Actor
from crm_graphql.domain.lead import LeadStageChanged
from crm_graphql.events.feed import Render
from crm_graphql.strawberry_overrides import (
    SubscriptionOperation,
    mask_errors,
    subscription_event_execution,
)
from crm_graphql.tokens import Authentication, InvalidToken
from crm_graphql.web.frames import FrameWriter, frame_writer

if TYPE_CHECKING:
    from crm_graphql.api.schema import CrmSchema

# The audience's own context never expires: each member's token is checked as it receives.
NEVER = datetime.max.replace(tzinfo=UTC)


class EventVariables(Visitor):
    """The variables a document uses anywhere but in the root field's arguments."""

    def __init__(self, root_field: FieldNode | None) -> None:
        super().__init__()
        self.root_field = root_field
        self.names: set[str] = set()

    def enter_variable_definition(self, *_: object) -> VisitorAction:
        return SKIP  # a declaration, not a use

    def enter_field(self, node: FieldNode, *_: object) -> VisitorAction:
        if node is not self.root_field:
            return None
        for part in (*(node.directives or ()), node.selection_set):
            if part is not None:
                visit(part, self)
        return SKIP

    def enter_variable(self, node: VariableNode, *_: object) -> None:
        self.names.add(node.name.value)


def root_field_of(
    document: DocumentNode, operation_name: str | None, field_name: str
) -> FieldNode | None:
    """The subscription's root field when the operation selects it directly, else None (then
    every variable counts as one the events use)."""
    operation = get_operation_ast(document, operation_name)
    selections = operation.selection_set.selections if operation else ()
    field = selections[0] if len(selections) == 1 else None
    if isinstance(field, FieldNode) and field.name.value == field_name:
        return field
    return None


def audience_key(
    document: DocumentNode,
    operation: SubscriptionOperation[Any, Any],
    field_name: str,
    actor: Actor,
) -> Hashable:
    used = EventVariables(root_field_of(document, operation.operation_name, field_name))
    visit(document, used)
    variables = operation.variables or {}
    relevant = {name: variables[name] for name in sorted(used.names) if name in variables}
    return (
        operation.query,
        operation.operation_name,
        actor.role,
        orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS),
    )


def shared_render(
    schema: "CrmSchema",
    document: DocumentNode,
    operation: SubscriptionOperation[Any, Any],
    context: Context,
    actor: Actor,
    root_value: Callable[[LeadStageChanged], object],
) -> Render | None:
    """What executes and encodes events for the audience: the subscription's executor, built
    once, with a context of its own for the actor's rights. None if it cannot be built (the
    subscriber then executes its events itself, as before)."""
    audience_context = Context(context.services, Authentication(actor, NEVER))
    execute = subscription_event_execution(
        schema, document, audience_context, operation.variables, operation.operation_name
    )
    if execute is None:
        return None

    async def render(events: Sequence[LeadStageChanged]) -> list[bytes]:
        # Fresh loaders per batch, as each subscriber's own execution renews them per event.
        audience_context.start_subscription_event()
        results: list[Any] = [execute(root_value(event)) for event in events]
        pending = [index for index, result in enumerate(results) if optimized_is_awaitable(result)]
        # Together, so that the events' loader calls batch into one query each.
        for index, result in zip(
            pending, await asyncio.gather(*(results[i] for i in pending)), strict=True
        ):
            results[index] = result
        return [next_payload(schema, result) for result in results]

    return render


def next_payload(schema: "CrmSchema", result: ExecutionResult) -> bytes:
    """A `next` message's payload as Strawberry's handler writes it, errors logged once and made
    client-safe as for a subscriber's own execution."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        errors = list(result.errors)
        schema.process_errors(errors)
        payload["errors"] = [error.formatted for error in mask_errors(schema.masking, errors)]
    return orjson.dumps(payload)


def audience_of(
    schema: "CrmSchema",
    operation: SubscriptionOperation[Any, Any],
    field_name: str,
    context: Context,
    actor: Actor,
    root_value: Callable[[LeadStageChanged], object],
) -> tuple[Hashable, Render] | None:
    document = schema.documents.parse(operation.query)
    render = shared_render(schema, document, operation, context, actor, root_value)
    if render is None:
        return None
    return audience_key(document, operation, field_name, actor), render


def next_frame_prefix(operation_id: str) -> bytes:
    """The start of a `next` message for this operation; the payload and `}` follow."""
    return b'{"id":' + orjson.dumps(operation_id) + b',"type":"next","payload":'


def next_message(prefix: bytes, payload: bytes) -> str:
    """A member's `next` message: its operation's prefix, the audience's payload."""
    return (prefix + payload + b"}").decode()


class MemberSocket:
    """An audience member's socket as the change feed's Sink: each rendered payload framed
    with the member's operation id and written straight to the socket (web/frames.py), while
    the member's token is valid (after that its own task sends, and ends the subscription)."""

    __slots__ = ("_prefix", "_valid_until", "_writer")

    def __init__(self, writer: FrameWriter, prefix: bytes, valid_until: datetime) -> None:
        self._writer = writer
        self._prefix = prefix
        self._valid_until = valid_until.timestamp()

    def open(self, now: float) -> bool:
        return now < self._valid_until and self._writer.open()

    def write(self, payloads: list[bytes]) -> None:
        prefix = self._prefix
        self._writer.write_text([(prefix, payload, b"}") for payload in payloads])


def member_socket(
    scope: Scope, prefix: bytes, authentication: Authentication | InvalidToken
) -> MemberSocket | None:
    """The member's socket as a Sink, or None where frames must go through ASGI."""
    writer = frame_writer(scope)
    if writer is None or not isinstance(authentication, Authentication):
        return None
    return MemberSocket(writer, prefix, authentication.expires_at)
