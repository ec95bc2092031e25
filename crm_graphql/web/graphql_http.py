"""The /graphql endpoint as the GraphQL-over-HTTP specification describes it.

- Media type: `application/graphql-response+json` when the client's Accept prefers it,
  otherwise `application/json` (also for `*/*` and a missing Accept header).
- A request that fails before execution (unparsable, invalid, over a limit, variables that do
  not fit) has no `data` entry; with `application/graphql-response+json` it gets 400, with
  `application/json` 200, as the specification asks. Execution errors keep 200 and `data`.
- Malformed HTTP (bad JSON, wrong parameter types, no query) gets 4xx with a GraphQL-shaped
  JSON body; a mutation over GET gets 405 with `Allow: POST`.
- CSRF: a request a browser could send cross-site without a preflight (any GET that runs an
  operation, a POST with a form or text/plain content type) must carry `Authorization` or one
  of PREFLIGHT_HEADERS, which no HTML form and no simple cross-site request can set (the API
  uses no cookies: without `Authorization` a request acts for nobody anyway).
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSyntaxError, located_error
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType

from crm_graphql.api import compiled_reads
from crm_graphql.api.authentication import (
    authenticate_connection,
    authenticate_header,
)
from crm_graphql.api.compiled_reads import CompiledReads, Unsupported
from crm_graphql.api.compiled_writes import CompiledWrites, NotAMutation
from crm_graphql.api.context import Context
from crm_graphql.api.faults import SERVICE_UNAVAILABLE, TIMEOUT, fault_code
from crm_graphql.api.schema import CrmSchema
from crm_graphql.db.statements import counting_statements
from crm_graphql.domain.access import Forbidden
from crm_graphql.domain.errors import RuleViolation
from crm_graphql.services.container import Services
from crm_graphql.strawberry_overrides import (
    JSON,
    OverriddenGraphQL,
    SubscribeRefused,
    TransportWSHandler,
    content_type_of,
    graphql_schema,
)
from crm_graphql.tokens import Authentication, InvalidToken, TokenCodec
from crm_graphql.web.persisted import PersistedDocuments, PersistedQueryError
from crm_graphql.web.record import Outcome, current_record
from crm_graphql.web.scope import header

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
# Where unexpected failures go with their trace, as the schema logs them (api/schema.py).
errors_logger = logging.getLogger("crm_graphql.errors")

# Any one of these, with a non-empty value, marks a request a browser would have preflighted.
# `apollo-require-preflight` and `x-apollo-operation-name` are what Apollo clients send.
PREFLIGHT_HEADERS = (
    "x-crm-csrf",
    "graphql-require-preflight",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
# The content types an HTML form (or a simple cross-site fetch) can send.
SIMPLE_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")

SERVER_FAULT_CODES = (SERVICE_UNAVAILABLE, TIMEOUT)
HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class CodedHTTPException(HTTPException):
    """An HTTP-level refusal whose `extensions.code` is not implied by its status."""

    def __init__(self, status_code: int, code: str, reason: str) -> None:
        super().__init__(status_code, reason)
        self.code = code


def negotiate_media_type(accept: str | None) -> str:
    """The response media type for an Accept header: the one with the higher q, ties going to
    application/graphql-response+json; anything else (including */*) gets application/json."""
    if not accept:
        return JSON
    best, best_q = JSON, 0.0
    for media_range in accept.split(","):
        media, *params = (part.strip() for part in media_range.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == GRAPHQL_RESPONSE_JSON and q > 0 and q >= best_q:
            best, best_q = GRAPHQL_RESPONSE_JSON, q
        elif media == JSON and q > best_q:
            best, best_q = JSON, q
    return best


def fallback_reason(error: Exception) -> str | None:
    """Why a query went to the general path, in words from a small set (they are counted);
    None for an error the compiled path should not have met (a defect in it)."""
    if isinstance(error, Unsupported):
        return str(error)
    if isinstance(error, GraphQLError):
        return error_code(error) or "graphql error"
    if isinstance(error, Forbidden):
        return "forbidden"
    if isinstance(error, RuleViolation):
        return "invalid input"
    return fault_code(error)  # the database's state: the general path reports it


def note_fallback(compiled: CompiledReads | CompiledWrites, kind: str, error: Exception) -> None:
    """Counts why the general path answers instead of a compiled one, and names it in the
    request log (a mutation's, the write compiler's reason: it tries first). An error the
    compiled path should not have met is a defect in it: logged with its trace, while the
    client still gets the general path's answer."""
    reason = fallback_reason(error)
    if reason is None:
        errors_logger.exception("compiled %s failed; the general path answers", kind)
        reason = type(error).__name__
    compiled.count(f"general: {reason}")
    record = current_record.get()
    if record and record.read_path is None:
        record.read_path = f"general: {reason}"


def error_body(message: str, code: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})


def error_response(
    status: int,
    message: str,
    code: str,
    media_type: str = JSON,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(message, code),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )


def is_request_error(result: ExecutionResult) -> bool:
    """Failed before execution: nothing ran, so there is no `data` to report."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def error_code(error: GraphQLError) -> str | None:
    code = (error.extensions or {}).get("code")
    return code if isinstance(code, str) else None


def request_error_code(error: GraphQLError) -> str:
    if isinstance(error, GraphQLSyntaxError):
        # graphql-core's max_tokens: "Document contains more than N tokens. Parsing aborted."
        over_limit = "tokens. Parsing aborted" in error.message
        return "TOKEN_LIMIT_EXCEEDED" if over_limit else "GRAPHQL_PARSE_FAILED"
    return "GRAPHQL_VALIDATION_FAILED"


def outcome_of(result: ExecutionResult) -> Outcome:
    if is_request_error(result):
        return Outcome.REJECTED
    for error in result.errors or ():
        code = error_code(error)
        if code is None or code in SERVER_FAULT_CODES:  # masked or a database fault
            return Outcome.ERROR
    if result.errors or any(
        isinstance(payload, dict) and payload.get("errors")
        for payload in (result.data or {}).values()
    ):
        return Outcome.USER_ERROR
    return Outcome.OK


# Any of these in a GET's query string asks it to run an operation (a document or a hash).
OPERATION_PARAMETERS = ("query", "extensions", "documentId")


def runs_an_operation(params: Mapping[str, str]) -> bool:
    return any(name in params for name in OPERATION_PARAMETERS)


def needs_preflight_header(request: Request) -> bool:
    if request.method == "GET":
        return runs_an_operation(request.query_params)
    return content_type_of(request).lower() in SIMPLE_CONTENT_TYPES


def has_preflight_header(request: Request) -> bool:
    # `Authorization` too: every client of this API sends it (urql's GET queries, for one).
    return any(
        request.headers.get(name, "").strip() for name in ("authorization", *PREFLIGHT_HEADERS)
    )


class PersistedDocumentsWSHandler(TransportWSHandler[Context, None]):
    """Subscribe messages follow the rules of HTTP requests for persisted queries and trusted
    documents: a WebSocket must not run a document that HTTP would refuse."""

    def subscribed_document(self, payload: Mapping[str, Any]) -> object:
        view = cast("CrmGraphQL", self.view)
        try:
            return view.persisted.document(
                payload.get("query"), payload.get("extensions"), payload.get("documentId")
            )
        except PersistedQueryError as error:
            raise SubscribeRefused(error.formatted) from None


class CrmGraphQL(OverriddenGraphQL[Context, None]):
    graphql_transport_ws_handler_class = PersistedDocumentsWSHandler

    def __init__(
        self,
        services: Services,
        tokens: TokenCodec,
        origin_allowed: Callable[[str], bool],
        persisted: PersistedDocuments,
        ide_page: str | None = None,
        **kwargs: Any,
    ) -> None:
        """`ide_page`: the GraphiQL page (web/ide.py) a browser gets at this path; None: no
        IDE, and such a GET is answered as any other request without a query."""
        super().__init__(graphql_ide=None if ide_page is None else "graphiql", **kwargs)
        self.services = services
        self.tokens = tokens
        self.origin_allowed = origin_allowed
        self.persisted = persisted
        self.ide_page = ide_page
        settings = services.queries.settings
        self.compiled = (
            CompiledReads(graphql_schema(self.schema), services.queries.engine, settings)
            if settings.compiled_reads
            else None
        )
        self.writes = (
            CompiledWrites(cast("CrmSchema", self.schema)) if settings.compiled_writes else None
        )

    def document_of(self, query: object, extensions: object, document_id: object) -> object:
        """The document to run (see crm_graphql.web.persisted), or an HTTP refusal."""
        try:
            return self.persisted.document(query, extensions, document_id)
        except PersistedQueryError as error:
            raise CodedHTTPException(error.status, error.code, error.message) from None

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        # Asked for a handshake from another origin; refused ones get 403 before accepting.
        return self.origin_allowed(origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        media_type = negotiate_media_type(header(scope, b"accept"))
        try:
            if needs_preflight_header(request) and not has_preflight_header(request):
                raise CodedHTTPException(
                    400,
                    "CSRF_PREVENTED",
                    "This request could have come from another site (a GET or a form "
                    "content type), so it needs an Authorization header or one of these "
                    f"with any non-empty value: {', '.join(PREFLIGHT_HEADERS)}. Or POST "
                    "application/json.",
                )
            posted = await self.single_json_operation(request)
            operation = posted or self.single_get_operation(request)
            compiled = None
            if posted is not None and self.writes is not None:
                compiled = await self.compiled_write(request, posted, media_type)
            if operation is not None and compiled is None:
                compiled = await self.compiled_response(request, operation, media_type)
            if compiled is not None:
                response = compiled
            elif posted is None:
                response = await self.run(request)
            else:
                result = await self.execute_json_operation(request, posted)
                response = self.json_response(result, media_type)
        except HTTPException as error:
            response = self.http_error(error, media_type)
        await response(scope, receive, send)

    async def compiled_response(
        self, request: Request, operation: GraphQLRequestData, media_type: str
    ) -> Response | None:
        """The response of a query the read compiler covers (api/compiled_reads.py), or None
        for the general path to answer: the same bytes, without the general executor. The
        document is parsed, limited and validated by the general path's functions first."""
        if self.compiled is None:
            return None
        record = current_record.get()
        try:
            data, extensions, name = await self.compiled_data(request, operation)
        except Exception as error:  # any error: the general path answers it
            note_fallback(self.compiled, "read", error)
            return None
        self.compiled.count("compiled")
        if record:
            record.read_path = "compiled"
            record.note_operation(name, "query")
            record.note_outcome(Outcome.OK)
        return Response(
            compiled_reads.encode(data, extensions),
            media_type=f"{media_type}; charset=utf-8",
        )

    async def compiled_write(
        self, request: Request, operation: GraphQLRequestData, media_type: str
    ) -> Response | None:
        """The response of a mutation the write compiler covers (api/compiled_writes.py), or
        None for the general path to answer: the same bytes, without the general executor.
        Whether it is covered is decided before the resolver runs; once it runs, whatever it
        raises is answered here as the general executor answers it."""
        assert self.writes is not None
        schema = cast("CrmSchema", self.schema)
        query = operation.query
        if not query:
            return None
        try:
            document = schema.documents.parse(query)
        except GraphQLError:  # the general path reports it
            return None
        if schema.documents.validate(graphql_schema(schema), query):
            return None
        try:
            plan = self.writes.plan(document, query, operation.operation_name)
            authorization = header(request.scope, b"authorization")
            authentication = authenticate_header(self.tokens, authorization)
            context = Context(self.services, authentication, request=request)
            run = self.writes.prepare(plan, operation.variables, context)
        except NotAMutation:
            return None
        except Exception as error:  # not covered, before anything ran: the general path answers
            note_fallback(self.writes, "write", error)
            return None
        self.writes.count("compiled")
        record = current_record.get()
        named = plan.operation.name
        name = operation.operation_name or (named.value if named else None)
        if record:
            record.read_path = "compiled"
            record.note_operation(name, "mutation")
        errors: list[GraphQLError] | None = None
        with counting_statements(schema.count_statements) as statements:
            data: dict[str, Any] | None
            try:
                value = await run()
            except Exception as error:
                data, errors = None, [located_error(error, [plan.node], [plan.key])]
            else:
                try:
                    data = {plan.key: plan.build(value)}
                except Exception:  # completed as the general path would, errors and all
                    data, errors = await self.writes.complete_generally(
                        document, operation.operation_name, operation.variables, context, value
                    )
        if errors:
            execution = schema._create_execution_context(
                query=query,
                allowed_operation_types=(OperationType.MUTATION,),
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.operation_name,
            )
            execution.graphql_document = document
            errors = schema.client_errors(errors, execution)
        extensions = {"sqlStatements": statements.count} if schema.count_statements else None
        result = ExecutionResult(data=data, errors=errors, extensions=extensions)
        return self.json_response(await self.process_result(request, result), media_type)

    async def compiled_data(
        self, request: Request, operation: GraphQLRequestData
    ) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
        assert self.compiled is not None
        query = operation.query
        if not query:
            raise Unsupported("no query")
        schema = cast("CrmSchema", self.schema)
        document = schema.documents.parse(query)  # GraphQLError: the general path reports it
        if schema.documents.validate(graphql_schema(schema), query):
            raise Unsupported("invalid document")
        # A mutation stops here, before its token is checked (the general path checks it).
        analysed = self.compiled.compilable(document, query, operation.operation_name)
        authentication = authenticate_header(self.tokens, request.headers.get("authorization"))
        actor = Context(self.services, authentication).actor  # UNAUTHENTICATED: a GraphQLError
        with counting_statements(schema.count_statements) as statements:
            data, name = await self.compiled.execute(
                document, analysed, operation.operation_name, operation.variables, actor
            )
        extensions = {"sqlStatements": statements.count} if schema.count_statements else None
        return data, extensions, name

    def http_error(self, error: HTTPException, media_type: str) -> Response:
        record = current_record.get()
        if record:
            record.note_outcome(Outcome.REJECTED)
        code = (
            error.code
            if isinstance(error, CodedHTTPException)
            else HTTP_ERROR_CODES.get(error.status_code, "BAD_REQUEST")
        )
        headers = {"Allow": "POST"} if error.status_code == 405 else None
        return error_response(error.status_code, error.reason, code, media_type, headers)

    async def render_graphql_ide(self, request: Request) -> Response:
        assert self.ide_page is not None, "only called with an IDE (graphql_ide set)"
        return HTMLResponse(self.ide_page)

    async def get_context(self, request: Any, response: Any) -> Context:
        if isinstance(request, WebSocket):
            # A WebSocket authenticates with its connection_init message (on_ws_connect).
            authentication: Authentication | InvalidToken = InvalidToken("Not authenticated.")
        else:
            authentication = authenticate_header(self.tokens, request.headers.get("authorization"))
        return Context(self.services, authentication, request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        context.authentication = authenticate_connection(self.tokens, context.connection_params)
        return UnsetType()  # UNSET, typed: acknowledged without a payload

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = negotiate_media_type(request.headers.get("accept"))
        return sub_response

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming an operation by hash only is a client's request, whatever it accepts.
        return super().should_render_graphql_ide(request) and not runs_an_operation(
            request.query_params
        )

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        data = super().parse_query_params(params)
        data["query"] = self.document_of(
            data.get("query"), data.get("extensions"), data.get("documentId")
        )
        return data

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        record = current_record.get()
        if record:
            record.note_outcome(outcome_of(result))
        if not is_request_error(result):
            return await super().process_result(request, result)
        errors: list[object] = []
        for error in result.errors or ():
            formatted = error.formatted
            if error_code(error) is None:
                formatted["extensions"] = {
                    **(formatted.get("extensions") or {}),
                    "code": request_error_code(error),
                }
            errors.append(formatted)
        response: GraphQLHTTPResponse = {"errors": errors}
        if result.extensions:
            response["extensions"] = result.extensions
        return response

    def json_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], media_type: str
    ) -> Response:
        status = 200
        # Without `data` the request failed before execution: the newer media type says so.
        if (
            media_type == GRAPHQL_RESPONSE_JSON
            and isinstance(response_data, dict)
            and "data" not in response_data
        ):
            status = 400
        return Response(
            self.encode_json(response_data),
            status_code=status,
            media_type=f"{media_type}; charset=utf-8",
        )

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = self.json_response(response_data, sub_response.media_type or JSON)
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        for name, value in sub_response.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                response.headers.append(name, value)
        if sub_response.background:
            response.background = sub_response.background
        return response
