import strawberry
from graphql import GraphQLError

from crm_graphql.api.analytics import PipelineStats, PipelineStatsInput
from crm_graphql.api.ids import decode_global_id, decode_id_of
from crm_graphql.api.inputs import LeadFilter, LeadOrder, SaleFilter
from crm_graphql.api.types import (
    LeadConnection,
    LeadInfo,
    LeadType,
    Node,
    SaleConnection,
    SaleType,
    UserType,
    for_client,
)
from crm_graphql.domain.errors import RuleViolation
from crm_graphql.services.pagination import PageArgs


def as_graphql_error(violation: RuleViolation) -> GraphQLError:
    """A query has no payload for user errors: the rule's code travels in `extensions`."""
    violations = [for_client(v) for v in violation.violations]
    first = violations[0]
    return GraphQLError(
        "; ".join(v.message for v in violations),
        extensions={"code": first.code.value, "field": list(first.field or ())},
    )


@strawberry.type
class Query:
    @strawberry.field(description="The caller, as their token names them.")
    def viewer(self, info: LeadInfo) -> UserType:
        actor = info.context.actor
        return UserType(id=strawberry.ID(actor.user_id), name=actor.name, role=actor.role)

    @strawberry.field(
        description="Fetch any object by its global ID; null if the caller may not see it."
    )
    async def node(self, info: LeadInfo, id: strawberry.ID) -> Node | None:
        decoded = decode_global_id(id)
        if decoded is None:
            raise GraphQLError(
                "`id` is not a valid ID.", extensions={"code": "INVALID_INPUT", "field": ["id"]}
            )
        type_name, pk = decoded
        loaders = info.context.loaders
        if type_name == "Lead":
            lead = await loaders.lead.load(pk)
            return LeadType.from_domain(lead) if lead else None
        if type_name == "Sale":
            sale = await loaders.sale.load(pk)
            return SaleType.from_domain(sale) if sale else None
        return None

    @strawberry.field(description="Null when no lead has this ID or the caller may not see it.")
    async def lead(self, info: LeadInfo, id: strawberry.ID) -> LeadType | None:
        try:
            pk = decode_id_of("Lead", id, "id")
        except RuleViolation as violation:
            raise as_graphql_error(violation) from None
        lead = await info.context.loaders.lead.load(pk)
        return LeadType.from_domain(lead) if lead else None

    @strawberry.field(description="Leads, newest first unless `orderBy` says otherwise.")
    async def leads(
        self,
        info: LeadInfo,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: LeadFilter | None = None,
        order_by: LeadOrder | None = None,
    ) -> LeadConnection:
        try:
            page = await info.context.services.queries.leads_page(
                info.context.actor,
                PageArgs(first=first, after=after, last=last, before=before),
                filter or LeadFilter(),
                order_by or LeadOrder(),
            )
        except RuleViolation as violation:
            raise as_graphql_error(violation) from None
        return LeadConnection.from_page(page)

    @strawberry.field(description="Sales, newest first.")
    async def sales(
        self,
        info: LeadInfo,
        first: int | None = None,
        after: str | None = None,
        filter: SaleFilter | None = None,
    ) -> SaleConnection:
        try:
            page = await info.context.services.queries.sales_page(
                info.context.actor,
                PageArgs(first=first, after=after),
                (filter or SaleFilter()).stage,
            )
        except RuleViolation as violation:
            raise as_graphql_error(violation) from None
        return SaleConnection.from_page(page)

    @strawberry.field(
        description="Funnel, conversion, time in stage, sales and score track record for a "
        "window, from the stage-change audit trail (definitions: docs/analytics.md)."
    )
    async def pipeline_stats(self, info: LeadInfo, input: PipelineStatsInput) -> PipelineStats:
        try:
            stats = await info.context.services.analytics.pipeline_stats(
                info.context.actor, input.from_, input.to, input.group_by, input.as_of
            )
        except RuleViolation as violation:
            raise as_graphql_error(violation) from None
        return PipelineStats.from_domain(stats)
