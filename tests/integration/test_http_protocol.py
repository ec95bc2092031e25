"""GraphQL over HTTP: media types, status codes, CSRF, body and batch limits, request logs."""

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.graphql import CREATE_LEAD, GraphQLClient
from tests.support.node import node_project
from tests.support.server import ServerProcess

AUDIT_DIR = Path(__file__).resolve().parents[1] / "http_audit"
GRAPHQL_RESPONSE = "application/graphql-response+json"
CSRF = {"X-CRM-CSRF": "1"}


def run_audits(server: ServerProcess, headers: dict[str, str]) -> dict[str, dict]:
    node = node_project(AUDIT_DIR, "graphql-http")
    completed = subprocess.run(
        [node, "audit.mjs", f"{server.url}/graphql"],
        cwd=AUDIT_DIR,
        env={**os.environ, "AUDIT_HEADERS": json.dumps(headers)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {result["id"]: result for result in json.loads(completed.stdout)}


def failing(results: dict[str, dict], level: str) -> list[str]:
    return [
        f"{r['id']} {r['name']}: {r['reason']}"
        for r in results.values()
        if r["name"].startswith(level) and r["status"] != "ok"
    ]


def test_the_graphql_over_http_audit_suite_passes(server: ServerProcess):
    # A client that sends the CSRF header (as Apollo clients do) gets every audit.
    with_header = run_audits(server, CSRF)
    assert len(with_header) >= 60
    assert failing(with_header, "MUST") == []
    assert failing(with_header, "SHOULD") == []
    assert failing(with_header, "MAY") == []

    # Without it, only the GETs that run an operation are refused (the CSRF rule); those
    # audits are MAYs, every MUST and SHOULD still holds.
    bare = run_audits(server, {})
    assert failing(bare, "MUST") == []
    assert failing(bare, "SHOULD") == []
    refused = {r["id"] for r in bare.values() if r["status"] != "ok"}
    assert refused == {"5A70", "D6D5", "6A70"}


async def post(gql: GraphQLClient, body: object, **headers: str) -> httpx.Response:
    return await gql.http.post(
        "/graphql",
        content=json.dumps(body),
        headers={"content-type": "application/json", **headers},
    )


async def test_media_type_follows_the_accept_header(gql: GraphQLClient):
    query = {"query": "{ __typename }"}
    cases = {
        None: "application/json",
        "*/*": "application/json",
        "application/json": "application/json",
        GRAPHQL_RESPONSE: GRAPHQL_RESPONSE,
        f"application/json;q=0.9, {GRAPHQL_RESPONSE}": GRAPHQL_RESPONSE,
        f"application/json, {GRAPHQL_RESPONSE};q=0.5": "application/json",
    }
    for accept, expected in cases.items():
        headers = {"accept": accept} if accept else {}
        response = await post(gql, query, **headers)
        assert response.status_code == 200, accept
        assert response.headers["content-type"] == f"{expected}; charset=utf-8", accept
        assert response.json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{", None, "GRAPHQL_PARSE_FAILED"),
        ("{ noSuchField }", None, "GRAPHQL_VALIDATION_FAILED"),
        ("query($id: ID!) { lead(id: $id) { id } }", {"id": None}, "GRAPHQL_VALIDATION_FAILED"),
    ],
)
async def test_a_request_that_fails_before_execution_has_no_data_and_a_400_in_the_new_media_type(
    gql: GraphQLClient, query, variables, code
):
    body = {"query": query, "variables": variables}
    new = await post(gql, body, accept=GRAPHQL_RESPONSE)
    assert new.status_code == 400
    assert "data" not in new.json()
    assert new.json()["errors"][0]["extensions"]["code"] == code

    legacy = await post(gql, body, accept="application/json")
    assert legacy.status_code == 200
    assert "data" not in legacy.json()
    assert legacy.json()["errors"][0]["extensions"]["code"] == code


async def test_without_an_operation_name_the_document_s_first_operation_runs(
    gql: GraphQLClient,
):
    document = "query First { __typename } query Second { second: __typename }"
    posted = await post(gql, {"query": document})
    assert posted.status_code == 200
    assert posted.json() == {"data": {"__typename": "Query"}, "extensions": {"sqlStatements": 0}}
    # A GET takes Strawberry's own path through the view: the same answer.
    got = await gql.http.get("/graphql", params={"query": document}, headers=CSRF)
    assert got.json() == posted.json()
    named = await post(gql, {"query": document, "operationName": "Second"})
    assert named.json()["data"] == {"second": "Query"}


async def test_a_request_refused_before_execution_reports_no_statements(gql: GraphQLClient):
    response = await post(gql, {"query": "{ noSuchField }"})
    assert response.json()["extensions"] == {"sqlStatements": 0}


async def test_an_execution_error_keeps_status_200_and_data(gql: GraphQLClient):
    response = await post(gql, {"query": '{ lead(id: "nope") { id } }'}, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"lead": None}
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_get_runs_queries_only_with_a_csrf_header_or_authorization(gql: GraphQLClient):
    params = {"query": "{ __typename }"}
    refused = await gql.http.get("/graphql", params=params)
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "CSRF_PREVENTED"
    assert "x-crm-csrf" in error["message"]
    assert "Authorization" in error["message"]

    for header in ("X-CRM-CSRF", "apollo-require-preflight", "GraphQL-Require-Preflight"):
        allowed = await gql.http.get("/graphql", params=params, headers={header: "1"})
        assert allowed.status_code == 200, header
        assert allowed.json()["data"] == {"__typename": "Query"}

    # Authorization, which no cross-site form or simple request can carry, does as well:
    # clients that send queries as GET (urql by default) need nothing more.
    authorized = await gql.http.get("/graphql", params=params, headers=gql.auth_headers)
    assert authorized.status_code == 200
    assert authorized.json()["data"] == {"__typename": "Query"}

    mutation = {"query": "mutation { createLead(input: {source: MANUAL}) { errors { code } } }"}
    over_get = await gql.http.get("/graphql", params=mutation, headers=CSRF)
    assert over_get.status_code == 405
    assert over_get.headers["allow"] == "POST"
    assert over_get.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert (await gql("{ leads { totalCount } }"))["leads"]["totalCount"] == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
async def test_a_form_post_without_the_csrf_header_is_refused(gql: GraphQLClient, content_type):
    body = json.dumps({"query": "mutation { createLead(input: {source: MANUAL}) { lead { id } } }"})
    response = await gql.http.post("/graphql", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "CSRF_PREVENTED"
    assert (await gql("{ leads { totalCount } }"))["leads"]["totalCount"] == 0


async def test_graphiql_is_served_to_a_browser_in_development(gql: GraphQLClient):
    response = await gql.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_a_body_over_the_limit_is_refused_with_413_whether_or_not_its_length_is_declared(
    gql: GraphQLClient,
):
    big = json.dumps({"query": "{ __typename }", "variables": {"x": "a" * 300_000}}).encode()
    declared = await gql.http.post(
        "/graphql", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    error = declared.json()["errors"][0]
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "max_body_bytes" in error["message"]

    async def chunks():
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    streamed = await gql.http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert streamed.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    "body",
    [
        b"5",
        b'"a string"',
        b"null",
        b"[1]",
        b'{"query": "{ __typename }\xff"}',  # not UTF-8
        b'{"query": 5}',
        b'{"query": "{ __typename }", "operationName": ["Q"]}',
        b'{"query": "{ __typename }", "variables": "x"}',
    ],
)
async def test_a_malformed_body_gets_400_with_a_reason(gql: GraphQLClient, body: bytes):
    response = await gql.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["message"]


async def test_batching_is_off_by_default(gql: GraphQLClient):
    response = await post(gql, [{"query": "{ __typename }"}, {"query": "{ __typename }"}])
    assert response.status_code == 400
    assert "batching_enabled" in response.json()["errors"][0]["message"]


async def test_each_request_logs_one_line_with_its_id_and_no_client_data(
    gql: GraphQLClient, server_log: Path
):
    secret = "very-secret-domain-4711"
    response = await gql.http.post(
        "/graphql",
        json={
            "query": CREATE_LEAD.replace("mutation(", "mutation CreateOne(", 1),
            "variables": {"input": {"source": "PARTNER", "businessDomain": secret}},
        },
        headers={"x-request-id": "req-test-42", **gql.auth_headers},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-test-42"

    generated = await post(gql, {"query": "{ nope }"})
    generated_id = generated.headers["x-request-id"]
    assert len(generated_id) == 32

    log = server_log.read_text()  # noqa: ASYNC240 - a small file, after the responses
    lines = log.splitlines()
    mine = [line for line in lines if "request_id=req-test-42" in line]
    assert len(mine) == 1
    line = mine[0]
    for expected in (
        "operation_name=CreateOne",
        "operation_type=mutation",
        "status=200",
        "outcome=ok",
        "duration_ms=",
    ):
        assert expected in line
    assert secret not in log
    assert gql.token not in log
    rejected = [line for line in lines if f"request_id={generated_id}" in line]
    assert len(rejected) == 1
    assert "outcome=rejected" in rejected[0]
