"""Every mutation by every role over HTTP: allowed ones change the database, refused ones get
FORBIDDEN and change nothing."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.support.auth import error_codes, new_lead
from tests.support.graphql import (
    ADVANCE_SALE,
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    ASSIGN_LEAD,
    CREATE_LEAD,
    LOG_ACTIVITY,
    MERGE_LEADS,
    TRANSFER,
    UPDATE_LEAD,
    GraphQLClient,
)
from tests.support.leads import all_rows, qualified_lead, transferred_lead
from tests.support.webhooks import (
    CREATE_WEBHOOK,
    DELETE_WEBHOOK,
    ROTATE_SECRET,
    UPDATE_WEBHOOK,
    create_webhook,
)

Prepare = Callable[[GraphQLClient], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Operation:
    field: str
    document: str
    allowed: frozenset[str]
    prepare: Prepare  # run as admin; returns the variables


async def create_variables(_: GraphQLClient) -> dict[str, Any]:
    return {"input": {"source": "MANUAL", "businessDomain": "retail"}}


async def update_variables(admin: GraphQLClient) -> dict[str, Any]:
    return {"input": {"leadId": await new_lead(admin), "businessDomain": "retail"}}


async def activity_variables(admin: GraphQLClient) -> dict[str, Any]:
    return {"input": {"leadId": await new_lead(admin), "kind": "CALL", "note": "first call"}}


async def analyze_variables(admin: GraphQLClient) -> dict[str, Any]:
    return {"input": {"leadId": await new_lead(admin)}}


async def choose_scorer_variables(admin: GraphQLClient) -> dict[str, Any]:
    return {"input": {"leadId": await new_lead(admin), "scorer": "HEURISTIC"}}


async def advance_variables(admin: GraphQLClient) -> dict[str, Any]:
    return {"input": {"leadId": await new_lead(admin), "to": "CONTACTED"}}


async def transfer_variables(admin: GraphQLClient) -> dict[str, Any]:
    return {"input": {"leadId": await qualified_lead(admin)}}


async def advance_sale_variables(admin: GraphQLClient) -> dict[str, Any]:
    _, sale_id = await transferred_lead(admin)
    return {"input": {"saleId": sale_id, "to": "KYC"}}


async def assign_variables(admin: GraphQLClient) -> dict[str, Any]:
    # The new owner must be known: a person becomes known with their first change.
    await new_lead(admin.as_role("manager", sub="other-manager", name="Other Manager"))
    return {"input": {"leadId": await new_lead(admin), "ownerId": "other-manager"}}


async def merge_variables(admin: GraphQLClient) -> dict[str, Any]:
    # Both leads are the admin's: a manager may merge only leads they own both of.
    return {"input": {"keepId": await new_lead(admin), "mergeId": await new_lead(admin)}}


# A port nothing listens on: these endpoints are never meant to receive anything.
UNUSED_URL = "http://127.0.0.1:9/hook"


async def create_webhook_variables(_: GraphQLClient) -> dict[str, Any]:
    return {"input": {"url": UNUSED_URL, "events": ["LEAD_CREATED"]}}


async def webhook_variables(admin: GraphQLClient) -> dict[str, Any]:
    webhook_id, _ = await create_webhook(admin, UNUSED_URL, ["LEADS_MERGED"])
    return {"input": {"webhookId": webhook_id}}


async def update_webhook_variables(admin: GraphQLClient) -> dict[str, Any]:
    variables = await webhook_variables(admin)
    return {"input": {**variables["input"], "enabled": False}}


LEAD_WORKERS = frozenset({"manager", "admin"})
ADMINS = frozenset({"admin"})
OPERATIONS = [
    Operation("createLead", CREATE_LEAD, LEAD_WORKERS, create_variables),
    Operation("updateLead", UPDATE_LEAD, LEAD_WORKERS, update_variables),
    Operation("logActivity", LOG_ACTIVITY, LEAD_WORKERS, activity_variables),
    Operation("analyzeLead", ANALYZE_LEAD, LEAD_WORKERS, analyze_variables),
    # Naming a scorer instead of the deployment's default is an admin's choice.
    Operation("analyzeLead", ANALYZE_LEAD, frozenset({"admin"}), choose_scorer_variables),
    Operation("advanceStage", ADVANCE_STAGE, LEAD_WORKERS, advance_variables),
    Operation("transferToSales", TRANSFER, LEAD_WORKERS, transfer_variables),
    Operation(
        "advanceSaleStage", ADVANCE_SALE, frozenset({"sales", "admin"}), advance_sale_variables
    ),
    Operation("assignLead", ASSIGN_LEAD, frozenset({"admin"}), assign_variables),
    Operation("mergeLeads", MERGE_LEADS, frozenset({"admin"}), merge_variables),
    Operation("createWebhook", CREATE_WEBHOOK, ADMINS, create_webhook_variables),
    Operation("updateWebhook", UPDATE_WEBHOOK, ADMINS, update_webhook_variables),
    Operation("rotateWebhookSecret", ROTATE_SECRET, ADMINS, webhook_variables),
    Operation("deleteWebhook", DELETE_WEBHOOK, ADMINS, webhook_variables),
]
ROLES = ("manager", "sales", "admin")


@pytest.mark.parametrize(
    ("operation", "role"),
    [(op, role) for op in OPERATIONS for role in ROLES],
    ids=[f"{op.field}-{op.prepare.__name__}-{role}" for op in OPERATIONS for role in ROLES],
)
async def test_operation_by_role(
    gql: GraphQLClient, db: asyncpg.Connection, operation: Operation, role: str
):
    variables = await operation.prepare(gql.as_role("admin"))
    before = await all_rows(db)

    body = await gql.as_role(role).raw(operation.document, variables)
    after = await all_rows(db)

    if role in operation.allowed:
        assert "errors" not in body, body
        assert body["data"][operation.field]["errors"] == []
        assert after != before
    else:
        assert error_codes(body) == ["FORBIDDEN"]
        assert body["errors"][0]["path"] == [operation.field]
        assert body["errors"][0]["message"].startswith(f"The role {role} may not")
        assert body["data"] is None
        assert after == before


QUERIES = {
    "leads": "{ leads { totalCount edges { node { id } } } }",
    "sales": "{ sales { totalCount edges { node { id lead { id } } } } }",
    "viewer": "{ viewer { id name role } }",
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("query", QUERIES)
async def test_every_role_may_read(gql: GraphQLClient, role: str, query: str):
    await transferred_lead(gql)
    body = await gql.as_role(role).raw(QUERIES[query])
    assert "errors" not in body, body
    assert body["data"][query]
