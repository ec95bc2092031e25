"""Generated GraphQL operations (hypothesis-graphql, from schema.graphql) against the running
server: valid ones and ones with a schema violation, queries and mutations, queries also as a
fragment spread one to three times, with IDs that mostly name real leads and sales. None may
produce an internal error or a 5xx, and afterwards the database's invariants hold: one Sale
per lead, linear histories, transferred leads untouched.

CRM_FUZZ_OPERATIONS sets how many operations are sent (default 1000, what CI runs)."""

import asyncio
import base64
import itertools
import json
import os
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import graphql
import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from crm_graphql.domain.enums import LeadStage, SaleStage
from crm_graphql.domain.lifecycle import LEAD_TRANSITIONS, SALE_TRANSITIONS
from tests.support.fuzz import fuzzing
from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    CREATE_LEAD,
    TRANSFER,
    GraphQLClient,
    token_for,
)
from tests.support.server import ServerProcess

OPERATIONS = int(os.environ.get("CRM_FUZZ_OPERATIONS", "1000"))
SCHEMA = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
FAULT_CODES = {"SERVICE_UNAVAILABLE", "TIMEOUT"}


def global_id(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


# Mostly IDs of rows that exist (so mutations reach the rules), sometimes anything at all.
ids = st.one_of(
    st.builds(global_id, st.just("Lead"), st.integers(1, 12)),
    st.builds(global_id, st.just("Sale"), st.integers(1, 4)),
    st.text(max_size=20),
).map(lambda value: graphql.StringValueNode(value=value))
# Instants in any year, in UTC, at an offset or without one (refused), and arbitrary strings.
OFFSETS = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]
date_times = st.one_of(
    st.datetimes(timezones=st.sampled_from(OFFSETS) | st.none()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
).map(lambda value: graphql.StringValueNode(value=value))
custom = {"ID": ids, "DateTime": date_times}


def spread_in_fragment(query: str, spreads: int) -> str:
    """The query's selections moved into a fragment on Query that the operation spreads
    `spreads` times: the same operation (spreads merge), measured once per spread."""
    operation = graphql.parse(query).definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    selections = graphql.print_ast(operation.selection_set)
    return f"query {{ {'...Generated ' * spreads}}} fragment Generated on Query {selections}"


operations = st.one_of(
    queries(SCHEMA, custom_scalars=custom),
    st.builds(spread_in_fragment, queries(SCHEMA, custom_scalars=custom), st.integers(1, 3)),
    mutations(SCHEMA, custom_scalars=custom),
    queries(SCHEMA, custom_scalars=custom, mode=Mode.NEGATIVE),
    mutations(SCHEMA, custom_scalars=custom, mode=Mode.NEGATIVE),
)


async def seed(gql: GraphQLClient) -> None:
    """Ten leads across the funnel, three of them transferred."""
    for index in range(10):
        source = ("PARTNER", "MANUAL", "SCANNER")[index % 3]
        created = await gql(CREATE_LEAD, {"input": {"source": source, "businessDomain": "saas"}})
        lead_id = created["createLead"]["lead"]["id"]
        if index < 3:
            await gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}})
        for stage in ("CONTACTED", "QUALIFIED")[: index % 3]:
            await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": stage}})
        if index in (0, 3, 6):
            await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "CONTACTED"}})
            await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "QUALIFIED"}})
            await gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}})
            transfer = await gql(TRANSFER, {"input": {"leadId": lead_id}})
            assert transfer["transferToSales"]["errors"] == [], transfer


def send_generated_operations(url: str) -> list[str]:
    """Runs the Hypothesis search; returns every problem seen (empty when all is well)."""
    problems: list[str] = []
    sent = executed = 0

    @fuzzing(OPERATIONS)
    @given(operation=operations)
    def check(operation: str) -> None:
        nonlocal sent, executed
        sent += 1
        response = http.post("/graphql", json={"query": operation})
        if response.status_code >= 500 or response.status_code not in (200, 400):
            problems.append(f"HTTP {response.status_code} for {operation!r}: {response.text}")
            return
        body = response.json()
        executed += "data" in body
        for error in body.get("errors", []):
            code = (error.get("extensions") or {}).get("code")
            # An admin may do everything: a refusal would mean the operation never ran.
            refused = code in ("UNAUTHENTICATED", "FORBIDDEN")
            if error["message"] == "Internal server error." or code in FAULT_CODES or refused:
                problems.append(f"{error} for {operation!r}")

    admin = {"Authorization": f"Bearer {token_for('admin')}"}
    with httpx.Client(base_url=url, timeout=30, headers=admin) as http:
        check()
    if sent < OPERATIONS:
        problems.append(f"only {sent} operations were sent")
    # Valid operations are half the mix: most of them must get past validation and run.
    if executed < sent // 4:
        problems.append(f"only {executed} of {sent} operations were executed")
    print(f"{sent} generated operations sent, {executed} executed")
    return problems


async def transferred_leads(db: asyncpg.Connection) -> list[Any]:
    return await db.fetch(
        """SELECT l.*, (SELECT count(*) FROM activities a WHERE a.lead_id = l.id) AS activities
           FROM leads l WHERE stage = 'TRANSFERRED' ORDER BY id"""
    )


def assert_linear(changes: list[Any], current: str, transitions: Any, stage: type) -> None:
    assert changes[0]["from_stage"] is None
    assert changes[0]["to_stage"] == "NEW"
    for previous, change in itertools.pairwise(changes):
        assert change["from_stage"] == previous["to_stage"]
        assert stage(change["to_stage"]) in transitions[stage(change["from_stage"])]
    assert changes[-1]["to_stage"] == current


async def assert_invariants(db: asyncpg.Connection) -> None:
    duplicates = await db.fetch("SELECT lead_id FROM sales GROUP BY lead_id HAVING count(*) > 1")
    assert duplicates == []
    mismatched = await db.fetch(
        """SELECT l.id FROM leads l LEFT JOIN sales s ON s.lead_id = l.id
           WHERE (l.stage = 'TRANSFERRED') <> (s.id IS NOT NULL)"""
    )
    assert mismatched == []
    # Nothing about a transferred lead changed after the transfer committed.
    changed_after_transfer = await db.fetch(
        """SELECT l.id FROM leads l
           JOIN stage_changes c ON c.lead_id = l.id AND c.to_stage = 'TRANSFERRED'
           WHERE l.updated_at <> c.at
              OR EXISTS (SELECT 1 FROM activities a WHERE a.lead_id = l.id AND a.created_at > c.at)
              OR EXISTS (SELECT 1 FROM stage_changes later
                         WHERE later.lead_id = l.id AND later.id > c.id)"""
    )
    assert changed_after_transfer == []
    for lead in await db.fetch("SELECT id, stage FROM leads"):
        # A lead's own chain: rows a merge moved to another lead still count as the merged
        # lead's; the merge note on the kept lead (from = to) is not a stage change.
        changes = await db.fetch(
            """SELECT from_stage, to_stage FROM stage_changes
               WHERE coalesce(merged_from_lead_id, lead_id) = $1
                 AND from_stage IS DISTINCT FROM to_stage
               ORDER BY id""",
            lead["id"],
        )
        assert_linear(changes, lead["stage"], LEAD_TRANSITIONS, LeadStage)
    for sale in await db.fetch("SELECT id, stage FROM sales"):
        changes = await db.fetch(
            "SELECT from_stage, to_stage FROM stage_changes WHERE sale_id = $1 ORDER BY id",
            sale["id"],
        )
        assert_linear(changes, sale["stage"], SALE_TRANSITIONS, SaleStage)


async def test_generated_operations_never_break_the_server_or_the_invariants(
    server: ServerProcess, gql: GraphQLClient, db: asyncpg.Connection
):
    await seed(gql)
    transferred_before = await transferred_leads(db)
    assert len(transferred_before) == 3

    problems = await asyncio.to_thread(send_generated_operations, server.url)
    assert problems == []

    await assert_invariants(db)
    # The leads that were transferred before the run are exactly as they were.
    after = {row["id"]: row for row in await transferred_leads(db)}
    for before in transferred_before:
        assert after[before["id"]] == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["query", "variables", "operationName", "extensions"]) | st.text(),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def send_arbitrary_bodies(url: str) -> list[str]:
    problems: list[str] = []

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
    def check(body: bytes) -> None:
        response = http.post("/graphql", content=body, headers={"content-type": "application/json"})
        if response.status_code >= 500:
            problems.append(f"HTTP {response.status_code} for {body!r}")

    with httpx.Client(base_url=url, timeout=30) as http:
        check()
    return problems


async def test_arbitrary_request_bodies_never_get_a_5xx(server: ServerProcess, gql: GraphQLClient):
    assert await asyncio.to_thread(send_arbitrary_bodies, server.url) == []
