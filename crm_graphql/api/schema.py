import logging
from collections.abc import Callable, Sequence

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from crm_graphql.api.context import FORBIDDEN
from crm_graphql.api.faults import ReportDatabaseFaults, fault_code
from crm_graphql.api.limits import QueryLimits, create_limits_rule
from crm_graphql.api.mutations import Mutation
from crm_graphql.api.queries import Query
from crm_graphql.api.subscriptions import Subscription
from crm_graphql.api.types import LeadType, SaleType
from crm_graphql.domain.access import Forbidden
from crm_graphql.settings import Settings

logger = logging.getLogger("crm_graphql.errors")


def is_unexpected(error: GraphQLError) -> bool:
    """Syntax, validation, refused access and deliberate GraphQLErrors are the client's,
    database faults are reported with their own code (api/faults.py); anything else is ours."""
    original = error.original_error
    return (
        original is not None
        and not isinstance(original, GraphQLError | Forbidden)
        and fault_code(original) is None
    )


class CrmSchema(strawberry.Schema):
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


def create_schema(
    settings: Settings | None = None, extra_extensions: Sequence[type[SchemaExtension]] = ()
) -> CrmSchema:
    settings = settings or Settings()
    limits_rule = create_limits_rule(QueryLimits.from_settings(settings))
    # Factories, so every request gets fresh extension instances.
    guards: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: AddValidationRules([limits_rule]),
    ]
    if settings.production:
        guards.append(DisableIntrospection)
    config = StrawberryConfig(disable_field_suggestions=settings.production)
    if settings.batching_enabled:
        config.batching_config = {"max_operations": settings.max_batch_operations}
    return CrmSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[LeadType, SaleType],
        config=config,
        extensions=[
            *guards,
            lambda: ParserCache(maxsize=1024),
            lambda: ValidationCache(maxsize=1024),
            lambda: MaskErrors(
                should_mask_error=is_unexpected, error_message="Internal server error."
            ),
            ReportDatabaseFaults,
            *extra_extensions,
        ],
    )


schema = create_schema()
