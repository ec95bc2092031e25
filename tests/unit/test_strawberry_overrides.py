"""One group of tests per section of crm_graphql/strawberry_overrides.py. Each runs upstream's own
path beside ours on the same input, or checks the upstream behaviour an override relies on or
replaces, so that it fails when Strawberry or graphql-core changes under the override."""

import inspect
import json
import tomllib
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import strawberry
from graphql import GraphQLError, GraphQLSchema, parse
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxTokensLimiter,
)
from strawberry.http import GraphQLRequestData
from strawberry.schema import schema as strawberry_schema
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.name_converter import NameConverter
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.arguments import InputContext
from strawberry.types.graphql import OperationType

from crm_graphql.api import inputs
from crm_graphql.api.limits import QueryLimits, create_limits_rule
from crm_graphql.settings import Settings
from crm_graphql.strawberry_overrides import (
    CHECKED_AGAINST,
    STRAWBERRY_RULES,
    WS_UNAUTHORIZED,
    CachedDocuments,
    CachedNameConverter,
    ConnectionUnauthenticated,
    DirectExecutionSchema,
    DocumentCache,
    EventExecutor,
    OverriddenGraphQL,
    SubscribeRefused,
    TextFrameWebSocketAdapter,
    TransportWSHandler,
    converted_once,
    current_operation,
    graphql_schema,
    mask_errors,
    subscription_event_execution,
)

ROOT = Path(__file__).resolve().parents[2]


@strawberry.type
class Item:
    name: str


@strawberry.input
class ItemInput:
    name: str
    given_name: str | None = None


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"

    @strawberry.field
    def named(self, item: ItemInput) -> str:
        return item.name

    @strawberry.field
    def item(self) -> Item:
        return Item(name="one")

    @strawberry.field
    def broken(self) -> str | None:
        raise ValueError("a secret")

    @strawberry.field
    def refused(self) -> str | None:
        raise GraphQLError("told to the client")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def rename(self, to: str) -> Item:
        return Item(name=to)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, upto: int = 2) -> AsyncIterator[int]:
        for number in range(upto):
            yield number


def masking() -> MaskErrors:
    """As the app's ClientSafeErrors: the client's own errors are shown, the rest masked."""
    return MaskErrors(
        should_mask_error=lambda error: not isinstance(error.original_error, GraphQLError | None)
    )


def documents(max_tokens: int = 1000, introspection: bool = True) -> DocumentCache:
    rule = create_limits_rule(QueryLimits.from_settings(Settings(max_query_depth=3)))
    return DocumentCache(max_tokens=max_tokens, extra_rules=(rule,), introspection=introspection)


def direct_schema(cache: DocumentCache | None = None) -> DirectExecutionSchema:
    return DirectExecutionSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        documents=cache or documents(),
        masking=masking,
    )


def upstream_schema(cache: DocumentCache | None = None) -> strawberry.Schema:
    """Strawberry's own execution, with the extensions the direct path stands in for."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[(cache or documents()).extension, masking],
    )


def outcome(result: ExecutionResult) -> tuple[Any, Any]:
    return result.data, [error.formatted for error in result.errors or ()]


# --- versions ---------------------------------------------------------------------------------


def test_the_installed_versions_are_the_ones_the_overrides_were_checked_against():
    for package, checked in CHECKED_AGAINST.items():
        assert version(package) == checked, f"{package}: re-check strawberry_overrides.py"


def test_pyproject_pins_exactly_the_checked_versions():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, checked in CHECKED_AGAINST.items():
        assert f"{package}=={checked}" in dependencies


# --- 1. the document cache --------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "{ hello }",
        "{ nope }",
        "{ hello(name: 1) }",
        "{ __schema { types { name } } }",
        "{ item { name } item { name } " + "hello " * 20 + "}",
        "{ hello",
    ],
)
@pytest.mark.parametrize("introspection", [True, False])
async def test_the_document_cache_refuses_what_strawberry_s_extensions_refuse(
    query: str, introspection: bool
):
    rule = create_limits_rule(QueryLimits.from_settings(Settings(max_query_depth=3)))
    strawberrys = strawberry.Schema(
        query=Query,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=30),
            lambda: AddValidationRules([rule]),
            *([] if introspection else [DisableIntrospection]),
        ],
    )
    ours = strawberry.Schema(
        query=Query,
        extensions=[documents(max_tokens=30, introspection=introspection).extension],
    )
    assert outcome(await ours.execute(query)) == outcome(await strawberrys.execute(query))


def test_strawberry_validates_with_the_specification_s_rules_and_its_own(
    monkeypatch: pytest.MonkeyPatch,
):
    # The cache lists Strawberry's rules itself (to hide suggestions): the same ones.
    used: list[tuple[Any, ...]] = []
    monkeypatch.setattr(strawberry_schema, "validate", lambda _s, _d, rules: used.append(rules))
    strawberry_schema.validate_document(direct_schema()._schema, parse("{ hello }"), ())
    assert used == [STRAWBERRY_RULES]


async def test_strawberry_takes_the_document_and_the_errors_the_extension_sets():
    cache = documents()
    cache.parse = lambda _query: parse("subscription { count(upto: 1) }")
    events = await upstream_schema(cache).subscribe("subscription { never }")
    assert not isinstance(events, ExecutionResult)
    assert (await anext(events)).data == {"count": 0}

    cache.validate = lambda _schema, _query: [GraphQLError("from the cache")]
    refused = await upstream_schema(cache).subscribe("subscription { count }")
    first = refused if isinstance(refused, ExecutionResult) else await anext(refused)
    assert [error.message for error in first.errors or ()] == ["from the cache"]


# --- 2. error masking outside the runner -----------------------------------------------------


async def test_masking_outside_the_runner_is_what_the_extension_does():
    query = "{ hello broken refused }"
    unmasked = await strawberry.Schema(query=Query).execute(query)
    masked = await strawberry.Schema(query=Query, extensions=[masking]).execute(query)
    ours = mask_errors(masking(), list(unmasked.errors or ()))
    assert [error.formatted for error in ours] == [e.formatted for e in masked.errors or ()]
    assert [error.message for error in ours] == ["Unexpected error.", "told to the client"]


# --- 3. queries and mutations without the extension runner -----------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "operation_name"),
    [
        ("{ hello }", None, None),
        ("query Q($n: String!) { hello(name: $n) }", {"n": "you"}, None),
        ("query Q($n: String!) { hello(name: $n) }", {"n": 3}, None),
        ("query Q($n: String!) { hello(name: $n) }", {}, None),
        ("{ item { name } broken refused }", None, None),
        ("{ nope }", None, None),
        ("{ hello", None, None),
        ("query A { hello } query B { item { name } }", None, "B"),
        ('mutation { rename(to: "two") { name } }', None, None),
        ("{ a: hello b: hello c: hello d: hello }", None, None),
    ],
)
async def test_direct_execution_answers_as_strawberry_s_execute(
    query: str, variables: dict[str, Any] | None, operation_name: str | None
):
    ours = await direct_schema().execute(
        query, variable_values=variables, operation_name=operation_name
    )
    strawberrys = await upstream_schema().execute(
        query, variable_values=variables, operation_name=operation_name
    )
    assert outcome(ours) == outcome(strawberrys)


@pytest.mark.parametrize(
    ("query", "operation_name", "allowed", "raised"),
    [
        ("", None, None, MissingQueryError),
        ("query A { hello }", "B", None, CannotGetOperationTypeError),
        (
            'mutation { rename(to: "x") { name } }',
            None,
            {OperationType.QUERY},
            InvalidOperationTypeError,
        ),
    ],
)
async def test_direct_execution_raises_what_strawberry_s_execute_raises(
    query: str, operation_name: str | None, allowed: set[OperationType] | None, raised: type
):
    for schema in (direct_schema(), upstream_schema()):
        with pytest.raises(raised):
            await schema.execute(
                query, operation_name=operation_name, allowed_operation_types=allowed
            )


async def test_direct_execution_refuses_subscriptions_strawberry_lets_through_over_http():
    result = await direct_schema().execute("subscription { count }")
    assert [error.message for error in result.errors or ()] == [
        "Subscriptions are not served over HTTP."
    ]
    assert OperationType.SUBSCRIPTION in OperationType.from_http("POST")


@pytest.mark.parametrize("production", [True, False])
async def test_without_suggestions_none_is_left_in_any_error(production: bool):
    query = "query Q($i: ItemInput!) { named(item: $i) }"
    config = StrawberryConfig(disable_field_suggestions=production)
    schema = strawberry.Schema(query=Query, config=config)
    strawberrys = await schema.execute(query, variable_values={"i": {"name": "x", "nme": "y"}})
    # Strawberry's own removal leaves suggestions outside "Cannot query field" messages.
    assert "Did you mean" in strawberrys.errors[0].message
    error = GraphQLError(strawberrys.errors[0].message)
    DirectExecutionSchema.remove_field_suggestion(error)
    assert "Did you mean" not in error.message
    assert error.message.startswith("Variable '$i' has invalid value")


def test_the_graphql_core_schema_is_strawberry_s_private_member():
    schema = direct_schema()
    assert isinstance(schema._schema, GraphQLSchema)
    assert graphql_schema(schema) is schema._schema


def test_direct_execution_takes_strawberry_s_execute_parameters():
    def parameters(function: Any) -> list[tuple[str, Any, Any]]:
        return [
            (parameter.name, parameter.kind, parameter.default)
            for parameter in inspect.signature(function).parameters.values()
        ]

    assert parameters(DirectExecutionSchema.execute) == parameters(strawberry.Schema.execute)


# --- 4. subscription events: an executor memo per event --------------------------------------


def test_graphql_core_s_per_event_executor_still_shares_the_memo():
    # When this fails, graphql-core's copies no longer share the memo: EventExecutor can go.
    # (tests/unit/test_subscription_memory.py measures what the sharing costs.)
    graphql_schema = direct_schema()._schema
    document = parse("subscription { count }")
    upstream = StrawberryGraphQLCoreExecutionContext.build(graphql_schema, document)
    ours = EventExecutor.build(graphql_schema, document)
    assert isinstance(upstream, StrawberryGraphQLCoreExecutionContext)
    assert isinstance(ours, EventExecutor)
    assert upstream.build_per_event_executor(1)._relevant_sub_fields is (
        upstream._relevant_sub_fields
    )
    event = ours.build_per_event_executor(1)
    assert event._relevant_sub_fields == {}
    assert event._relevant_sub_fields is not ours._relevant_sub_fields


# --- 5. GraphQL names converted once ---------------------------------------------------------


@pytest.mark.parametrize("auto_camel_case", [True, False])
def test_cached_names_are_strawberry_s_names(auto_camel_case: bool):
    names = ["name", "given_name", "lead_id", "min_score", "has_business_domain", "from_", "_x"]
    ours = CachedNameConverter(auto_camel_case=auto_camel_case)
    strawberrys = NameConverter(auto_camel_case=auto_camel_case)
    for name in names:
        assert ours.apply_naming_config(name) == strawberrys.apply_naming_config(name)
    field = ItemInput.__strawberry_definition__.fields[1]  # type: ignore[attr-defined]
    assert ours.from_field(field) == strawberrys.from_field(field)


def test_strawberry_reaches_a_field_s_graphql_name_through_apply_naming_config():
    asked: list[str] = []

    class Recording(NameConverter):
        def apply_naming_config(self, name: str) -> str:
            asked.append(name)
            return super().apply_naming_config(name)

    field = ItemInput.__strawberry_definition__.fields[1]  # type: ignore[attr-defined]
    assert Recording().from_field(field) == "givenName"
    assert asked == ["given_name"]


# --- 6. inputs built from a plan made once ---------------------------------------------------
# tests/unit/test_inputs.py builds every input of the schema both ways and compares them.


async def test_strawberry_builds_an_input_through_its_from_input_hook():
    received: list[tuple[type, dict[str, Any], InputContext]] = []

    @strawberry.input
    class Hooked:
        name: str

    def from_input(type_: type, value: dict[str, Any], context: InputContext) -> Any:
        received.append((type_, value, context))
        return type_(name=value["name"].upper())

    Hooked.__strawberry_definition__.from_input = from_input  # type: ignore[attr-defined]

    @strawberry.type
    class HookQuery:
        @strawberry.field
        def echo(self, value: Hooked) -> str:
            return value.name

    schema = strawberry.Schema(query=HookQuery, config=StrawberryConfig())
    result = await schema.execute('{ echo(value: { name: "x" }) }')
    assert result.data == {"echo": "X"}
    [(type_, value, context)] = received
    assert type_ is Hooked
    assert value == {"name": "x"}
    assert context.config is schema.config
    assert context.scalar_registry is schema.schema_converter.scalar_registry
    assert context.convert("y", str, "name") == "y"


async def test_strawberry_skips_its_maybe_null_check_for_an_input_with_a_hook():
    # Why converted_once refuses Maybe fields: with the hook, a null would get through.
    @strawberry.input
    class WithMaybe:
        note: strawberry.Maybe[str]

    WithMaybe.__strawberry_definition__.from_input = (  # type: ignore[attr-defined]
        lambda type_, value, _context: type_(note=value.get("note"))
    )

    @strawberry.type
    class MaybeQuery:
        @strawberry.field
        def echo(self, value: WithMaybe) -> str:
            return repr(value.note)

    result = await strawberry.Schema(query=MaybeQuery).execute("{ echo(value: { note: null }) }")
    assert result.errors is None

    @strawberry.input
    class Refused:
        note: strawberry.Maybe[str]

    with pytest.raises(TypeError, match="Maybe is not supported"):
        converted_once(Refused)


def test_the_app_s_inputs_use_the_hook():
    definition = inputs.CreateLeadInput.__strawberry_definition__  # type: ignore[attr-defined]
    assert definition.from_input is not None


# --- 7. graphql-transport-ws: 4401 for bad credentials ---------------------------------------


class RefusingView(GraphQL[None, None]):
    async def on_ws_connect(self, context: Any) -> None:
        raise ConnectionUnauthenticated("no token")


def first_close_code(view: GraphQL[None, None]) -> int:
    client = TestClient(view, raise_server_exceptions=False)
    with client.websocket_connect("/", subprotocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL]) as socket:
        socket.send_json({"type": "connection_init"})
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    return closed.value.code


def test_a_connection_refused_for_its_credentials_closes_with_4401():
    view = RefusingView(strawberry.Schema(query=Query, subscription=Subscription))
    view.graphql_transport_ws_handler_class = TransportWSHandler[None, None]
    assert first_close_code(view) == WS_UNAUTHORIZED


class BytesView(GraphQL[None, None]):
    """Encodes JSON to bytes, as the app's view does (orjson)."""

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def first_frame(view: GraphQL[None, None]) -> dict[str, Any]:
    client = TestClient(view, raise_server_exceptions=False)
    with client.websocket_connect("/", subprotocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL]) as socket:
        socket.send_json({"type": "connection_init"})
        return socket.receive()


def test_messages_go_out_as_text_frames_where_strawberry_sends_bytes():
    schema = strawberry.Schema(query=Query, subscription=Subscription)
    assert "bytes" in first_frame(BytesView(schema))
    view = BytesView(schema)
    view.websocket_adapter_class = TextFrameWebSocketAdapter
    frame = first_frame(view)
    assert json.loads(frame["text"]) == {"type": "connection_ack"}


def test_an_operation_s_task_knows_its_operation():
    seen: list[Any] = []

    @strawberry.type
    class Watching:
        @strawberry.subscription
        async def watch(self) -> AsyncIterator[str]:
            operation = current_operation.get()
            seen.append(operation)
            yield operation.operation_name if operation else "none"

    view = GraphQL[None, None](strawberry.Schema(query=Query, subscription=Watching))
    view.graphql_transport_ws_handler_class = TransportWSHandler[None, None]
    client = TestClient(view)
    with client.websocket_connect("/", subprotocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL]) as socket:
        socket.send_json({"type": "connection_init"})
        assert socket.receive_json() == {"type": "connection_ack"}
        subscribe = {"query": "subscription W { watch }", "operationName": "W"}
        socket.send_json({"id": "1", "type": "subscribe", "payload": subscribe})
        assert socket.receive_json()["payload"] == {"data": {"watch": "W"}}
    [operation] = seen
    assert operation.id == "1"


class CountingToThree(TransportWSHandler[None, None]):
    """Runs every subscribe message as `count(upto: 3)`, and refuses documentId "no"."""

    def subscribed_document(self, payload: Any) -> object:
        if payload.get("documentId") == "no":
            raise SubscribeRefused({"message": "not this one", "extensions": {"code": "NO"}})
        return "subscription { count(upto: 3) }"


def subscribe_through(handler: type[TransportWSHandler[None, None]], payload: Any) -> list[Any]:
    view = GraphQL[None, None](strawberry.Schema(query=Query, subscription=Subscription))
    view.graphql_transport_ws_handler_class = handler
    client = TestClient(view)
    with client.websocket_connect("/", subprotocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL]) as socket:
        socket.send_json({"type": "connection_init"})
        assert socket.receive_json() == {"type": "connection_ack"}
        socket.send_json({"id": "1", "type": "subscribe", "payload": payload})
        messages = [socket.receive_json()]
        while messages[-1]["type"] == "next":
            messages.append(socket.receive_json())
    return messages


def test_a_subscribe_message_runs_the_document_the_hook_names():
    # By default the payload's `query` runs, as in Strawberry; with the hook, what it names
    # (which fails once Strawberry stops reading the document from the payload it is handed).
    payload = {"query": "subscription { count }"}
    default = subscribe_through(TransportWSHandler[None, None], payload)
    assert [m["payload"] for m in default[:-1]] == [{"data": {"count": n}} for n in range(2)]
    ours = subscribe_through(CountingToThree, payload)
    assert [m["payload"] for m in ours[:-1]] == [{"data": {"count": n}} for n in range(3)]
    assert ours[-1] == {"id": "1", "type": "complete"}


def test_a_subscribe_message_the_hook_refuses_gets_an_error_message():
    assert subscribe_through(CountingToThree, {"query": "", "documentId": "no"}) == [
        {
            "id": "1",
            "type": "error",
            "payload": [{"message": "not this one", "extensions": {"code": "NO"}}],
        }
    ]


# --- 8. the HTTP view ------------------------------------------------------------------------


def view_client(view_class: type[GraphQL[None, None]], batching: bool = False) -> TestClient:
    config = StrawberryConfig(batching_config={"max_operations": 2} if batching else None)
    schema = strawberry.Schema(query=Query, mutation=Mutation, config=config)
    return TestClient(view_class(schema), raise_server_exceptions=False)


class FastPathView(OverriddenGraphQL[None, None]):
    """Takes the fast path wherever it applies, as CrmGraphQL does."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        operation = await self.single_json_operation(request)
        if operation is None:
            await super().__call__(scope, receive, send)
            return
        result = await self.execute_json_operation(request, operation)
        await Response(self.encode_json(result), media_type="application/json")(
            scope, receive, send
        )


@pytest.mark.parametrize(
    "body",
    [
        {"query": "{ hello }"},
        {"query": "query Q($n: String!) { hello(name: $n) }", "variables": {"n": "x"}},
        {"query": "{ broken refused }"},
        {"query": "{ nope }"},
        {"query": "{ hello"},
        {"query": 'mutation { rename(to: "z") { name } }'},
        {"query": "query A { hello } query B { item { name } }", "operationName": "B"},
    ],
)
def test_the_fast_path_answers_as_strawberry_s_view(body: dict[str, Any]):
    fast = view_client(FastPathView).post("/", json=body)
    strawberrys = view_client(GraphQL).post("/", json=body)
    assert (fast.status_code, fast.json()) == (strawberrys.status_code, strawberrys.json())


class RecordingView(GraphQL[None, None]):
    """Strawberry's view, noting the operations it executes."""

    executed: list[GraphQLRequestData] = []

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        RecordingView.executed.append(kwargs.get("request_data") or args[-1])
        return await super().execute_single(*args, **kwargs)


def get_request(params: dict[str, str]) -> Request:
    return Request(
        {"type": "http", "method": "GET", "query_string": urlencode(params).encode(), "headers": []}
    )


@pytest.mark.parametrize(
    "params",
    [
        {"query": "{ hello }"},
        {"query": "query Q($n: String!) { hello(name: $n) }", "variables": '{"n": "x"}'},
        {"query": "query A { hello } query B { hello }", "operationName": "B"},
        {"query": "{ hello }", "variables": "{}"},
    ],
)
def test_a_get_s_operation_is_the_one_strawberry_s_view_executes(params: dict[str, str]):
    schema = strawberry.Schema(query=Query)
    RecordingView.executed.clear()
    TestClient(RecordingView(schema)).get("/", params=params)
    (executed,) = RecordingView.executed
    read = OverriddenGraphQL(schema).single_get_operation(get_request(params))
    assert read is not None
    assert (read.query, read.variables, read.operation_name) == (
        executed.query,
        executed.variables,
        executed.operation_name,
    )


@pytest.mark.parametrize(
    "params",
    [
        {"query": ""},
        {"query": "{ hello }", "variables": ""},
        {"query": "{ hello }", "variables": "[1]"},
        {"query": "{ hello }", "variables": "{"},
        {"query": "{ hello }", "extensions": "{}"},
        {"documentId": "abc"},
    ],
)
def test_any_other_get_is_left_to_strawberry_s_view(params: dict[str, str]):
    schema = strawberry.Schema(query=Query)
    assert OverriddenGraphQL(schema).single_get_operation(get_request(params)) is None


def test_the_fast_path_leaves_streaming_requests_to_strawberry():
    view = FastPathView(
        strawberry.Schema(query=Query),
        subscription_protocols=["multipart-subscription", "graphql-sse"],
    )
    for accept in ('multipart/mixed;subscriptionSpec="1.0"', "text/event-stream"):
        assert view._get_stream_transport_from_headers({"accept": accept}) is not None
    assert view._get_stream_transport_from_headers({"accept": "application/json"}) is None


def test_strawberry_s_execute_single_does_not_read_its_sub_response():
    source = inspect.getsource(GraphQL.execute_single)
    body = source.split(") -> ExecutionResult:", 1)[1]
    assert "sub_response" not in body


def test_a_mutation_over_get_gets_405_where_strawberry_says_400():
    params = {"query": 'mutation { rename(to: "z") { name } }'}
    assert view_client(GraphQL).get("/", params=params).status_code == 400
    assert view_client(OverriddenGraphQL).get("/", params=params).status_code == 405


def test_a_body_that_is_not_utf8_gets_400_where_strawberry_says_500():
    headers = {"content-type": "application/json"}
    body = b'{"query": "{ hello \xff }"}'
    assert view_client(GraphQL).post("/", content=body, headers=headers).status_code == 500
    assert (
        view_client(OverriddenGraphQL).post("/", content=body, headers=headers).status_code == 400
    )


@pytest.mark.parametrize("body", [[1], "x", 3])
def test_a_body_that_is_not_an_object_gets_400_where_strawberry_says_500(body: Any):
    batching = isinstance(body, list)
    strawberrys = view_client(GraphQL, batching=batching).post("/", json=body)
    assert strawberrys.status_code == 500
    ours = view_client(OverriddenGraphQL, batching=batching).post("/", json=body)
    assert ours.status_code == 400


def test_strawberry_calls_the_batch_hook_for_every_batch():
    signature = inspect.signature(GraphQL._validate_batch_request)
    assert list(signature.parameters) == ["self", "request_data", "protocol"]
    refused = view_client(OverriddenGraphQL, batching=True).post("/", json=[])
    assert refused.status_code == 400
    assert "at least one operation" in refused.text
    too_many = view_client(OverriddenGraphQL, batching=True).post(
        "/", json=[{"query": "{ hello }"}] * 3
    )
    assert "setting max_batch_operations" in too_many.text


def test_cached_documents_is_a_schema_extension():
    # Subscriptions reach the cache only as an extension instance per operation.
    assert isinstance(documents().extension(), CachedDocuments)


# --- 9. subscription events executed outside Strawberry's subscribe loop --------------------


async def test_an_event_executed_from_its_root_value_is_what_strawberry_s_loop_sends():
    schema = strawberry.Schema(query=Query, subscription=Subscription)
    document = "subscription Counting($upto: Int!) { count(upto: $upto) }"
    upstream = await schema.subscribe(document, variable_values={"upto": 3})
    assert not isinstance(upstream, ExecutionResult)
    sent = [result.data async for result in upstream]
    execute = subscription_event_execution(schema, parse(document), None, {"upto": 3}, "Counting")
    assert execute is not None
    ours = []
    for number in range(3):
        result = execute(number)
        result = await result if inspect.isawaitable(result) else result
        ours.append(result.data)
    assert ours == sent == [{"count": 0}, {"count": 1}, {"count": 2}]


def test_no_event_execution_when_the_variables_do_not_fit():
    schema = strawberry.Schema(query=Query, subscription=Subscription)
    document = parse("subscription ($upto: Int!) { count(upto: $upto) }")
    assert subscription_event_execution(schema, document, None, {"upto": "x"}, None) is None
