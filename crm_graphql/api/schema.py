import logging
from collections.abc import Sequence
from functools import cache

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.types import ExecutionContext
from strawberry.utils.str_converters import to_camel_case

from crm_graphql.api.context import FORBIDDEN
from crm_graphql.api.documents import DocumentCache
from crm_graphql.api.faults import ClientSafeErrors, fault_code
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


class CachedNameConverter(NameConverter):
    """Strawberry converts the Python names of an input's fields to GraphQL names on every
    request that sends the input; a name's GraphQL name never changes, so it is kept (the
    schema's names are a fixed, small set)."""

    def apply_naming_config(self, name: str) -> str:
        return _camel_case(name) if self.auto_camel_case else name


_camel_case = cache(to_camel_case)


def create_schema(
    settings: Settings | None = None, extra_extensions: Sequence[type[SchemaExtension]] = ()
) -> CrmSchema:
    settings = settings or Settings()
    documents = DocumentCache(
        max_tokens=settings.max_query_tokens,
        extra_rules=(create_limits_rule(QueryLimits.from_settings(settings)),),
        introspection=not settings.production,
    )
    config = StrawberryConfig(
        disable_field_suggestions=settings.production, name_converter=CachedNameConverter()
    )
    if settings.batching_enabled:
        config.batching_config = {"max_operations": settings.max_batch_operations}
    return CrmSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[LeadType, SaleType],
        config=config,
        # Factories, so every request gets fresh extension instances.
        extensions=[
            documents.extension,
            lambda: ClientSafeErrors(is_unexpected, error_message="Internal server error."),
            *extra_extensions,
        ],
    )


schema = create_schema()
