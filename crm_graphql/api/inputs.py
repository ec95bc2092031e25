import strawberry

from crm_graphql.api.types import (
    ActivityKind,
    LeadOrderField,
    LeadSource,
    LeadStage,
    OrderDirection,
    SaleStage,
    ScorerKind,
)


@strawberry.input
class LeadFilter:
    stage: list[LeadStage] | None = None
    source: list[LeadSource] | None = None
    min_score: float | None = None
    has_business_domain: bool | None = None


@strawberry.input
class LeadOrder:
    field: LeadOrderField = LeadOrderField.CREATED_AT
    direction: OrderDirection = OrderDirection.DESC


@strawberry.input
class SaleFilter:
    stage: list[SaleStage] | None = None


@strawberry.input
class CreateLeadInput:
    source: LeadSource
    business_domain: str | None = None


@strawberry.input
class UpdateLeadInput:
    lead_id: strawberry.ID
    business_domain: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Trimmed, 1 to 120 characters; null clears it. Makes a score stale.",
    )


@strawberry.input
class LogActivityInput:
    lead_id: strawberry.ID
    kind: ActivityKind
    note: str | None = None


@strawberry.input
class AnalyzeLeadInput:
    lead_id: strawberry.ID
    scorer: ScorerKind | None = strawberry.field(
        default=None,
        description="Ask a specific scorer (admins only); the deployment's default when null.",
    )


@strawberry.input
class AdvanceStageInput:
    lead_id: strawberry.ID
    to: LeadStage


@strawberry.input
class TransferToSalesInput:
    lead_id: strawberry.ID


@strawberry.input
class AdvanceSaleStageInput:
    sale_id: strawberry.ID
    to: SaleStage


@strawberry.input
class AssignLeadInput:
    lead_id: strawberry.ID
    owner_id: strawberry.ID = strawberry.field(description="The new owner's User ID.")
