"""Helpers for authentication tests. Leads in a given state and table snapshots come from
tests/support/leads.py."""

from typing import Any

from tests.support.graphql import GraphQLClient
from tests.support.leads import create_lead


async def new_lead(client: GraphQLClient, business_domain: str | None = "fintech") -> str:
    """The ID of a new PARTNER lead."""
    return (await create_lead(client, "PARTNER", business_domain))["id"]


def error_codes(body: dict[str, Any]) -> list[str | None]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
