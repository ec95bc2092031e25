"""The `leads` connection: totalCount, filters, every ordering, keyset pages both ways."""

import base64
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from crm_graphql.api.ids import encode_global_id
from tests.conftest import TABLES
from tests.support.database import plain_dsn
from tests.support.graphql import GraphQLClient, token_for
from tests.support.leads import advance, analyze, create_lead
from tests.support.server import ServerProcess

LEADS = """
query($first: Int, $after: String, $last: Int, $before: String,
      $filter: LeadFilter, $orderBy: LeadOrder) {
  leads(first: $first, after: $after, last: $last, before: $before,
        filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id } }
  }
}"""
SOURCES = ["PARTNER", "MANUAL", "SCANNER"]
SORT_COLUMNS = {
    "CREATED_AT": "created_at",
    "UPDATED_AT": "updated_at",
    "SCORE": "coalesce(score_value, -1)",
}


@pytest.fixture(scope="module")
async def leads(server: ServerProcess, database_url: str) -> list[dict[str, Any]]:
    """13 leads with tied creation times and tied scores, in every stage but TRANSFERRED;
    returned as rows with their global IDs. Built once: every test of this module only reads."""
    db = await asyncpg.connect(plain_dsn(database_url))
    try:
        await db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            gql = GraphQLClient(http, token_for("manager"))
            for i in range(13):
                domain = "fintech" if i % 2 == 0 else None
                lead_id = (await create_lead(gql, SOURCES[i % 3], domain))["id"]
                if i % 4 != 3:
                    await analyze(gql, lead_id)
                if i % 4 == 1:
                    await advance(gql, lead_id, "CONTACTED", "QUALIFIED")
                elif i % 5 == 2:
                    await advance(gql, lead_id, "LOST")
        # Three leads share each creation time, so the id must break the ties.
        await db.execute(
            "UPDATE leads SET created_at = '2026-01-01T00:00:00Z'::timestamptz"
            " + (id / 3) * interval '1 minute'"
        )
        rows = await db.fetch(
            "SELECT *, coalesce(score_value, -1) AS score_key FROM leads ORDER BY id"
        )
    finally:
        await db.close()
    return [{**dict(row), "gid": encode_global_id("Lead", row["id"])} for row in rows]


@pytest.fixture(scope="module")
async def reader(server: ServerProcess) -> AsyncIterator[GraphQLClient]:
    """A client that, unlike `gql`, leaves the tables alone."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield GraphQLClient(http, token_for("manager"))


def expected_order(rows: list[dict[str, Any]], field: str, direction: str) -> list[str]:
    column = "score_key" if field == "SCORE" else SORT_COLUMNS[field]
    ordered = sorted(rows, key=lambda r: (r[column], r["id"]), reverse=direction == "DESC")
    return [r["gid"] for r in ordered]


async def page(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    return (await gql(LEADS, variables))["leads"]


ORDERINGS = list(itertools.product(SORT_COLUMNS, ["ASC", "DESC"]))


@pytest.mark.parametrize(("field", "direction"), ORDERINGS)
async def test_forward_pages_cover_every_lead_once_in_order(
    reader: GraphQLClient, leads: list[dict[str, Any]], field: str, direction: str
):
    order = {"field": field, "direction": direction}
    seen: list[str] = []
    after = None
    for number in itertools.count():
        result = await page(reader, first=5, after=after, orderBy=order)
        assert result["totalCount"] == 13
        assert result["pageInfo"]["hasPreviousPage"] is (number > 0)
        seen += [edge["node"]["id"] for edge in result["edges"]]
        assert result["pageInfo"]["endCursor"] == result["edges"][-1]["cursor"]
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
    assert number == 2
    assert seen == expected_order(leads, field, direction)


@pytest.mark.parametrize(("field", "direction"), ORDERINGS)
async def test_backward_pages_cover_every_lead_once_in_order(
    reader: GraphQLClient, leads: list[dict[str, Any]], field: str, direction: str
):
    order = {"field": field, "direction": direction}
    seen: list[str] = []
    before = None
    for number in itertools.count():
        result = await page(reader, last=5, before=before, orderBy=order)
        assert result["pageInfo"]["hasNextPage"] is (number > 0)
        seen = [edge["node"]["id"] for edge in result["edges"]] + seen
        assert result["pageInfo"]["startCursor"] == result["edges"][0]["cursor"]
        if not result["pageInfo"]["hasPreviousPage"]:
            break
        before = result["pageInfo"]["startCursor"]
    assert number == 2
    assert seen == expected_order(leads, field, direction)


async def test_forward_and_backward_meet(reader: GraphQLClient, leads: list[dict[str, Any]]):
    first = await page(reader, first=6)
    second = await page(reader, first=6, after=first["pageInfo"]["endCursor"])
    back = await page(reader, last=6, before=second["pageInfo"]["startCursor"])
    assert back["edges"] == first["edges"]


async def test_the_default_is_newest_first_twenty_at_a_time(
    reader: GraphQLClient, leads: list[dict[str, Any]]
):
    result = await page(reader)
    assert [e["node"]["id"] for e in result["edges"]] == expected_order(leads, "CREATED_AT", "DESC")
    assert result["pageInfo"]["hasNextPage"] is False


FILTERS = [
    ({"stage": ["NEW", "LOST"]}, lambda r: r["stage"] in ("NEW", "LOST")),
    ({"stage": ["QUALIFIED"]}, lambda r: r["stage"] == "QUALIFIED"),
    ({"stage": []}, lambda r: False),
    ({"source": ["PARTNER", "SCANNER"]}, lambda r: r["source"] in ("PARTNER", "SCANNER")),
    ({"minScore": 0.4}, lambda r: r["score_value"] is not None and r["score_value"] >= 0.4),
    ({"minScore": 0.0}, lambda r: r["score_value"] is not None),
    ({"hasBusinessDomain": True}, lambda r: r["business_domain"] is not None),
    ({"hasBusinessDomain": False}, lambda r: r["business_domain"] is None),
    (
        {"stage": ["NEW", "QUALIFIED"], "source": ["PARTNER"], "hasBusinessDomain": True},
        lambda r: (
            r["stage"] in ("NEW", "QUALIFIED")
            and r["source"] == "PARTNER"
            and r["business_domain"] is not None
        ),
    ),
]


@pytest.mark.parametrize(
    ("lead_filter", "matches"), FILTERS, ids=[json.dumps(f[0]) for f in FILTERS]
)
async def test_filters(reader: GraphQLClient, leads: list[dict[str, Any]], lead_filter, matches):
    expected = [r["gid"] for r in sorted(leads, key=lambda r: r["id"]) if matches(r)]
    result = await page(reader, first=100, filter=lead_filter, orderBy={"direction": "ASC"})
    assert result["totalCount"] == len(expected)
    assert sorted(e["node"]["id"] for e in result["edges"]) == sorted(expected)
    assert 0 < len(expected) < 13 or lead_filter == {"stage": []}


async def test_a_filtered_walk_counts_every_match(
    reader: GraphQLClient, leads: list[dict[str, Any]]
):
    lead_filter = {"hasBusinessDomain": True}
    first = await page(reader, first=3, filter=lead_filter)
    second = await page(reader, first=3, after=first["pageInfo"]["endCursor"], filter=lead_filter)
    assert first["totalCount"] == second["totalCount"] == 7
    ids = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    assert len(set(ids)) == 6


def crafted_cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


async def refusal(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    body = await gql.raw(LEADS, variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert "Internal server error" not in error["message"]
    return error


@pytest.mark.parametrize("argument", ["first", "last"])
async def test_a_page_above_100_is_refused_naming_the_limit(
    reader: GraphQLClient, leads: list[dict[str, Any]], argument: str
):
    error = await refusal(reader, **{argument: 101})
    assert "100" in error["message"]
    assert error["extensions"]["field"] == [argument]
    assert len((await page(reader, **{argument: 100}))["edges"]) == len(leads)


async def test_negative_and_conflicting_page_sizes_are_refused(reader: GraphQLClient):
    assert "-1" in (await refusal(reader, first=-1))["message"]
    await refusal(reader, first=2, last=2)
    await refusal(reader, first=2, before=crafted_cursor(["CREATED_AT", "2026-01-01T00:00:00Z", 1]))


async def test_a_cursor_from_another_ordering_is_refused(
    reader: GraphQLClient, leads: list[dict[str, Any]]
):
    cursor = (await page(reader, first=2))["pageInfo"]["endCursor"]
    for field in ("SCORE", "UPDATED_AT"):
        error = await refusal(reader, first=2, after=cursor, orderBy={"field": field})
        assert "CREATED_AT" in error["message"]
        assert field in error["message"]
        assert error["extensions"]["field"] == ["after"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        crafted_cursor(["CREATED_AT", "2026-01-01T00:00:00+00:00", 2**63]),
        crafted_cursor(["CREATED_AT", "2026-01-01T00:00:00", 1]),
        crafted_cursor(["CREATED_AT", "not a time", 1]),
        crafted_cursor({"sort": "CREATED_AT"}),
    ],
)
async def test_a_garbage_cursor_is_refused(reader: GraphQLClient, cursor: str):
    error = await refusal(reader, first=2, after=cursor)
    assert "cursor" in error["message"]
    assert (await refusal(reader, last=2, before=cursor))["extensions"]["field"] == ["before"]
