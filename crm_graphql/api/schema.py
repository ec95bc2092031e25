import logging
from collections.abc import Sequence

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, ParserCache, SchemaExtension, ValidationCache
from strawberry.types import ExecutionContext

from crm_graphql.api.mutations import Mutation
from crm_graphql.api.queries import Query
from crm_graphql.api.subscriptions import Subscription
from crm_graphql.api.types import LeadType, SaleType

logger = logging.getLogger("crm_graphql.errors")


def is_unexpected(error: GraphQLError) -> bool:
    """Syntax, validation and deliberate GraphQLErrors are the client's; anything else is ours."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class CrmSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if is_unexpected(error):
                logger.error(
                    "unexpected error in %s at %s",
                    execution_context.operation_name if execution_context else None,
                    error.path,
                    exc_info=error.original_error,
                )


def create_schema(extra_extensions: Sequence[type[SchemaExtension]] = ()) -> CrmSchema:
    return CrmSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[LeadType, SaleType],
        extensions=[
            ParserCache(maxsize=1024),
            ValidationCache(maxsize=1024),
            MaskErrors(should_mask_error=is_unexpected, error_message="Internal server error."),
            *extra_extensions,
        ],
    )


schema = create_schema()
