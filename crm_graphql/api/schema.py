import logging
import re
from collections.abc import Callable, Iterable
from functools import cache
from inspect import isawaitable
from typing import Any, cast

import strawberry
from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.name_converter import NameConverter
from strawberry.schema.schema import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    StrawberryGraphQLCoreExecutionContext,
)
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.str_converters import to_camel_case

from crm_graphql.api.context import FORBIDDEN
from crm_graphql.api.documents import DocumentCache
from crm_graphql.api.faults import ClientSafeErrors, fault_code
from crm_graphql.api.limits import QueryLimits, create_limits_rule
from crm_graphql.api.mutations import Mutation
from crm_graphql.api.queries import Query
from crm_graphql.api.subscriptions import Subscription
from crm_graphql.api.types import LeadType, SaleType
from crm_graphql.api.webhooks import WebhookMutation, WebhookQuery
from crm_graphql.db.statements import counting_statements
from crm_graphql.domain.access import Forbidden
from crm_graphql.settings import Settings
from crm_graphql.web.record import current_record

logger = logging.getLogger("crm_graphql.errors")

# graphql-core's did_you_mean(): " Did you mean 'a', 'b', or 'c'?", names only.
SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")

WEBSOCKET_REQUIRED = "WEBSOCKET_REQUIRED"


def subscription_over_http() -> GraphQLError:
    return GraphQLError(
        "Subscriptions are served over WebSocket (the graphql-transport-ws protocol, at "
        "/graphql), not over HTTP.",
        extensions={"code": WEBSOCKET_REQUIRED},
    )


def is_unexpected(error: GraphQLError) -> bool:
    """Syntax, validation, refused access and deliberate GraphQLErrors are the client's,
    database faults are reported with their own code (api/faults.py); anything else is ours."""
    original = error.original_error
    return (
        original is not None
        and not isinstance(original, GraphQLError | Forbidden)
        and fault_code(original) is None
    )


class EventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Each subscription event is executed with a memo of its own. graphql-core 3.3 shares the
    executor's memo of collected subfields with every event's copy, keyed by the identity of
    field lists that each event builds anew: it never hits, and kept a few entries per event
    for as long as the subscription lived (memory that grew without bound, and garbage
    collection pauses that grew with it: 90 ms after 15 s at 900 events/s)."""

    def build_per_event_executor(self, payload: Any) -> "EventExecutor":
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return cast("EventExecutor", executor)


class CrmSchema(strawberry.Schema):
    """Queries and mutations run without Strawberry's extension runner: parsing and validation
    from the document cache, errors made client-safe, the operation noted for the request log,
    in straight-line code. The runner's per-request cost (a context manager per phase and per
    hook) was a fifth of a mutation's CPU in the GraphQL layer (docs/benchmarks.md).
    Subscriptions keep Strawberry's path, with the same cache and masking as extensions."""

    def __init__(
        self,
        *,
        documents: DocumentCache,
        client_safe_errors: Callable[[], ClientSafeErrors],
        count_statements: bool = False,
        **kwargs: Any,
    ) -> None:
        # Factories: an extension keeps per-operation state, so each subscription gets its own.
        super().__init__(**kwargs, extensions=[documents.extension, client_safe_errors])
        # execute() hands on graphql-core's result as it is: no @defer/@stream deliveries.
        if self.config.enable_experimental_incremental_execution:
            raise ValueError("incremental execution is not supported")
        self.documents = documents
        self.client_safe = client_safe_errors()  # only its stateless masking is used here
        self.count_statements = count_statements

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
        with counting_statements(enabled=self.count_statements) as statements:
            try:
                data, errors = await self._execute(context, query)
            except (CannotGetOperationTypeError, InvalidOperationTypeError):
                raise  # the HTTP view answers these with a 4xx
            except Exception as error:  # ours, not the client's: logged, answered masked
                data = None
                errors = [
                    error
                    if isinstance(error, GraphQLError)
                    else GraphQLError(str(error), original_error=error)
                ]
        extensions = {"sqlStatements": statements.count} if self.count_statements else None
        return self._result(context, data, errors, extensions)

    async def _execute(
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
            # Strawberry allows subscriptions over HTTP (for its streaming transports), which
            # graphql-core's execute cannot run: the client is told where they are served.
            return None, [subscription_over_http()]
        if record := current_record.get():
            record.note_operation(context.operation_name, operation_type.value)
        if errors := self.documents.validate(self._schema, query):
            return None, errors
        result = self._get_execute_function()(
            self._schema,
            context.graphql_document,
            root_value=context.root_value,
            variable_values=context.variables,
            # As Strawberry does: without a name given, the document's first operation.
            operation_name=context.operation_name,
            context_value=context.context,
            is_awaitable=optimized_is_awaitable,
            executor_class=self.execution_context_class,
            hide_suggestions=self.config.disable_field_suggestions,
            **self._get_custom_context_kwargs(context.operation_extensions),
        )
        if isawaitable(result):
            result = await result
        return result.data, result.errors

    def _result(
        self,
        context: ExecutionContext,
        data: dict[str, Any] | None,
        errors: list[GraphQLError] | None,
        extensions: dict[str, Any] | None,
    ) -> ExecutionResult:
        if errors:
            self._process_errors(errors, context)  # logs the originals, before masking
            errors = self.client_safe.make_safe(errors)
        result = ExecutionResult(data=data, errors=errors or None, extensions=extensions)
        context.result = result
        return result

    @staticmethod
    def remove_field_suggestion(error: GraphQLError) -> None:
        """With suggestions disabled (production), none in any error: validation and execution
        are told to hide them; this catches the rest (a subscription's variables)."""
        error.message = SUGGESTION.sub("", error.message)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if isinstance(error.original_error, Forbidden):
                # Runs before MaskErrors and before the response is written.
                error.extensions = {"code": FORBIDDEN}
            elif is_unexpected(error):
                logger.error(
                    "unexpected error in %s at %s",
                    execution_context.operation_name if execution_context else None,
                    error.path,
                    exc_info=error.original_error,
                )


class CachedNameConverter(NameConverter):
    """Strawberry converts the Python names of an input's fields to GraphQL names on every
    request that sends the input; a name's GraphQL name never changes, so it is kept (the
    schema's names are a fixed, small set)."""

    def apply_naming_config(self, name: str) -> str:
        return _camel_case(name) if self.auto_camel_case else name


_camel_case = cache(to_camel_case)


def create_schema(settings: Settings | None = None) -> CrmSchema:
    settings = settings or Settings()
    documents = DocumentCache(
        max_tokens=settings.max_query_tokens,
        extra_rules=(create_limits_rule(QueryLimits.from_settings(settings)),),
        introspection=not settings.production,
        hide_suggestions=settings.production,
    )
    config = StrawberryConfig(
        disable_field_suggestions=settings.production, name_converter=CachedNameConverter()
    )
    if settings.batching_enabled:
        config.batching_config = {"max_operations": settings.max_batch_operations}
    return CrmSchema(
        query=merge_types("Query", (Query, WebhookQuery)),
        mutation=merge_types("Mutation", (Mutation, WebhookMutation)),
        subscription=Subscription,
        types=[LeadType, SaleType],
        config=config,
        documents=documents,
        client_safe_errors=lambda: ClientSafeErrors(
            is_unexpected, error_message="Internal server error."
        ),
        count_statements=settings.expose_sql_count,
        execution_context_class=EventExecutor,
    )


schema = create_schema()
