from typing import Any

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
    search: str | None = strawberry.field(
        default=None,
        description="A fragment of the contact name, company, email or website; any case.",
    )


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
    contact_name: str | None = None
    company_name: str | None = None
    email: str | None = strawberry.field(default=None, description="Stored lower-cased.")
    phone: str | None = strawberry.field(
        default=None,
        description="Stored in E.164; include the +country code unless the server has a "
        "default region.",
    )
    website: str | None = strawberry.field(
        default=None, description="A host or URL; https:// is assumed when no scheme is given."
    )
    allow_duplicate: bool = strawberry.field(
        default=False,
        description="Create the lead even when its email, phone or website domain matches an "
        "open lead; it is then marked as a duplicate of that lead.",
    )


def _optional(description: str) -> Any:
    return strawberry.field(default=strawberry.UNSET, description=description)


@strawberry.input
class UpdateLeadInput:
    lead_id: strawberry.ID
    business_domain: str | None = _optional(
        "Trimmed, 1 to 120 characters; null clears it. Makes a score stale."
    )
    contact_name: str | None = _optional("Trimmed, 1 to 200 characters; null clears it.")
    company_name: str | None = _optional("Trimmed, 1 to 200 characters; null clears it.")
    email: str | None = _optional("Stored lower-cased; null clears it.")
    phone: str | None = _optional("Stored in E.164; null clears it.")
    website: str | None = _optional("A host or URL; null clears it.")


@strawberry.input
class MergeLeadsInput:
    keep_id: strawberry.ID = strawberry.field(description="The lead that stays.")
    merge_id: strawberry.ID = strawberry.field(description="The duplicate; it ends LOST.")


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
