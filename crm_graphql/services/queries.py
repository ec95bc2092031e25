"""Reads: pages of leads and sales, and the batch functions behind the DataLoaders. Each batch
takes its own pooled connection, so sibling fields resolved concurrently never share one.

Every read of a lead or a sale takes the actor and applies domain.access, so a lead the actor
may not see is absent from pages and loads as None, whichever field asked for it."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, func
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.tables import LEAD_SEARCH_TEXT, NO_SCORE_SORT_KEY, leads, sales
from crm_graphql.domain.access import (
    Actor,
    Permission,
    User,
    may_read_lead,
    readable_lead_stages,
    require,
)
from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage
from crm_graphql.domain.errors import RuleViolation, invalid_input
from crm_graphql.domain.lead import Lead, Sale, StageChange
from crm_graphql.domain.text import unstorable_text
from crm_graphql.services.pagination import KeysetQuery, Page, PageArgs, SortKey
from crm_graphql.settings import Settings


class LeadOrderField(StrEnum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    SCORE = "SCORE"


LEAD_SORT_KEYS: dict[LeadOrderField, SortKey] = {
    LeadOrderField.CREATED_AT: SortKey("CREATED_AT", leads.c.created_at, datetime),
    LeadOrderField.UPDATED_AT: SortKey("UPDATED_AT", leads.c.updated_at, datetime),
    LeadOrderField.SCORE: SortKey(
        "SCORE", func.coalesce(leads.c.score_value, NO_SCORE_SORT_KEY), float
    ),
}
SALE_SORT_KEY = SortKey("CREATED_AT", sales.c.created_at, datetime)


class OrderDirection(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


# The one definition of each: the GraphQL inputs of the same names are these classes
# (api/inputs.py), so a filter added here is one a client can send.
@dataclass
class LeadFilter:
    stage: list[LeadStage] | None = None
    source: list[LeadSource] | None = None
    min_score: float | None = None
    has_business_domain: bool | None = None
    search: str | None = None
    follow_up_before: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.stage is not None:
            conditions.append(leads.c.stage.in_([s.value for s in self.stage]))
        if self.source is not None:
            conditions.append(leads.c.source.in_([s.value for s in self.source]))
        if self.min_score is not None:
            conditions.append(leads.c.score_value >= self.min_score)
        if self.has_business_domain is not None:
            present = leads.c.business_domain.is_not(None)
            conditions.append(present if self.has_business_domain else ~present)
        if self.search is not None:
            conditions.append(search_condition(self.search))
        if self.follow_up_before is not None:
            conditions.append(leads.c.next_follow_up_at < self.follow_up_before)
        return conditions


SEARCH_MAX_LENGTH = 200


def search_condition(search: str) -> ColumnElement[bool]:
    """A case-insensitive fragment match on contact name, company, email and website. From 3
    characters on the trigram index serves it; shorter terms scan (trigrams need 3)."""
    violation = unstorable_text(search, "search")
    if violation:
        raise RuleViolation(violation)
    term = search.strip().lower()
    if not 1 <= len(term) <= SEARCH_MAX_LENGTH:
        raise invalid_input(
            "search", f"search must be 1 to {SEARCH_MAX_LENGTH} characters after trimming."
        )
    # autoescape: % and _ typed by a user are matched literally, not as wildcards.
    return LEAD_SEARCH_TEXT.contains(term, autoescape=True)


@dataclass
class LeadOrder:
    field: LeadOrderField = LeadOrderField.CREATED_AT
    direction: OrderDirection = OrderDirection.DESC

    @property
    def descending(self) -> bool:
        return self.direction is OrderDirection.DESC


class Queries:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    async def leads_page(
        self, actor: Actor, args: PageArgs, filter: LeadFilter, order: LeadOrder
    ) -> Page[Lead]:
        conditions = filter.conditions()
        readable = readable_lead_stages(actor)
        if readable is not None:
            conditions.append(leads.c.stage.in_([s.value for s in readable]))
        query = KeysetQuery(
            engine=self.engine,
            table=leads,
            sort=LEAD_SORT_KEYS[order.field],
            descending=order.descending,
            conditions=conditions,
            to_node=repo.lead_from_row,
            default_page_size=self.settings.default_page_size,
            max_page_size=self.settings.max_page_size,
        )
        return await query.page(args)

    async def sales_page(
        self, actor: Actor, args: PageArgs, stages: Sequence[SaleStage] | None
    ) -> Page[Sale]:
        require(actor, Permission.READ_SALES)
        conditions = [] if stages is None else [sales.c.stage.in_([s.value for s in stages])]
        query = KeysetQuery(
            engine=self.engine,
            table=sales,
            sort=SALE_SORT_KEY,
            descending=True,
            conditions=conditions,
            to_node=repo.sale_from_row,
            default_page_size=self.settings.default_page_size,
            max_page_size=self.settings.max_page_size,
        )
        return await query.page(args)

    async def leads_by_ids(self, actor: Actor, ids: Sequence[int]) -> list[Lead | None]:
        async with self.engine.connect() as conn:
            found = await repo.leads_by_ids(conn, ids)
        return [
            lead if (lead := found.get(i)) and may_read_lead(actor, lead.stage) else None
            for i in ids
        ]

    async def sales_by_ids(self, actor: Actor, ids: Sequence[int]) -> list[Sale | None]:
        require(actor, Permission.READ_SALES)
        async with self.engine.connect() as conn:
            found = await repo.sales_by_ids(conn, ids)
        return [found.get(i) for i in ids]

    async def sales_by_lead_ids(self, actor: Actor, lead_ids: Sequence[int]) -> list[Sale | None]:
        require(actor, Permission.READ_SALES)
        async with self.engine.connect() as conn:
            found = await repo.sales_by_lead_ids(conn, lead_ids)
        return [found.get(i) for i in lead_ids]

    async def users_by_ids(self, ids: Sequence[str]) -> list[User | None]:
        async with self.engine.connect() as conn:
            found = await repo.users_by_ids(conn, ids)
        return [found.get(i) for i in ids]

    async def lead_histories(self, lead_ids: Sequence[int]) -> list[list[StageChange[LeadStage]]]:
        async with self.engine.connect() as conn:
            found = await repo.lead_history(conn, lead_ids)
        return [found[i] for i in lead_ids]

    async def lead_histories_with_merged(
        self, lead_ids: Sequence[int]
    ) -> list[list[StageChange[LeadStage]]]:
        async with self.engine.connect() as conn:
            found = await repo.lead_history_with_merged(conn, lead_ids)
        return [found[i] for i in lead_ids]

    async def sale_histories(self, sale_ids: Sequence[int]) -> list[list[StageChange[SaleStage]]]:
        async with self.engine.connect() as conn:
            found = await repo.sale_history(conn, sale_ids)
        return [found[i] for i in sale_ids]
