"""CRM_ENV=production: no introspection, no GraphiQL, no field suggestions. This server also
enables batching (with a limit) and writes JSON logs."""

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from crm_graphql.web.ide import load_manifest
from tests.support.abuse import answered_while
from tests.support.cors import (
    assert_preflight_allows,
    assert_preflight_refuses,
    assert_websocket_opens,
    assert_websocket_refused,
)
from tests.support.graphql import token_for
from tests.support.server import ServerProcess, api_env

GRAPHQL_RESPONSE = "application/graphql-response+json"
LISTED_PAGE = "https://app.example.com"
GRAPHIQL_TOKEN = token_for("admin")


@pytest.fixture(scope="module")
def production_server(
    database_url: str, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # Depends on `server` so the shared test database is migrated before this one starts.
    log = tmp_path_factory.mktemp("production") / "server.log"
    settings = api_env(
        database_url,
        CRM_ENV="production",
        CRM_LOG_FORMAT="json",
        CRM_BATCHING_ENABLED="true",
        CRM_MAX_BATCH_OPERATIONS="2",
        CRM_CORS_ORIGINS=f"{LISTED_PAGE}, https://admin.example.com",
        CRM_GRAPHIQL_TOKEN=GRAPHIQL_TOKEN,  # ignored: production never serves GraphiQL
    )
    process = ServerProcess(settings, log).start()
    yield process
    process.stop()


@pytest.fixture
async def http(production_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token_for('manager')}"}
    async with httpx.AsyncClient(
        base_url=production_server.url, timeout=30, headers=headers
    ) as client:
        yield client


async def test_introspection_is_refused(http: httpx.AsyncClient):
    response = await http.post(
        "/graphql",
        json={"query": "{ __schema { types { name } } }"},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    assert "introspection has been disabled" in response.json()["errors"][0]["message"]
    plain = await http.post("/graphql", json={"query": "{ __typename }"})
    assert plain.json()["data"] == {"__typename": "Query"}


async def test_graphiql_is_not_served(http: httpx.AsyncClient, production_server: ServerProcess):
    # Nor announced: the startup line names only the API.
    assert f"GraphQL API at {production_server.url}/graphql" in production_server.log()
    assert "GraphiQL at" not in production_server.log()
    response = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert "graphiql" not in response.text.lower()
    assert GRAPHIQL_TOKEN not in response.text
    for asset in load_manifest().values():
        assert (await http.get(asset.url)).status_code == 404


async def test_validation_errors_suggest_no_field_names(http: httpx.AsyncClient):
    response = await http.post("/graphql", json={"query": "{ leadz }"})
    message = response.json()["errors"][0]["message"]
    assert message == "Cannot query field 'leadz' on type 'Query'."


async def test_batches_are_limited_when_batching_is_enabled(http: httpx.AsyncClient):
    two = await http.post("/graphql", json=[{"query": "{ __typename }"}] * 2)
    assert two.status_code == 200
    assert [item["data"] for item in two.json()] == [{"__typename": "Query"}] * 2

    for malformed in ([], [1], [{"query": 5}]):
        refused = await http.post("/graphql", json=malformed)
        assert refused.status_code == 400, malformed
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"

    three = await http.post("/graphql", json=[{"query": "{ __typename }"}] * 3)
    assert three.status_code == 400
    error = three.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "3 operations; the limit is 2 (setting max_batch_operations)" in error["message"]


async def test_request_logs_are_json_lines(
    http: httpx.AsyncClient, production_server: ServerProcess
):
    response = await http.post(
        "/graphql",
        json={"query": "query Probe { __typename }"},
        headers={"x-request-id": "json-log-1"},
    )
    assert response.status_code == 200
    entries = [
        json.loads(line)
        for line in production_server.log().splitlines()
        if line.startswith("{") and "json-log-1" in line
    ]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["logger"] == "crm_graphql.access"
    assert entry["request_id"] == "json-log-1"
    assert entry["operation_name"] == "Probe"
    assert entry["operation_type"] == "query"
    assert entry["outcome"] == "ok"
    assert entry["status"] == 200
    assert isinstance(entry["duration_ms"], float)


async def test_only_the_listed_origins_may_call_the_api_or_open_its_websocket(
    http: httpx.AsyncClient, production_server: ServerProcess
):
    await assert_preflight_allows(http, LISTED_PAGE)
    query = {"query": "{ __typename }"}
    listed = await http.post("/graphql", json=query, headers={"origin": LISTED_PAGE})
    assert listed.headers["access-control-allow-origin"] == LISTED_PAGE
    await assert_websocket_opens(production_server.url, LISTED_PAGE)

    # In production, pages on the server's own machine are not trusted by default.
    for unlisted in ("http://localhost:5173", "https://app.example.com.evil.example"):
        await assert_preflight_refuses(http, unlisted)
        response = await http.post("/graphql", json=query, headers={"origin": unlisted})
        assert "access-control-allow-origin" not in response.headers
        await assert_websocket_refused(production_server.url, unlisted)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("mutation { createLead(input: {source: PARTNR}) { lead { id } } }", None),
        ("{ leads(filter: {stage: [NWE]}) { totalCount } }", None),
        (
            "mutation($i: CreateLeadInput!) { createLead(input: $i) { lead { id } } }",
            {"i": {"source": "PARTNR"}},
        ),
        ("{ leads(frist: 1) { totalCount } }", None),
        (
            'mutation { createLead(input: {source: PARTNER, businesDomain: "x"}) { lead { id } } }',
            None,
        ),
        (
            "mutation($i: CreateLeadInput!) { createLead(input: $i) { lead { id } } }",
            {"i": {"source": "PARTNER", "businesDomain": "x"}},
        ),
        ("query($s: LeadSorce) { leads { totalCount } }", None),
        ("{ ... on Quer { __typename } }", None),
        ("{ leads { totalCont } }", None),
    ],
    ids=[
        "enum-value",
        "enum-value-in-list",
        "enum-value-in-variable",
        "argument",
        "input-field",
        "input-field-in-variable",
        "variable-type",
        "fragment-type",
        "field",
    ],
)
async def test_no_error_suggests_a_name(
    http: httpx.AsyncClient, production_server: ServerProcess, query: str, variables: dict | None
):
    probing = http.post("/graphql", json={"query": query, "variables": variables})
    response = await answered_while(production_server.url, probing)
    errors = response.json()["errors"]
    assert errors
    for error in errors:
        assert "did you mean" not in error["message"].lower(), error["message"]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
