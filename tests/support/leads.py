"""Building blocks for integration tests: leads in a given state, made through the API, and a
look at every table to prove that a refused request changed nothing."""

from typing import Any

import asyncpg

from crm_graphql.api.ids import encode_global_id
from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    CREATE_LEAD,
    TRANSFER,
    GraphQLClient,
)

MISSING_LEAD_ID = encode_global_id("Lead", 987_654_321)
MISSING_SALE_ID = encode_global_id("Sale", 987_654_321)


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["errors"]]


def ok(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a mutation that must have succeeded."""
    assert payload["errors"] == [], payload["errors"]
    return payload


async def create_lead(
    gql: GraphQLClient, source: str = "PARTNER", business_domain: str | None = "fintech"
) -> dict[str, Any]:
    data = await gql(CREATE_LEAD, {"input": {"source": source, "businessDomain": business_domain}})
    return ok(data["createLead"])["lead"]


async def analyze(gql: GraphQLClient, lead_id: str) -> dict[str, Any]:
    return ok((await gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}}))["analyzeLead"])["lead"]


async def advance(gql: GraphQLClient, lead_id: str, *stages: str) -> dict[str, Any]:
    lead: dict[str, Any] = {}
    for stage in stages:
        data = await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": stage}})
        lead = ok(data["advanceStage"])["lead"]
    return lead


async def qualified_lead(gql: GraphQLClient) -> str:
    """A PARTNER lead with a domain, scored 0.6 and QUALIFIED: ready to transfer."""
    lead_id = (await create_lead(gql))["id"]
    await qualify(gql, lead_id)
    return lead_id


async def qualify(gql: GraphQLClient, lead_id: str) -> None:
    """Score a NEW PARTNER lead with a business domain (0.6) and move it to QUALIFIED."""
    await analyze(gql, lead_id)
    await advance(gql, lead_id, "CONTACTED", "QUALIFIED")


async def transferred_lead(gql: GraphQLClient) -> tuple[str, str]:
    """(lead ID, sale ID) of a lead handed to sales."""
    lead_id = await qualified_lead(gql)
    payload = ok((await gql(TRANSFER, {"input": {"leadId": lead_id}}))["transferToSales"])
    return lead_id, payload["sale"]["id"]


async def transfer(gql: GraphQLClient, lead_id: str) -> str:
    """Hand a NEW PARTNER lead with a business domain to sales; the Sale's ID."""
    await qualify(gql, lead_id)
    payload = ok((await gql(TRANSFER, {"input": {"leadId": lead_id}}))["transferToSales"])
    return str(payload["sale"]["id"])


async def all_rows(db: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every application table (whoever added it), in a stable order."""
    tables = await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version' ORDER BY tablename"
    )
    return {
        t["tablename"]: [
            dict(row)
            for row in await db.fetch(f'SELECT * FROM "{t["tablename"]}" AS r ORDER BY r::text')
        ]
        for t in tables
    }
