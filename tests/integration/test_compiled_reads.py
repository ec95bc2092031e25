"""The read compiler (api/compiled_reads.py) answers the queries it covers with the bytes the
general executor gives, for every role, and hands everything else to the general executor.

Two servers on the test database, one with CRM_COMPILED_READS off: each document goes to both
and the responses (status, content type, body) must be identical; the compiled server's log
says which path answered."""

import asyncio
import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from crm_graphql.api.ids import encode_global_id
from crm_graphql.db.lead_reads import global_id_text, iso_text
from tests.support.graphql import CREATE_LEAD, GraphQLClient, token_for
from tests.support.leads import advance, analyze, ok, transfer, transferred_lead
from tests.support.server import ServerProcess, api_server

LEAD_SELECTION = """
  __typename id source stage businessDomain activityCount createdAt updatedAt contactName
  companyName email phone website lostReason nextFollowUpAt
  score { __typename value recommendation reasons scorer scorerVersion scoredAt stale
          factors { __typename name contribution explanation } }
  sale { __typename id stage createdAt transferredBy { id name role }
         history { __typename from to at by { __typename id name role } } }
  owner { id name role } createdBy { __typename id name role }
  history { __typename from to at note by { id name role } }
  merged: history(includeMerged: true) { from to at note }
"""
# Documents the compiler covers, with their variables.
COVERED: list[tuple[str, dict[str, Any]]] = [
    (
        """query { leads(first: 50) { totalCount edges { cursor node {
  id stage source businessDomain
  score { value recommendation stale }
  sale { id stage }
  history { from to at } } } } }""",
        {},
    ),
    (
        "query { leads(first: 100) { edges { node { id source stage businessDomain "
        "activityCount createdAt updatedAt contactName companyName email phone website } } } }",
        {},
    ),
    (f"query {{ leads(first: 7) {{ __typename edges {{ node {{ {LEAD_SELECTION} }} }} }} }}", {}),
    (
        """query Page($first: Int, $after: String, $merged: Boolean!) {
  leads(first: $first, after: $after) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor __typename }
    totalCount __typename
    edges { __typename cursor node { ...LeadBits ... on Node { id } } }
  }
}
fragment LeadBits on Lead {
  stage alias: stage score { value } score { stale reasons }
  history(includeMerged: $merged) @include(if: $merged) { from to }
  owner @skip(if: $merged) { name }
}""",
        {"first": 3, "merged": True},
    ),
    (
        """query($first: Int) { leads(first: $first) { pageInfo { hasNextPage endCursor } } }""",
        {"first": 0},
    ),
    (
        """query { leads(last: 4, orderBy: {field: SCORE, direction: ASC}) {
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { cursor node { id score { value } } } } }""",
        {},
    ),
    (
        """query($filter: LeadFilter) { leads(first: 5, filter: $filter) {
  totalCount edges { node { id stage source } } } }""",
        {"filter": {"stage": ["NEW", "TRANSFERRED"], "source": ["PARTNER"], "search": "gmbh"}},
    ),
    (
        """query { leads(filter: {hasBusinessDomain: false, minScore: 0.1}) { totalCount
  edges { node { id } } } }""",
        {},
    ),
    (
        """query { empty: leads(filter: {search: "no such lead anywhere"}) { totalCount
  pageInfo { startCursor endCursor hasNextPage } edges { cursor } } __typename }""",
        {},
    ),
    (f"query($id: ID!) {{ lead(id: $id) {{ {LEAD_SELECTION} }} }}", {"id": "LEAD"}),
    (
        """query($id: ID!) { lead(id: $id) {
  id stage source businessDomain activityCount
  score { value recommendation reasons stale }
  sale { id stage }
  history { from to at } } }""",
        {"id": "LEAD"},
    ),
    ('query { lead(id: "TGVhZDo5OTk5OTk=") { id } }', {}),
    (
        """query { leads(first: 20) { edges { node { id
  mergedInto { id stage owner { name } history { to } score { value }
               mergedInto { id } duplicateOf { id } }
  duplicateOf { id stage sale { id } createdAt }
  sale { id lead { id stage sale { id } } } } } } }""",
        {},
    ),
    (
        """query($id: ID!) { viewer { __typename id name role } node(id: $id) {
  __typename id ... on Lead { stage sale { id } } ... on Sale { saleStage: stage } }
  other: node(id: "Rm9vOjE=") { id } }""",
        {"id": "LEAD"},
    ),
]
# Documents the compiler hands on, and what the general path makes of them.
GENERAL: list[tuple[str, dict[str, Any]]] = [
    ("query { viewer { id } sales(first: 2) { totalCount } }", {}),
    ('query { node(id: "U2FsZTox") { id } }', {}),
    ("query { leads(first: 2) { edges { node { history { mergedFrom { id } } } } } }", {}),
    ("query { leads(first: 1000) { totalCount } }", {}),
    ('query { leads(after: "not a cursor") { totalCount } }', {}),
    ("query($id: ID!) { lead(id: $id) { id } }", {"id": "not an id"}),
    ("query($first: Int) { leads(first: $first) { totalCount } }", {"first": "many"}),
    ("query { leads { nope } }", {}),
    ("query A { leads(first: 1) { totalCount } } query B { leads { totalCount } }", {}),
]
ROLES = ["manager", "sales", "admin", None]


@pytest.fixture(scope="module")
def twins(
    database_url: str, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A compiled and a general server on the test database, without statement counts."""
    off = {"CRM_EXPOSE_SQL_COUNT": "false"}
    with (
        api_server(database_url, tmp_path_factory.mktemp("compiled"), **off) as compiled,
        api_server(
            database_url,
            tmp_path_factory.mktemp("general"),
            CRM_COMPILED_READS="false",
            **off,
        ) as general,
    ):
        yield compiled, general


@pytest.fixture
async def seeded(gql: GraphQLClient) -> str:
    """Leads in every state: new, analyzed, contacted, lost, transferred (with a sale moved
    on), merged; returns a transferred lead's id."""
    transferred, _ = await transferred_lead(gql)
    for index in range(6):
        lead = await new_lead(
            gql,
            businessDomain=None if index % 3 == 0 else "retail",
            companyName=f"Ex {index} GmbH",
            email=f"ex{index}@example.com",
            website=f"ex{index}.example",
            nextFollowUpAt=f"2027-01-0{index + 1}T09:30:00.25+01:00" if index % 2 else None,
        )
        if index % 2:
            await analyze(gql, lead)
        if index == 3:
            await advance(gql, lead, "CONTACTED")
    # Stored as -infinity, read back as datetime.min.
    await new_lead(gql, contactName="Early", nextFollowUpAt="0001-01-01T00:00:00Z")
    # A transferred duplicate of an open lead: sales reads it, but not the lead it duplicates.
    original = await new_lead(gql, email="twice@example.com")
    duplicate = await new_lead(
        gql, email="twice@example.com", allowDuplicate=True, businessDomain="retail"
    )
    await transfer(gql, duplicate)
    await advance(gql, original, "CONTACTED")
    keep = await new_lead(gql, companyName="Keep GmbH")
    gone = await new_lead(gql, companyName="Gone GmbH")
    merged = await gql(
        """mutation($input: MergeLeadsInput!) { mergeLeads(input: $input) {
          errors { code message } } }""",
        {"input": {"keepId": keep, "mergeId": gone}},
    )
    assert not merged["mergeLeads"]["errors"], merged
    return transferred


async def new_lead(gql: GraphQLClient, **fields: Any) -> str:
    data = await gql(CREATE_LEAD, {"input": {"source": "PARTNER", **fields}})
    return ok(data["createLead"])["lead"]["id"]


async def post(
    server: ServerProcess,
    query: str,
    variables: dict[str, Any],
    role: str | None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (but the request id) and body of the operation, POSTed as JSON or sent
    as a GET's parameters (as urql and Apollo send queries)."""
    headers = {"content-type": "application/json"} if method == "POST" else {}
    if role:
        headers["authorization"] = f"Bearer {token_for(role)}"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        if method == "POST":
            response = await http.post(
                "/graphql",
                content=json.dumps({"query": query, "variables": variables}),
                headers=headers,
            )
        else:
            params = {"query": query, "variables": json.dumps(variables)}
            response = await http.get("/graphql", params=params, headers=headers)
    kept = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    return response.status_code, kept, response.content


def read_paths(log: Path) -> list[str]:
    return re.findall(r"read_path=(compiled|general: [^=]*?)(?= \w+=|$)", log.read_text(), re.M)


async def test_covered_documents_answer_with_the_general_paths_bytes_for_every_role(
    twins: tuple[ServerProcess, ServerProcess], seeded: str
):
    compiled, general = twins
    before = len(read_paths(compiled.log_path))
    sent = []
    for query, variables in COVERED:
        given = {k: seeded if v == "LEAD" else v for k, v in variables.items()}
        for role in ROLES:
            for method in ("POST", "GET"):
                ours, theirs = await asyncio.gather(
                    post(compiled, query, given, role, method),
                    post(general, query, given, role, method),
                )
                assert ours == theirs, (query, role, method, ours[2][:400], theirs[2][:400])
                # A GET without a token is refused before any operation runs (CSRF).
                if method == "POST" or role:
                    sent.append(role)
    paths = read_paths(compiled.log_path)[before:]
    # Without a token the general path answers the refusal; every other request is compiled.
    assert [path for role, path in zip(sent, paths, strict=True) if role] == ["compiled"] * (
        len(COVERED) * (len(ROLES) - 1) * 2
    )
    assert paths.count("general: UNAUTHENTICATED") == len(COVERED)


async def test_a_page_walks_on_from_its_cursors_as_on_the_general_path(
    twins: tuple[ServerProcess, ServerProcess], seeded: str
):
    compiled, general = twins
    page = """query($after: String, $before: String, $first: Int, $last: Int) {
      leads(first: $first, after: $after, last: $last, before: $before) {
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id } } } }"""
    variables: dict[str, Any] = {"first": 3}
    for _ in range(4):
        ours = await post(compiled, page, variables, "manager")
        assert ours == await post(general, page, variables, "manager")
        info = json.loads(ours[2])["data"]["leads"]["pageInfo"]
        variables = {"first": 3, "after": info["endCursor"]}
    backwards = {"last": 2, "before": variables["after"]}
    assert await post(compiled, page, backwards, "manager") == await post(
        general, page, backwards, "manager"
    )


async def test_what_the_compiler_does_not_cover_goes_to_the_general_path(
    twins: tuple[ServerProcess, ServerProcess], seeded: str
):
    compiled, general = twins
    before = len(read_paths(compiled.log_path))
    for query, variables in GENERAL:
        ours, theirs = await asyncio.gather(
            post(compiled, query, variables, "manager"), post(general, query, variables, "manager")
        )
        assert ours == theirs, (query, ours, theirs)
    paths = read_paths(compiled.log_path)[before:]
    assert paths == [
        "general: Query.sales",
        "general: Query.node: not the ID of a Lead",
        "general: LeadStageChange.mergedFrom",
        "general: invalid input",
        "general: invalid input",
        "general: invalid input",
        "general: variables",
        "general: invalid document",
        "general: operation not chosen",
    ]
    async with httpx.AsyncClient(base_url=compiled.url) as http:
        counts = (await http.get("/readyz")).json()["compiledReads"]
    assert counts["compiled"] >= 1
    assert counts["general: Query.sales"] >= 1


async def test_instants_and_ids_written_by_postgresql_are_the_bytes_python_writes(
    db: asyncpg.Connection,
):
    """The compiled statements write instants (isoformat) and global IDs in SQL."""
    chance = random.Random(18)
    instants = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),  # asyncpg stores these two as the infinities
        None,
        datetime(2026, 12, 6, 13, 0, 0, 10, tzinfo=timezone(timedelta(hours=-7))),
    ]
    for _ in range(2000):
        instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            seconds=chance.randrange(0, 4_000_000_000),
            microseconds=chance.choice([0, 1, 500_000, chance.randrange(1_000_000)]),
        )
        instants.append(instant)
    rows = await db.fetch(
        f"SELECT {iso_text('instant')} AS written, instant "
        "FROM unnest($1::timestamptz[]) AS instant",
        instants,
    )
    assert [row["written"] for row in rows] == [
        row["instant"] and row["instant"].isoformat() for row in rows
    ]

    ids = [
        1,
        9,
        10,
        99,
        2**31,
        2**53 + 1,
        2**63 - 1,
        *(chance.randrange(1, 2**63) for _ in range(500)),
    ]
    rows = await db.fetch(
        f"SELECT {global_id_text('Lead', 'id')} AS written FROM unnest($1::bigint[]) AS id", ids
    )
    assert [row["written"] for row in rows] == [encode_global_id("Lead", i) for i in ids]
