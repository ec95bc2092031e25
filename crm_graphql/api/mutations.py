"""Mutations: decode IDs, call one use case, map rule violations to `errors`.

A role that may not run a mutation gets a FORBIDDEN GraphQL error, not a UserError: it is not a
business rule the input broke but a request the caller should not have made."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from crm_graphql.api.context import Context
from crm_graphql.api.ids import decode_id_of
from crm_graphql.api.inputs import (
    AdvanceSaleStageInput,
    AdvanceStageInput,
    AnalyzeLeadInput,
    AssignLeadInput,
    CreateLeadInput,
    LogActivityInput,
    MergeLeadsInput,
    TransferToSalesInput,
    UpdateLeadInput,
    given_lead_fields,
)
from crm_graphql.api.types import LeadInfo, LeadType, SaleType, UserError, load_lead
from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.domain.lead import Lead, Sale
from crm_graphql.services.leads import Merge

T = TypeVar("T")


async def attempt(
    context: Context, action: Callable[[], Awaitable[T]]
) -> tuple[T | None, list[UserError]]:
    """Run a use case; a broken rule becomes `errors`, anything else propagates (masked).

    Mutations of one document run one after another: the loaders are renewed after each, so
    the fields of the next payload never see what was cached before this write."""
    try:
        return await action(), []
    except RuleViolation as violation:
        return None, [UserError.from_violation(v) for v in violation.violations]
    finally:
        context.renew_loaders()


def lead_or_none(lead: Lead | None) -> LeadType | None:
    return LeadType.from_domain(lead) if lead else None


def sale_or_none(sale: Sale | None) -> SaleType | None:
    return SaleType.from_domain(sale) if sale else None


@strawberry.type
class ReportsDuplicates:
    errors: list[UserError]

    @strawberry.field(
        description="The open lead the input duplicates, when `errors` holds DUPLICATE."
    )
    async def duplicate_of(self, info: LeadInfo) -> LeadType | None:
        existing = next(
            (e.duplicate_of for e in self.errors if e.code is ErrorCode.DUPLICATE),
            None,
        )
        return await load_lead(info, existing)


@strawberry.type
class CreateLeadPayload(ReportsDuplicates):
    lead: LeadType | None


@strawberry.type
class UpdateLeadPayload(ReportsDuplicates):
    lead: LeadType | None


@strawberry.type
class MergeLeadsPayload(ReportsDuplicates):
    lead: LeadType | None = strawberry.field(description="The kept lead, after the merge.")
    merged: LeadType | None = strawberry.field(description="The merged lead, now LOST.")


@strawberry.type
class LogActivityPayload:
    lead: LeadType | None
    errors: list[UserError]


@strawberry.type
class AnalyzeLeadPayload:
    lead: LeadType | None
    errors: list[UserError]


@strawberry.type
class AdvanceStagePayload:
    lead: LeadType | None
    errors: list[UserError]


@strawberry.type
class TransferToSalesPayload:
    lead: LeadType | None
    sale: SaleType | None
    errors: list[UserError]


@strawberry.type
class AdvanceSaleStagePayload:
    sale: SaleType | None
    errors: list[UserError]


@strawberry.type
class AssignLeadPayload:
    lead: LeadType | None
    errors: list[UserError]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a lead in stage NEW.")
    async def create_lead(self, info: LeadInfo, input: CreateLeadInput) -> CreateLeadPayload:
        actor, leads = info.context.actor, info.context.services.leads
        lead, errors = await attempt(
            info.context,
            lambda: leads.create(
                actor, input.source, given_lead_fields(input), input.allow_duplicate
            ),
        )
        return CreateLeadPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="Change a lead's fields; a transferred lead is locked.")
    async def update_lead(self, info: LeadInfo, input: UpdateLeadInput) -> UpdateLeadPayload:
        actor, leads = info.context.actor, info.context.services.leads
        changes = given_lead_fields(input)

        async def action() -> Lead:
            lead_id = decode_id_of("Lead", input.lead_id, "leadId")
            return await leads.update(actor, lead_id, changes)

        lead, errors = await attempt(info.context, action)
        return UpdateLeadPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(
        description="Fold a duplicate lead into the one that stays: activities and history "
        "move over, empty fields are filled (never overwritten), the duplicate ends LOST."
    )
    async def merge_leads(self, info: LeadInfo, input: MergeLeadsInput) -> MergeLeadsPayload:
        actor, leads = info.context.actor, info.context.services.leads

        async def action() -> Merge:
            return await leads.merge(
                actor,
                decode_id_of("Lead", input.keep_id, "keepId"),
                decode_id_of("Lead", input.merge_id, "mergeId"),
            )

        merge, errors = await attempt(info.context, action)
        return MergeLeadsPayload(
            lead=lead_or_none(merge.kept if merge else None),
            merged=lead_or_none(merge.merged if merge else None),
            errors=errors,
        )

    @strawberry.mutation(description="Record a contact with the client; counts toward the score.")
    async def log_activity(self, info: LeadInfo, input: LogActivityInput) -> LogActivityPayload:
        actor, leads = info.context.actor, info.context.services.leads

        async def action() -> Lead:
            lead_id = decode_id_of("Lead", input.lead_id, "leadId")
            return await leads.log_activity(actor, lead_id, input.kind, input.note)

        lead, errors = await attempt(info.context, action)
        return LogActivityPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="Ask the scorer for a conversion estimate; it advises only.")
    async def analyze_lead(self, info: LeadInfo, input: AnalyzeLeadInput) -> AnalyzeLeadPayload:
        actor, leads = info.context.actor, info.context.services.leads

        async def action() -> Lead:
            lead_id = decode_id_of("Lead", input.lead_id, "leadId")
            return await leads.analyze(actor, lead_id, input.scorer)

        lead, errors = await attempt(info.context, action)
        return AnalyzeLeadPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="Move a lead along the funnel (not to TRANSFERRED).")
    async def advance_stage(self, info: LeadInfo, input: AdvanceStageInput) -> AdvanceStagePayload:
        actor, leads = info.context.actor, info.context.services.leads

        async def action() -> Lead:
            return await leads.advance_stage(
                actor, decode_id_of("Lead", input.lead_id, "leadId"), input.to
            )

        lead, errors = await attempt(info.context, action)
        return AdvanceStagePayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="The human decision: hand a qualified lead to sales.")
    async def transfer_to_sales(
        self, info: LeadInfo, input: TransferToSalesInput
    ) -> TransferToSalesPayload:
        actor, leads = info.context.actor, info.context.services.leads

        async def action() -> tuple[Lead, Sale]:
            transfer = await leads.transfer_to_sales(
                actor, decode_id_of("Lead", input.lead_id, "leadId")
            )
            return transfer.lead, transfer.sale

        result, errors = await attempt(info.context, action)
        lead, sale = result if result else (None, None)
        return TransferToSalesPayload(
            lead=lead_or_none(lead), sale=sale_or_none(sale), errors=errors
        )

    @strawberry.mutation(description="Move a sale along its pipeline.")
    async def advance_sale_stage(
        self, info: LeadInfo, input: AdvanceSaleStageInput
    ) -> AdvanceSaleStagePayload:
        actor, sales = info.context.actor, info.context.services.sales

        async def action() -> Sale:
            return await sales.advance_stage(
                actor, decode_id_of("Sale", input.sale_id, "saleId"), input.to
            )

        sale, errors = await attempt(info.context, action)
        return AdvanceSaleStagePayload(sale=sale_or_none(sale), errors=errors)

    @strawberry.mutation(description="Make another person the lead's owner (admins only).")
    async def assign_lead(self, info: LeadInfo, input: AssignLeadInput) -> AssignLeadPayload:
        actor, leads = info.context.actor, info.context.services.leads

        async def action() -> Lead:
            lead_id = decode_id_of("Lead", input.lead_id, "leadId")
            return await leads.assign(actor, lead_id, input.owner_id)

        lead, errors = await attempt(info.context, action)
        return AssignLeadPayload(lead=lead_or_none(lead), errors=errors)
