"""Helpers for authentication tests: database snapshots and leads in a given state."""

from typing import Any

import asyncpg

from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    CREATE_LEAD,
    TRANSFER,
    GraphQLClient,
)

AUDITED_TABLES = ("leads", "sales", "stage_changes", "activities", "users")


async def database_state(db: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table the API writes, to prove a refused request changed nothing."""
    return {
        table: [dict(row) for row in await db.fetch(f"SELECT * FROM {table} ORDER BY id")]
        for table in AUDITED_TABLES
    }


async def new_lead(client: GraphQLClient, business_domain: str | None = "fintech") -> str:
    data = await client(
        CREATE_LEAD, {"input": {"source": "PARTNER", "businessDomain": business_domain}}
    )
    assert data["createLead"]["errors"] == []
    return data["createLead"]["lead"]["id"]


async def qualified_lead(client: GraphQLClient) -> str:
    """A lead that may be transferred: qualified, with a fresh score above the threshold."""
    lead_id = await new_lead(client)
    analyzed = await client(ANALYZE_LEAD, {"input": {"leadId": lead_id}})
    assert analyzed["analyzeLead"]["errors"] == []
    for stage in ("CONTACTED", "QUALIFIED"):
        moved = await client(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": stage}})
        assert moved["advanceStage"]["errors"] == []
    return lead_id


async def transferred_lead(client: GraphQLClient) -> tuple[str, str]:
    """(lead ID, sale ID) of a lead handed to sales."""
    lead_id = await qualified_lead(client)
    transfer = (await client(TRANSFER, {"input": {"leadId": lead_id}}))["transferToSales"]
    assert transfer["errors"] == []
    return lead_id, transfer["sale"]["id"]


def error_codes(body: dict[str, Any]) -> list[str | None]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
