"""GraphQL object types. Thin: fields read the domain record or go through a DataLoader."""

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.types import Info
from strawberry.utils.str_converters import to_camel_case

from crm_graphql.api.context import Context
from crm_graphql.api.ids import encode_global_id
from crm_graphql.domain import access, enums, scoring
from crm_graphql.domain.errors import ErrorCode, Violation
from crm_graphql.domain.lead import STORED_AS_MORE, Lead, Sale, StageChange
from crm_graphql.domain.scoring import Score
from crm_graphql.services import queries
from crm_graphql.services.pagination import Page

# The GraphQL enums are the domain's: strawberry.enum records the GraphQL definition on the
# class itself and returns it, so these names are plain aliases (types to a type checker).
LeadSource = enums.LeadSource
LeadStage = enums.LeadStage
SaleStage = enums.SaleStage
ScoreRecommendation = enums.ScoreRecommendation
ActivityKind = enums.ActivityKind
LeadOrderField = queries.LeadOrderField
OrderDirection = queries.OrderDirection
UserErrorCode = ErrorCode
Role = access.Role
ScorerKind = scoring.ScorerKind
for _enum in (
    LeadSource,
    LeadStage,
    SaleStage,
    ScoreRecommendation,
    ActivityKind,
    LeadOrderField,
    OrderDirection,
):
    strawberry.enum(_enum)
strawberry.enum(UserErrorCode, name="UserErrorCode")
strawberry.enum(Role, name="Role")
strawberry.enum(ScorerKind, description="A scorer an admin can ask for by name in analyzeLead.")


LeadInfo = Info[Context, None]


@strawberry.interface(description="An object with a globally unique ID (Relay).")
class Node:
    id: strawberry.ID


def for_client(violation: Violation) -> Violation:
    """The violation with its field path in GraphQL names: the domain's snake_case names become
    camelCase, as Strawberry names every field and argument."""
    return violation.named(to_camel_case)


@strawberry.type(description="A business rule the request broke; nothing was changed.")
class UserError:
    code: UserErrorCode
    message: str
    field: list[str] | None = strawberry.field(
        description="Path to the input field at fault, when one is."
    )
    duplicate_of: strawberry.Private[int | None] = None

    @classmethod
    def from_violation(cls, violation: Violation) -> "UserError":
        violation = for_client(violation)
        field = list(violation.field) if violation.field else None
        message = violation.message
        if violation.duplicate_of is not None:
            message += f" Existing lead: {encode_global_id('Lead', violation.duplicate_of)}."
        return cls(
            code=violation.code,
            message=message,
            field=field,
            duplicate_of=violation.duplicate_of,
        )


@strawberry.type(name="User", description="A person, as named by their token.")
class UserType:
    id: strawberry.ID = strawberry.field(description="The token's `sub`.")
    name: str
    role: Role = strawberry.field(description="The role of the person's latest token seen.")

    @classmethod
    def from_domain(cls, user: access.User) -> "UserType":
        return cls(id=strawberry.ID(user.id), name=user.name, role=user.role)


async def load_user(info: LeadInfo, user_id: str | None) -> UserType | None:
    """None for records written before authentication existed."""
    if user_id is None:
        return None
    user = await info.context.loaders.user.load(user_id)
    return UserType.from_domain(user) if user else None


@strawberry.type(description="One reason a score is what it is.")
class ScoreFactor:
    name: str
    contribution: float = strawberry.field(
        description="Signed share of the score; a score's contributions add up to its value "
        "before clamping to [0, 1] and rounding."
    )
    explanation: str = strawberry.field(description="One sentence for a manager.")


@strawberry.type
class LeadScore:
    value: float
    recommendation: ScoreRecommendation
    reasons: list[str] = strawberry.field(description="Short reasons; see factors for detail.")
    factors: list[ScoreFactor] = strawberry.field(
        description="Why the score is what it is. Empty for scores stored before factors existed."
    )
    scorer: str = strawberry.field(
        description='The scorer that produced the score, e.g. "llm", or '
        '"heuristic (fallback: timeout)" when the chosen scorer could not answer.'
    )
    scorer_version: str | None = strawberry.field(
        description="The version of that scorer (heuristic rules, LLM model, learned model); "
        "null for scores stored before versions were recorded."
    )
    scored_at: datetime
    stale: bool = strawberry.field(
        description="True when the lead's scoring inputs changed since it was scored."
    )

    @classmethod
    def from_domain(cls, score: Score, lead: Lead) -> "LeadScore":
        return cls(
            value=score.value,
            recommendation=score.recommendation,
            reasons=list(score.reasons),
            factors=[
                ScoreFactor(name=f.name, contribution=f.contribution, explanation=f.explanation)
                for f in score.factors
            ],
            scorer=score.scorer,
            scorer_version=score.scorer_version,
            scored_at=score.scored_at,
            stale=score.is_stale_for(lead.snapshot),
        )


@strawberry.type
class LeadStageChange:
    from_: LeadStage | None = strawberry.field(name="from")
    to: LeadStage
    at: datetime
    by_id: strawberry.Private[str | None]
    note: str | None = strawberry.field(
        default=None,
        description="Why, when the change says more than its stages (a merge, for instance).",
    )
    merged_from_id: strawberry.Private[int | None] = None

    @classmethod
    def from_domain(cls, change: StageChange[enums.LeadStage]) -> "LeadStageChange":
        return cls(
            from_=change.from_stage,
            to=change.to_stage,
            at=change.at,
            by_id=change.by,
            note=change.note,
            merged_from_id=change.merged_from,
        )

    @strawberry.field(description="Who made the change; null before authentication existed.")
    async def by(self, info: LeadInfo) -> UserType | None:
        return await load_user(info, self.by_id)

    @strawberry.field(
        description="The lead this change happened on, when it came here through a merge."
    )
    async def merged_from(
        self, info: LeadInfo
    ) -> Annotated["LeadType", strawberry.lazy(__name__)] | None:
        return await load_lead(info, self.merged_from_id)


async def load_lead(info: LeadInfo, lead_id: int | None) -> "LeadType | None":
    """None also for a lead the actor may not read: the loader applies the read rules."""
    if lead_id is None:
        return None
    lead = await info.context.loaders.lead.load(lead_id)
    return LeadType.from_domain(lead) if lead else None


@strawberry.type
class SaleStageChange:
    from_: SaleStage | None = strawberry.field(name="from")
    to: SaleStage
    at: datetime
    by_id: strawberry.Private[str | None]

    @classmethod
    def from_domain(cls, change: StageChange[enums.SaleStage]) -> "SaleStageChange":
        return cls(from_=change.from_stage, to=change.to_stage, at=change.at, by_id=change.by)

    @strawberry.field(description="Who made the change; null before authentication existed.")
    async def by(self, info: LeadInfo) -> UserType | None:
        return await load_user(info, self.by_id)


@strawberry.type(name="Lead")
class LeadType(Node):
    record: strawberry.Private[Lead]
    source: LeadSource
    stage: LeadStage
    business_domain: str | None
    activity_count: int
    created_at: datetime
    updated_at: datetime
    contact_name: str | None
    company_name: str | None
    email: str | None = strawberry.field(description="Lower-cased.")
    phone: str | None = strawberry.field(description="E.164, for example +4930123456.")
    website: str | None = strawberry.field(description="With its scheme; host lower-cased.")
    lost_reason: str | None = strawberry.field(description="Why the lead was lost, when known.")
    next_follow_up_at: datetime | None = strawberry.field(
        description="When the owner plans the next contact."
    )

    @classmethod
    def from_domain(cls, lead: Lead) -> "LeadType":
        # Every lead a client reads comes through here: the plain fields are read as stored.
        fields = dict(vars(lead.fields))
        for name, storage in STORED_AS_MORE:
            fields[name] = storage.shown(fields[name])
        return cls(
            id=strawberry.ID(encode_global_id("Lead", lead.id)),
            record=lead,
            source=lead.source,
            stage=lead.stage,
            activity_count=lead.activity_count,
            created_at=lead.created_at,
            updated_at=lead.updated_at,
            lost_reason=lead.lost_reason,
            **fields,
        )

    @strawberry.field(description="The lead this one was merged into (it is then LOST).")
    async def merged_into(self, info: LeadInfo) -> "LeadType | None":
        return await load_lead(info, self.record.merged_into)

    @strawberry.field(
        description="The open lead this one duplicates, when it was created with allowDuplicate."
    )
    async def duplicate_of(self, info: LeadInfo) -> "LeadType | None":
        return await load_lead(info, self.record.duplicate_of)

    @strawberry.field(description="Null until the lead is analyzed.")
    def score(self) -> LeadScore | None:
        score = self.record.score
        return LeadScore.from_domain(score, self.record) if score else None

    @strawberry.field(description="The Sale, once the lead is transferred.")
    async def sale(self, info: LeadInfo) -> Annotated["SaleType", strawberry.lazy(__name__)] | None:
        sale = await info.context.loaders.sale_by_lead.load(self.record.id)
        return SaleType.from_domain(sale) if sale else None

    @strawberry.field(description="Who created the lead; null before authentication existed.")
    async def created_by(self, info: LeadInfo) -> UserType | None:
        return await load_user(info, self.record.created_by)

    @strawberry.field(description="Who is responsible for the lead: its creator unless reassigned.")
    async def owner(self, info: LeadInfo) -> UserType | None:
        return await load_user(info, self.record.owner_id)

    @strawberry.field(
        description="Every stage change of this lead, oldest first; creation included. With "
        "includeMerged, also those of the leads merged into it (marked by mergedFrom), by time."
    )
    async def history(self, info: LeadInfo, include_merged: bool = False) -> list[LeadStageChange]:
        loaders = info.context.loaders
        loader = loaders.lead_history_with_merged if include_merged else loaders.lead_history
        changes = await loader.load(self.record.id)
        return [LeadStageChange.from_domain(change) for change in changes]


@strawberry.type(name="Sale")
class SaleType(Node):
    record: strawberry.Private[Sale]
    stage: SaleStage
    created_at: datetime

    @classmethod
    def from_domain(cls, sale: Sale) -> "SaleType":
        return cls(
            id=strawberry.ID(encode_global_id("Sale", sale.id)),
            record=sale,
            stage=sale.stage,
            created_at=sale.created_at,
        )

    @strawberry.field
    async def lead(self, info: LeadInfo) -> LeadType:
        lead = await info.context.loaders.lead.load(self.record.lead_id)
        # Impossible: the foreign key holds, and a sale's lead is TRANSFERRED, which every
        # role may read.
        if lead is None:
            raise LookupError(f"sale {self.record.id} has no lead")
        return LeadType.from_domain(lead)

    @strawberry.field(description="Who transferred the lead to sales.")
    async def transferred_by(self, info: LeadInfo) -> UserType | None:
        return await load_user(info, self.record.transferred_by)

    @strawberry.field(description="Every stage change, oldest first; creation included.")
    async def history(self, info: LeadInfo) -> list[SaleStageChange]:
        changes = await info.context.loaders.sale_history.load(self.record.id)
        return [SaleStageChange.from_domain(change) for change in changes]


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class CountedConnection:
    page_info: PageInfo
    page: strawberry.Private[Page[Any]]

    @strawberry.field(description="How many items match the filter, across all pages.")
    async def total_count(self) -> int:
        return await self.page.total_count()


def page_info(page: Page[Any]) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        start_cursor=page.edges[0].cursor if page.edges else None,
        end_cursor=page.edges[-1].cursor if page.edges else None,
    )


@strawberry.type
class LeadEdge:
    node: LeadType
    cursor: str


@strawberry.type
class LeadConnection(CountedConnection):
    edges: list[LeadEdge]

    @classmethod
    def from_page(cls, page: Page[Lead]) -> "LeadConnection":
        return cls(
            edges=[
                LeadEdge(node=LeadType.from_domain(e.node), cursor=e.cursor) for e in page.edges
            ],
            page_info=page_info(page),
            page=page,
        )


@strawberry.type
class SaleEdge:
    node: SaleType
    cursor: str


@strawberry.type
class SaleConnection(CountedConnection):
    edges: list[SaleEdge]

    @classmethod
    def from_page(cls, page: Page[Sale]) -> "SaleConnection":
        return cls(
            edges=[
                SaleEdge(node=SaleType.from_domain(e.node), cursor=e.cursor) for e in page.edges
            ],
            page_info=page_info(page),
            page=page,
        )
