"""Every place crm_graphql replaces Strawberry's or graphql-core's behaviour or relies on their
internals, one section each.

Checked against strawberry-graphql 0.341.2 and graphql-core 3.3.2, the versions pyproject.toml
pins exactly (CHECKED_AGAINST). Each section says which upstream behaviour it replaces, why, and
what it relies on; tests/unit/test_strawberry_overrides.py has tests per section that fail when
that upstream behaviour, or a private member used here, changes. To upgrade either library: run
those tests on the new version, re-check each section, then move the pins and CHECKED_AGAINST.

Nothing here imports crm_graphql: the policies (which errors are masked, what the request log
notes, statement counting) stay in their layers and plug into the hooks below.
"""

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import MISSING
from functools import cache, lru_cache
from inspect import isawaitable
from typing import Any, TypeVar, cast

import orjson
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLFormattedError,
    GraphQLSchema,
    execute_subscription_event,
    parse,
    validate,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution import Executor
from graphql.pyutils import AwaitableOrValue
from graphql.validation import NoSchemaIntrospectionCustomRule, specified_rules
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.relay import GlobalID
from strawberry.scalars import is_scalar
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.name_converter import NameConverter
from strawberry.schema.schema import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    StrawberryGraphQLCoreExecutionContext,
)
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryMaybe, StrawberryOptional, StrawberryType
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.graphql import OperationType
from strawberry.utils.str_converters import to_camel_case

from crm_graphql.web.scope import header

CHECKED_AGAINST = {"strawberry-graphql": "0.341.2", "graphql-core": "3.3.2"}

T = TypeVar("T")
ContextT = TypeVar("ContextT")
RootValueT = TypeVar("RootValueT")


def graphql_schema(schema: BaseSchema) -> GraphQLSchema:
    """The graphql-core schema of a Strawberry schema. Relies on: `Schema._schema`."""
    return cast("GraphQLSchema", schema._schema)  # type: ignore[attr-defined]


# --- 1. The document cache: parsing and validation once per distinct document ---------------

# Distinct documents kept; each costs some kilobytes. Clients send a fixed set of operations.
CACHED_DOCUMENTS = 1024
# The rules Strawberry's validate_document adds to the specification's.
STRAWBERRY_RULES = (MaybeNullValidationRule, OneOfInputValidationRule)


class DocumentCache:
    """Replaces Strawberry's MaxTokensLimiter, AddValidationRules, DisableIntrospection,
    ParserCache and ValidationCache extensions (together), and its `validate_document`: per
    schema, parse under the token limit, validate with our rules (the abuse limits), then the
    specification's and Strawberry's own; both remembered (LRU, bounded) for the documents
    seen most recently. Five extensions cost every request their runner's hooks; this is two
    dictionary lookups. Strawberry's `validate_document` cannot hide suggestions ("Did you
    mean ...?" for types, arguments, input fields, enum values), so its rules are listed here.
    Queries and mutations use the cache directly (DirectExecutionSchema), subscriptions
    through the `CachedDocuments` extension.

    Relies on: graphql-core's `parse(max_tokens=)` and `validate(hide_suggestions=)`; the
    rules Strawberry's `validate_document` adds to the specification's
    (MaybeNullValidationRule, OneOfInputValidationRule)."""

    def __init__(
        self,
        max_tokens: int,
        extra_rules: tuple[type[ASTValidationRule], ...],
        introspection: bool,
        hide_suggestions: bool = False,
    ) -> None:
        rules = (*specified_rules, *STRAWBERRY_RULES)
        if not introspection:
            rules = (*rules, NoSchemaIntrospectionCustomRule)

        def parse_limited(query: str) -> DocumentNode:
            return parse(query, max_tokens=max_tokens)

        self.parse: Callable[[str], DocumentNode] = lru_cache(CACHED_DOCUMENTS)(parse_limited)

        def validate_query(schema: GraphQLSchema, query: str) -> list[GraphQLError]:
            document = self.parse(query)
            # Ours first, alone: they take time linear in the document, while some of the
            # specification's (OverlappingFieldsCanBeMerged) take quadratic time in the
            # fields they compare; a document over a limit is refused before those run.
            if extra_rules and (errors := validate(schema, document, extra_rules)):
                return errors
            return validate(schema, document, rules, hide_suggestions=hide_suggestions)

        # Keyed by the query text, whose hash Python keeps: a DocumentNode's hash walks the
        # whole tree on every lookup.
        self.validate: Callable[[GraphQLSchema, str], list[GraphQLError]] = lru_cache(
            CACHED_DOCUMENTS
        )(validate_query)

    def extension(self) -> "CachedDocuments":
        return CachedDocuments(self)


class CachedDocuments(SchemaExtension):
    """The document cache in Strawberry's extension runner (subscriptions).

    Relies on: the runner skipping its own parse when `on_parse` has set
    `graphql_document`, and its own validation when `on_validate` has set
    `pre_execution_errors`; `Schema._schema` (the graphql-core schema)."""

    def __init__(self, documents: DocumentCache) -> None:
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.graphql_document = self.documents.parse(context.query or "")
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        context.pre_execution_errors = self.documents.validate(
            graphql_schema(context.schema), context.query or ""
        )
        yield


# --- 2. Error masking outside the extension runner ------------------------------------------


def mask_errors(extension: MaskErrors, errors: list[GraphQLError]) -> list[GraphQLError]:
    """The errors as the MaskErrors extension would leave them in a result; for
    DirectExecutionSchema, which runs no extension hooks.

    Relies on: `MaskErrors._process_errors` (what its `on_operation` applies to the result)."""
    return extension._process_errors(errors)


# graphql-core's did_you_mean(): " Did you mean 'a', 'b', or 'c'?", names only.
SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


# --- 3. Queries and mutations without the extension runner ----------------------------------


class DirectExecutionSchema(strawberry.Schema):
    """Replaces `strawberry.Schema.execute` for queries and mutations. Upstream runs every
    operation inside its extension runner (a context manager per phase and per hook): a fifth
    of a mutation's CPU in the GraphQL layer (docs/benchmarks.md). This runs the same steps in
    straight-line code: parse and validate from the document cache, check the operation type,
    execute with graphql-core as upstream calls it (suggestions hidden when the config
    disables them), errors through `process_errors` (logging) and then the masking
    extension's rules. A subscription sent here is refused (`subscription_refused`), where
    upstream would hand it to graphql-core's execute. Subscriptions keep upstream's path, with
    the same cache and masking as extensions. No extension hooks run for queries and
    mutations: the schema is given only these two extensions, and no field middleware.

    Relies on: `Schema._create_execution_context`, `_get_execute_function`,
    `_get_custom_context_kwargs`, `_process_errors`, `_schema`; `ExecutionContext`
    raising RuntimeError from `operation_type` when the document has no such operation; the
    HTTP view answering CannotGetOperationTypeError and InvalidOperationTypeError with a 4xx."""

    def __init__(
        self,
        *,
        documents: DocumentCache,
        masking: Callable[[], MaskErrors],
        **kwargs: Any,
    ) -> None:
        # Factories: an extension keeps per-operation state, so each subscription gets its own.
        super().__init__(**kwargs, extensions=[documents.extension, masking])
        # execute() hands on graphql-core's result as it is: no @defer/@stream deliveries.
        if self.config.enable_experimental_incremental_execution:
            raise ValueError("incremental execution is not supported")
        self.documents = documents
        self.masking = masking()  # only its stateless masking is used here

    def on_operation(self, context: ExecutionContext) -> None:
        """Called once the operation and its type are known, before validation."""

    def subscription_refused(self) -> GraphQLError:
        """The error for a subscription sent here: Strawberry lets subscriptions through over
        HTTP (for its streaming transports), which graphql-core's execute cannot run."""
        return GraphQLError("Subscriptions are not served over HTTP.")

    @staticmethod
    def remove_field_suggestion(error: GraphQLError) -> None:
        """Replaces Strawberry's, which removes graphql-core's "Did you mean ...?" only from
        "Cannot query field" messages: with suggestions disabled (production), none in any
        error. Validation and execution are told to hide them (`hide_suggestions`); this
        catches the rest (a subscription's variables).

        Relies on: `_process_errors` calling it for every error when
        `disable_field_suggestions` is set; graphql-core's `did_you_mean` wording."""
        error.message = SUGGESTION.sub("", error.message)

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        if not query:
            raise MissingQueryError
        if allowed_operation_types is None:
            allowed_operation_types = DEFAULT_ALLOWED_OPERATION_TYPES
        context = self._create_execution_context(
            query=query,
            allowed_operation_types=allowed_operation_types,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            operation_extensions=operation_extensions,
        )
        try:
            data, errors = await self._run(context, query)
        except (CannotGetOperationTypeError, InvalidOperationTypeError):
            raise  # the HTTP view answers these with a 4xx
        except Exception as error:  # ours, not the client's: logged, answered masked
            data = None
            errors = [
                error
                if isinstance(error, GraphQLError)
                else GraphQLError(str(error), original_error=error)
            ]
        if errors:
            errors = self.client_errors(errors, context)
        result = ExecutionResult(data=data, errors=errors or None)
        context.result = result
        return result

    def client_errors(
        self, errors: list[GraphQLError], context: ExecutionContext
    ) -> list[GraphQLError]:
        """The errors as a result carries them: the originals logged (`process_errors`),
        then masked."""
        self._process_errors(errors, context)
        return mask_errors(self.masking, errors)

    async def _run(
        self, context: ExecutionContext, query: str
    ) -> tuple[dict[str, Any] | None, list[GraphQLError] | None]:
        try:
            context.graphql_document = self.documents.parse(query)
        except GraphQLError as error:
            return None, [error]
        try:
            operation_type = context.operation_type
        except RuntimeError as error:
            raise CannotGetOperationTypeError(context.operation_name) from error
        if operation_type not in context.allowed_operations:
            raise InvalidOperationTypeError(operation_type)
        if operation_type is OperationType.SUBSCRIPTION:
            return None, [self.subscription_refused()]
        self.on_operation(context)
        if errors := self.documents.validate(self._schema, query):
            return None, errors
        result = await self.execute_document(
            context.graphql_document,
            root_value=context.root_value,
            variable_values=context.variables,
            # As Strawberry does: without a name given, the document's first operation.
            operation_name=context.operation_name,
            context_value=context.context,
            **self._get_custom_context_kwargs(context.operation_extensions),
        )
        return result.data, result.errors

    async def execute_document(
        self, document: DocumentNode, **options: Any
    ) -> GraphQLExecutionResult:
        """graphql-core's execution of a parsed, validated document as this schema runs it
        (its executor, awaitable check and suggestions setting), with graphql-core's
        `execute` options (variables, context, operation name, middleware, ...)."""
        result = self._get_execute_function()(
            self._schema,
            document,
            is_awaitable=optimized_is_awaitable,
            executor_class=self.execution_context_class,
            hide_suggestions=self.config.disable_field_suggestions,
            **options,
        )
        if isawaitable(result):
            result = await result
        return cast("GraphQLExecutionResult", result)


# --- 4. Subscription events: an executor memo per event -------------------------------------


class EventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Replaces graphql-core's `build_per_event_executor`, which shares the executor's memo of
    collected subfields with every event's copy, keyed by the identity of field lists that each
    event builds anew: it never hits, and kept a few entries per event for as long as the
    subscription lived (memory that grew without bound, and garbage collection pauses that grew
    with it: 90 ms after 15 s at 900 events/s). Each event gets a memo of its own.

    Relies on: `ExecutionContext.build_per_event_executor` and its `_relevant_sub_fields`."""

    def build_per_event_executor(self, payload: Any) -> "EventExecutor":
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return cast("EventExecutor", executor)


# --- 5. GraphQL names of Python names, converted once ---------------------------------------


class CachedNameConverter(NameConverter):
    """Replaces `NameConverter.apply_naming_config`, which converts the Python names of an
    input's fields to GraphQL names again on every request that sends the input; a name's
    GraphQL name never changes, so it is kept (the schema's names are a fixed, small set)."""

    def apply_naming_config(self, name: str) -> str:
        return _camel_case(name) if self.auto_camel_case else name


_camel_case = cache(to_camel_case)


# --- 6. Input objects built from a plan made once -------------------------------------------


def _arrives_converted(type_: StrawberryType | type, scalars: Mapping[object, Any]) -> bool:
    """graphql-core already hands over the Python value of a scalar or an enum (or null), so
    Strawberry's conversion returns it as it is; a GlobalID still needs decoding."""
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    if type_ is GlobalID:
        return False
    return isinstance(type_, StrawberryEnumDefinition) or is_scalar(type_, scalars)


def converted_once(cls: type[T]) -> type[T]:
    """Replaces Strawberry's conversion of an input object (`convert_argument`), which resolves
    each field's annotation again on every request (a tenth of a mutation's CPU in the GraphQL
    layer, docs/benchmarks.md), through its `from_input` hook: the fields' GraphQL names and
    resolved types are worked out on first use and kept. Values that arrive converted are
    passed as they are; the rest (lists, nested inputs, GlobalIDs) go through Strawberry's own
    conversion.

    Relies on: `StrawberryObjectDefinition.from_input` and `InputContext` (`config`,
    `scalar_registry`, `convert`); Strawberry skipping its null check for Maybe fields of an
    input with a hook (so none may be here); a field without a default starting as None."""
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    for field in definition.fields:
        if isinstance(field.resolve_type(type_definition=definition), StrawberryMaybe):
            raise TypeError(f"{cls.__name__}.{field.python_name}: Maybe is not supported here")
    # As Strawberry does: a field without a default starts as None (GraphQL has already
    # checked that every required field is present).
    no_default = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    # Per schema configuration (tests build several schemas), kept with it so that an id
    # reused after a configuration is gone cannot match.
    plans: dict[int, tuple[object, list[tuple[str, str, StrawberryType | type | None]]]] = {}

    def plan_for(context: InputContext) -> list[tuple[str, str, StrawberryType | type | None]]:
        plan = []
        for field in definition.fields:
            field_type = field.resolve_type(type_definition=definition)
            converted = _arrives_converted(field_type, context.scalar_registry)
            graphql_name = context.config.name_converter.from_field(field)
            plan.append((field.python_name, graphql_name, None if converted else field_type))
        return plan

    def from_input(type_: type[T], value: Mapping[str, Any], context: InputContext) -> T:
        config, plan = plans.get(id(context.config), (None, []))
        if config is not context.config:
            plan = plan_for(context)
            plans[id(context.config)] = (context.config, plan)
        values = dict(no_default)
        for python_name, graphql_name, needs_conversion in plan:
            if graphql_name in value:
                given = value[graphql_name]
                values[python_name] = (
                    given
                    if needs_conversion is None
                    else context.convert(given, needs_conversion, graphql_name)
                )
        return type_(**values)

    definition.from_input = from_input
    return cls


# --- 7. graphql-transport-ws: the handler and the socket ------------------------------------

# graphql-transport-ws: the close code for a connection_init without valid credentials.
WS_UNAUTHORIZED = 4401
WS_CLOSE_REASON_MAX_BYTES = 123  # the WebSocket protocol's limit


class ConnectionUnauthenticated(Exception):
    """Raised by `on_ws_connect`: the connection_init payload carried no acceptable token."""


# The graphql-transport-ws operation whose task is running: set by TransportWSHandler for each
# operation, read by the subscription resolver (api/subscriptions.py).
current_operation: ContextVar[Operation[Any, Any] | None] = ContextVar(
    "current_operation", default=None
)


class TransportWSHandler(BaseGraphQLTransportWSHandler[ContextT, RootValueT]):
    """Strawberry's graphql-transport-ws handler with two changes.

    - A connection_init whose credentials are refused closes with 4401, which the protocol
      asks for when the credentials are what is wrong, where Strawberry closes with 4403
      (Forbidden). No connection_ack is sent, so nothing can be subscribed. Relies on:
      `handle_connection_init` letting an exception other than ConnectionRejectionError
      from `on_ws_connect` propagate, before any connection_ack.
    - Each operation's task knows its operation (`current_operation`), so the subscription
      resolver can share an audience's rendering (api/audiences.py). Relies on:
      `run_operation` running in the operation's own task, and `Operation`'s fields.
    - A subscribe message runs the document `subscribed_document` names, or is refused with
      the error it raises (SubscribeRefused), where Strawberry runs the payload's `query`
      as it is: persisted queries and trusted documents apply over WebSocket as over HTTP.
      Relies on: `handle_subscribe` reading the document from `message["payload"]["query"]`
      after the connection is acknowledged, and `send_message` sending a protocol message."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except ConnectionUnauthenticated as error:
            reason = f"Unauthorized: {error}".encode()[:WS_CLOSE_REASON_MAX_BYTES]
            await self.websocket.close(WS_UNAUTHORIZED, reason.decode(errors="ignore"))

    async def run_operation(self, operation: Operation[ContextT, RootValueT]) -> None:
        current_operation.set(operation)
        await super().run_operation(operation)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload: Any = message.get("payload")
        if self.connection_acknowledged and isinstance(payload, dict):
            try:
                query = self.subscribed_document(payload)
            except SubscribeRefused as refusal:
                error: ErrorMessage = {
                    "id": message["id"],
                    "type": "error",
                    "payload": [refusal.error],
                }
                await self.send_message(error)
                return
            # The client's payload, as Strawberry would read it, with the document to run.
            message = cast("SubscribeMessage", {**message, "payload": {**payload, "query": query}})
        await super().handle_subscribe(message)

    def subscribed_document(self, payload: Mapping[str, Any]) -> object:
        """The document a subscribe message runs (its `query`, unless a subclass says
        otherwise); raises SubscribeRefused to refuse the operation."""
        return payload.get("query")


class SubscribeRefused(Exception):
    """Raised by `subscribed_document`: the operation is answered with this `error` message."""

    def __init__(self, error: GraphQLFormattedError) -> None:
        super().__init__(error["message"])
        self.error = error


class TextFrameWebSocketAdapter(ASGIWebSocketAdapter):
    """Replaces Strawberry's `send_json`, which sends each graphql-transport-ws message as a
    binary frame: JavaScript clients (graphql-ws in browsers and Node) parse only text.

    Relies on: the adapter's Starlette WebSocket (`ws`), and the handler treating
    WebSocketDisconnected as a closed socket."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


# --- 8. The HTTP view: a fast path for single JSON operations, and stricter checks ----------

JSON = "application/json"
# Digits enough for an integer past 64 bits.
LONG_DIGIT_RUN = re.compile(r"[0-9]{19}")
LONG_DIGIT_RUN_BYTES = re.compile(rb"[0-9]{19}")


def content_type_of(request: Request) -> str:
    """The Content-Type's media type without its parameters, as sent (case kept)."""
    return (header(request.scope, b"content-type") or "").split(";")[0].strip()


def check_parameter_types(item: GraphQLRequestData) -> None:
    """What Strawberry checks for a single operation, for every operation of a batch too."""
    expected = {
        "query": (item.query, str),
        "operationName": (item.operation_name, str),
        "variables": (item.variables, dict),
        "extensions": (item.extensions, dict),
    }
    for name, (value, kind) in expected.items():
        if value is not None and not isinstance(value, kind):
            described = "a string" if kind is str else "an object"
            raise HTTPException(
                400, f"The GraphQL operation's `{name}` must be {described} or null."
            )


class OverriddenGraphQL(GraphQL[ContextT, RootValueT]):
    """Strawberry's ASGI view with the overrides below; the app's own policies (CSRF, media
    types, error codes, authentication, persisted documents) are in web/graphql_http.py."""

    websocket_adapter_class = TextFrameWebSocketAdapter

    def document_of(self, query: object, extensions: object, document_id: object) -> object:
        """The document a POSTed operation runs: its query (a hook, for persisted documents)."""
        return query

    def asks_for_streaming(self, request: Request) -> bool:
        """The view's streaming check, with the Accept header looked up rather than every
        header decoded to find it."""
        accept = header(request.scope, b"accept") or ""
        return any(transport.accepts(accept) for transport in self._stream_transport_map.values())

    async def single_json_operation(self, request: Request) -> GraphQLRequestData | None:
        """The operation of a POSTed JSON object holding one well-formed operation, with no
        streaming asked for: nearly every request. Anything else (GET, batches, malformed
        bodies or parameters, streaming) gets None and goes through Strawberry's view, whose
        checks and messages answer it. The body stays cached on the request for that.

        Relies on: `_stream_transport_map` (the transports the view's own streaming check,
        `_get_stream_transport_from_headers`, asks about the Accept header) and the view
        comparing the Content-Type as sent."""
        if (
            request.method != "POST"
            or content_type_of(request) != JSON
            or self.asks_for_streaming(request)
        ):
            return None
        try:
            data = self.decode_json(await request.body())
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        operation = GraphQLRequestData(
            # Checked below, as the query is.
            query=cast(
                "str | None",
                self.document_of(data.get("query"), data.get("extensions"), data.get("documentId")),
            ),
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=data.get("extensions"),
            protocol="http",
        )
        try:
            check_parameter_types(operation)
        except HTTPException:
            return None
        return operation

    def single_get_operation(self, request: Request) -> GraphQLRequestData | None:
        """The operation of a GET that names its document in `query` (urql's and Apollo's
        queries), as Strawberry's view reads it (`parse_query_params`), when it takes no
        further checks: no streaming, no persisted-document parameters, variables (if any) a
        JSON object. Anything else gets None and the view's own path.

        Relies on: the view reading a GET's `query`, `variables` (JSON, decoded unless empty),
        `operationName` and `extensions` from the last value of each parameter, and running
        only queries over GET."""
        params = request.query_params
        if (
            request.method != "GET"
            or self._get_stream_transport_from_headers(request.headers)
            or not params.get("query")
            or "extensions" in params
            or "documentId" in params
        ):
            return None
        variables: dict[str, Any] | None = None
        if "variables" in params:
            try:
                decoded = self.decode_json(params["variables"])
            except json.JSONDecodeError:
                return None
            if not isinstance(decoded, dict):
                return None
            variables = decoded
        return GraphQLRequestData(
            query=cast("str", self.document_of(params["query"], None, None)),
            variables=variables,
            operation_name=params.get("operationName"),
            extensions=None,
            protocol="http",
        )

    async def execute_json_operation(
        self, request: Request, operation: GraphQLRequestData
    ) -> GraphQLHTTPResponse:
        """Replaces Strawberry's `run` for such an operation: the same steps without those
        that serve other kinds of request, a fifth of the HTTP layer's CPU
        (docs/benchmarks.md).

        Relies on: `run` doing for it no more than `execute_single` and `process_result`
        with the view's context; `execute_single` not reading its sub-response. None is made
        (nothing in the schema sets headers or cookies): `get_context` gets response=None."""
        result = await self.execute_single(
            request=request,
            request_adapter=self.request_adapter_class(request),
            sub_response=cast("Response", None),
            context=await self.get_context(request, response=cast("Response", None)),
            root_value=None,
            request_data=operation,
        )
        return await self.process_result(request, result)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: RootValueT | None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """A mutation over GET gets 405, the specification's answer, where Strawberry says 400.

        Relies on: the HTTPException raised from InvalidOperationTypeError."""
        try:
            return await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, error.reason) from error
            raise

    def decode_json(self, data: str | bytes) -> object:
        """Every JSON the endpoint reads (bodies, GET variables, WebSocket messages); what it
        cannot read is a JSONDecodeError, which each caller answers as a client error (400,
        or a WebSocket closed with 4400), where Strawberry answers a body that is not UTF-8 or
        nested past the interpreter's stack with 500 (a socket with 1006).

        orjson reads it first where it reads it as the standard library does: it refuses what
        it reads otherwise (non-finite numbers, lone surrogates, a byte order mark), except an
        integer past 64 bits, which it would make a float: a body with a run of 19 digits is
        left to the standard library.

        Relies on: the view and the WebSocket handler answering JSONDecodeError so."""
        long_digit_run = LONG_DIGIT_RUN_BYTES if isinstance(data, bytes) else LONG_DIGIT_RUN
        if long_digit_run.search(data) is None:  # type: ignore[arg-type]
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # the standard library accepts more, or says why not
        try:
            return json.loads(data)
        except UnicodeDecodeError as error:
            raise json.JSONDecodeError("The body is not valid UTF-8", "", error.start) from None
        except RecursionError:  # arrays or objects nested past the interpreter's stack
            raise json.JSONDecodeError("The JSON is nested too deeply", "", 0) from None

    def _validate_batch_request(
        self, request_data: list[GraphQLRequestData], protocol: GraphQLRequestProtocol
    ) -> None:
        """Batches: messages that say which setting applies, and an empty batch refused.

        Relies on: the private `_validate_batch_request` hook, called for every batch."""
        batching = self.schema.config.batching_config
        if batching is None:
            raise HTTPException(
                400, "Batching is off (setting batching_enabled): send one operation per request."
            )
        if not request_data:
            raise HTTPException(400, "A batch needs at least one operation.")
        if len(request_data) > batching["max_operations"]:
            raise HTTPException(
                400,
                f"This batch holds {len(request_data)} operations; the limit is "
                f"{batching['max_operations']} (setting max_batch_operations).",
            )
        super()._validate_batch_request(request_data, protocol)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """A JSON body that is not an object (or a list of them) gets 400, where Strawberry
        answers 500; every operation of a batch gets the single operation's type checks.

        Relies on: Strawberry calling `.get()` on whatever JSON came."""
        try:
            data = await super().parse_http_body(request)
        except (AttributeError, TypeError):
            raise HTTPException(
                400, "The request body must be a JSON object (or a list of them, when batching)."
            ) from None
        for item in data if isinstance(data, list) else [data]:
            check_parameter_types(item)
            if request.method == "POST":  # a GET's parameters are parse_query_params's
                item.query = cast("str", self.document_of(item.query, item.extensions, None))
        return data


# --- 9. Subscription events executed outside Strawberry's subscribe loop --------------------

# graphql-transport-ws operations as Strawberry's handler keeps them (id, query, variables,
# operation name): what `current_operation` holds.
SubscriptionOperation = Operation

EventExecution = Callable[[object], AwaitableOrValue[GraphQLExecutionResult]]


def subscription_event_execution(
    schema: strawberry.Schema,
    document: DocumentNode,
    context_value: object,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
) -> EventExecution | None:
    """Executes a subscription's events from their root values, as graphql-core's own subscribe
    loop does (`execute_subscription_event` on a per-event copy of the executor), with the
    executor Strawberry would build for the subscription, built once. Lets one execution serve
    every subscriber that would get the same payload (api/audiences.py), where Strawberry
    executes each subscriber's events inside its own subscribe loop. None when the executor
    cannot be built (variables that do not fit: the subscriber's own execution reports them).

    Relies on: the schema's `execution_context_class.build` taking graphql-core's parameters and
    returning errors as a list when it cannot build, `build_per_event_executor`, and
    Strawberry's subscription fields resolving to the event itself."""
    executor = schema.execution_context_class.build(
        graphql_schema(schema),
        document,
        context_value=context_value,
        raw_variable_values=dict(variables) if variables is not None else None,
        operation_name=operation_name,
        # Strawberry annotates it as returning bool; graphql-core asks for its TypeGuard.
        is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        operation_extensions=None,
    )
    if not isinstance(executor, Executor):
        return None
    return lambda root_value: execute_subscription_event(
        executor.build_per_event_executor(root_value)
    )
