"""Mutations: decode IDs, call one use case, map rule violations to `errors`."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from crm_graphql.api.ids import decode_id_of
from crm_graphql.api.inputs import (
    AdvanceSaleStageInput,
    AdvanceStageInput,
    AnalyzeLeadInput,
    CreateLeadInput,
    LogActivityInput,
    MergeLeadsInput,
    TransferToSalesInput,
    UpdateLeadInput,
)
from crm_graphql.api.types import LeadInfo, LeadType, SaleType, UserError, load_lead
from crm_graphql.domain.contact import ContactInput
from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.domain.lead import Lead, Sale
from crm_graphql.services.leads import UNCHANGED, LeadChanges, Merge

T = TypeVar("T")


async def attempt(action: Callable[[], Awaitable[T]]) -> tuple[T | None, list[UserError]]:
    """Run a use case; a broken rule becomes `errors`, anything else propagates (masked)."""
    try:
        return await action(), []
    except RuleViolation as violation:
        return None, [UserError.from_violation(v) for v in violation.violations]


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
class Mutation:
    @strawberry.mutation(description="Create a lead in stage NEW.")
    async def create_lead(self, info: LeadInfo, input: CreateLeadInput) -> CreateLeadPayload:
        leads = info.context.services.leads
        contact = ContactInput(
            contact_name=input.contact_name,
            company_name=input.company_name,
            email=input.email,
            phone=input.phone,
            website=input.website,
        )
        lead, errors = await attempt(
            lambda: leads.create(
                input.source, input.business_domain, contact, input.allow_duplicate
            )
        )
        return CreateLeadPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="Change a lead's fields; a transferred lead is locked.")
    async def update_lead(self, info: LeadInfo, input: UpdateLeadInput) -> UpdateLeadPayload:
        leads = info.context.services.leads
        changes = LeadChanges(
            **{
                name: UNCHANGED if value is strawberry.UNSET else value
                for name, value in vars(input).items()
                if name != "lead_id"
            }
        )

        async def action() -> Lead:
            return await leads.update(decode_id_of("Lead", input.lead_id, "leadId"), changes)

        lead, errors = await attempt(action)
        return UpdateLeadPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(
        description="Fold a duplicate lead into the one that stays: activities and history "
        "move over, empty fields are filled (never overwritten), the duplicate ends LOST."
    )
    async def merge_leads(self, info: LeadInfo, input: MergeLeadsInput) -> MergeLeadsPayload:
        leads = info.context.services.leads

        async def action() -> Merge:
            return await leads.merge(
                decode_id_of("Lead", input.keep_id, "keepId"),
                decode_id_of("Lead", input.merge_id, "mergeId"),
            )

        merge, errors = await attempt(action)
        return MergeLeadsPayload(
            lead=lead_or_none(merge.kept if merge else None),
            merged=lead_or_none(merge.merged if merge else None),
            errors=errors,
        )

    @strawberry.mutation(description="Record a contact with the client; counts toward the score.")
    async def log_activity(self, info: LeadInfo, input: LogActivityInput) -> LogActivityPayload:
        leads = info.context.services.leads

        async def action() -> Lead:
            lead_id = decode_id_of("Lead", input.lead_id, "leadId")
            return await leads.log_activity(lead_id, input.kind, input.note)

        lead, errors = await attempt(action)
        return LogActivityPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="Ask the scorer for a conversion estimate; it advises only.")
    async def analyze_lead(self, info: LeadInfo, input: AnalyzeLeadInput) -> AnalyzeLeadPayload:
        leads = info.context.services.leads

        async def action() -> Lead:
            return await leads.analyze(decode_id_of("Lead", input.lead_id, "leadId"))

        lead, errors = await attempt(action)
        return AnalyzeLeadPayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="Move a lead along the funnel (not to TRANSFERRED).")
    async def advance_stage(self, info: LeadInfo, input: AdvanceStageInput) -> AdvanceStagePayload:
        leads = info.context.services.leads

        async def action() -> Lead:
            return await leads.advance_stage(
                decode_id_of("Lead", input.lead_id, "leadId"), input.to
            )

        lead, errors = await attempt(action)
        return AdvanceStagePayload(lead=lead_or_none(lead), errors=errors)

    @strawberry.mutation(description="The human decision: hand a qualified lead to sales.")
    async def transfer_to_sales(
        self, info: LeadInfo, input: TransferToSalesInput
    ) -> TransferToSalesPayload:
        leads = info.context.services.leads

        async def action() -> tuple[Lead, Sale]:
            transfer = await leads.transfer_to_sales(decode_id_of("Lead", input.lead_id, "leadId"))
            return transfer.lead, transfer.sale

        result, errors = await attempt(action)
        lead, sale = result if result else (None, None)
        return TransferToSalesPayload(
            lead=lead_or_none(lead), sale=sale_or_none(sale), errors=errors
        )

    @strawberry.mutation(description="Move a sale along its pipeline.")
    async def advance_sale_stage(
        self, info: LeadInfo, input: AdvanceSaleStageInput
    ) -> AdvanceSaleStagePayload:
        sales = info.context.services.sales

        async def action() -> Sale:
            return await sales.advance_stage(
                decode_id_of("Sale", input.sale_id, "saleId"), input.to
            )

        sale, errors = await attempt(action)
        return AdvanceSaleStagePayload(sale=sale_or_none(sale), errors=errors)
