import logging
from typing import Any

from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult

from crm_graphql.api.context import FORBIDDEN
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
from crm_graphql.strawberry_overrides import (
    CachedNameConverter,
    DirectExecutionSchema,
    DocumentCache,
    EventExecutor,
)
from crm_graphql.web.record import current_record

logger = logging.getLogger("crm_graphql.errors")

WEBSOCKET_REQUIRED = "WEBSOCKET_REQUIRED"


def is_unexpected(error: GraphQLError) -> bool:
    """Syntax, validation, refused access and deliberate GraphQLErrors are the client's,
    database faults are reported with their own code (api/faults.py); anything else is ours."""
    original = error.original_error
    return (
        original is not None
        and not isinstance(original, GraphQLError | Forbidden)
        and fault_code(original) is None
    )


class CrmSchema(DirectExecutionSchema):
    """Queries and mutations run without Strawberry's extension runner (strawberry_overrides):
    errors made client-safe, the operation noted for the request log, and with the setting
    expose_sql_count, the statements each operation sent."""

    def __init__(self, *, count_statements: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count_statements = count_statements

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        if not self.count_statements:
            return await super().execute(*args, **kwargs)
        with counting_statements(enabled=True) as statements:
            result = await super().execute(*args, **kwargs)
        result.extensions = {"sqlStatements": statements.count}
        return result

    def subscription_refused(self) -> GraphQLError:
        return GraphQLError(
            "Subscriptions are served over WebSocket (the graphql-transport-ws protocol, at "
            "/graphql), not over HTTP.",
            extensions={"code": WEBSOCKET_REQUIRED},
        )

    def on_operation(self, context: ExecutionContext) -> None:
        if record := current_record.get():
            record.note_operation(context.operation_name, context.operation_type.value)

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
        masking=lambda: ClientSafeErrors(is_unexpected, error_message="Internal server error."),
        count_statements=settings.expose_sql_count,
        execution_context_class=EventExecutor,
    )


schema = create_schema()
