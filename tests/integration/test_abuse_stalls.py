"""Abuse that used to stall the server or reach a 500 (issue 17): each class is answered with
its documented code, fast, while another client's `{ __typename }` is still answered."""

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.support.abuse import answered_while
from tests.support.graphql import TEST_JWT_SECRET, token_for
from tests.support.server import ServerProcess
from tests.support.subscriptions import graphql_websocket, open_websocket

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def refused_request(url: str, body: object) -> list[dict[str, Any]]:
    """The errors of a request refused before execution (400 in the new media type)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.post("/graphql", json=body, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 400, response.text
    assert "data" not in response.json()
    return response.json()["errors"]


def doubled_fragments(levels: int, leaf: str, spread: str = "...F{}") -> str:
    """Fragments that each spread the previous one twice: 2**levels leaves once expanded, in
    a document of a few hundred bytes."""
    fragments = [f"fragment F0 on Query {{ {leaf} }}"]
    for level in range(1, levels + 1):
        twice = " ".join([spread.format(level - 1)] * 2)
        fragments.append(f"fragment F{level} on Query {{ {twice} }}")
    return f"query Doubled {{ ...F{levels} }} " + " ".join(fragments)


@pytest.mark.parametrize(
    ("leaf", "spread", "code"),
    [
        ("__typename", "...F{}", "FIELD_LIMIT_EXCEEDED"),  # introspection fields cost nothing
        ("a: __typename", "...F{}", "ALIAS_LIMIT_EXCEEDED"),
        ("leads { totalCount }", "...F{}", "COST_LIMIT_EXCEEDED"),
        ("__typename", "... on Query {{ ...F{} }}", "FIELD_LIMIT_EXCEEDED"),
    ],
)
@pytest.mark.parametrize("levels", [20, 30])
async def test_fragments_spread_twice_per_level_are_refused_fast(
    server: ServerProcess, levels: int, leaf: str, spread: str, code: str
):
    document = doubled_fragments(levels, leaf, spread)
    assert len(document) < 2500
    errors = await answered_while(server.url, refused_request(server.url, {"query": document}))
    assert code in [error["extensions"]["code"] for error in errors], errors
    assert all(error["message"].startswith("Operation Doubled") for error in errors)


async def test_the_expanded_field_count_is_limited(server: ServerProcess):
    """Below the limits a document with doubled fragments runs; past them it is refused (a
    doubled fragment repeats its fields too, so both limits apply)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        four = await http.post("/graphql", json={"query": doubled_fragments(4, "__typename")})
        assert four.json()["data"] == {"__typename": "Query"}
    errors = await refused_request(server.url, {"query": doubled_fragments(11, "__typename")})
    messages = {error["extensions"]["code"]: error["message"] for error in errors}
    assert messages["FIELD_LIMIT_EXCEEDED"] == (
        "Operation Doubled selects 2048 fields once its fragments are expanded; the limit is "
        "2000 (setting max_query_fields)."
    )
    assert set(messages) == {"FIELD_LIMIT_EXCEEDED", "FIELD_REPEAT_LIMIT_EXCEEDED"}


# --- deeply nested JSON: BAD_REQUEST (a 4400 close on a WebSocket), never a RecursionError ----

NESTING = 100_000  # far past any parser's recursion limit, well under the body limit


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


async def posted(url: str, content: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        headers = {"content-type": "application/json", "x-crm-csrf": "1"}
        if params:
            return await http.get("/graphql", params=params, headers=headers)
        return await http.post("/graphql", content=content, headers=headers)


@pytest.mark.parametrize(
    "body",
    [
        nested(NESTING),
        '{"query": "{ __typename }", "variables": {"a": ' + nested(NESTING) + "}}",
        '{"query": "{ __typename }", "extensions": {"a": ' + nested(NESTING) + "}}",
        '[{"query": "{ __typename }", "variables": {"a": ' + nested(NESTING) + "}}]",
    ],
    ids=["body", "variables", "extensions", "batch"],
)
async def test_deeply_nested_json_bodies_are_bad_requests(server: ServerProcess, body: str):
    response = await answered_while(server.url, posted(server.url, body))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_deeply_nested_variables_in_a_get_are_bad_requests(server: ServerProcess):
    response = await answered_while(
        server.url, posted(server.url, "", query="{ __typename }", variables=nested(5000))
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("authenticated", [False, True], ids=["connection_init", "subscribe"])
async def test_deeply_nested_websocket_messages_close_with_4400(
    server: ServerProcess, authenticated: bool
):
    async def send_nested() -> tuple[int | None, str | None, int]:
        opened = graphql_websocket if authenticated else open_websocket
        async with opened(server.url) as ws:
            await ws.connection.send('{"type": "subscribe", "payload": ' + nested(NESTING) + "}")
            return await ws.closed()

    code, reason, _ = await answered_while(server.url, send_nested())
    assert (code, reason) == (4400, "WebSocket message must be valid JSON")


# --- a subscription over HTTP: a client error pointing to the WebSocket, one log line --------

SUBSCRIPTION = "subscription Watch { leadStageChanged { from to } }"


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("token", [None, "manager"])
async def test_a_subscription_over_http_is_told_to_use_the_websocket(
    server: ServerProcess, server_log: Path, method: str, token: str | None
):
    request_id = f"subscription-over-http-{method}-{token}"
    headers = {"accept": GRAPHQL_RESPONSE, "x-request-id": request_id, "x-crm-csrf": "1"}
    if token:
        headers["authorization"] = f"Bearer {token_for(token)}"
    logged_before = len(server_log.read_text().splitlines())  # noqa: ASYNC240 - small file

    async def subscribe() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=60, headers=headers) as http:
            if method == "GET":
                return await http.get("/graphql", params={"query": SUBSCRIPTION})
            return await http.post("/graphql", json={"query": SUBSCRIPTION})

    response = await answered_while(server.url, subscribe())
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "WEBSOCKET_REQUIRED"
    assert "served over WebSocket" in error["message"]
    assert "data" not in response.json()

    logged = server_log.read_text().splitlines()[logged_before:]  # noqa: ASYNC240
    assert len([line for line in logged if request_id in line]) == 1, logged
    assert not any("Traceback" in line or "ERROR" in line for line in logged), logged


# --- signed tokens whose claims have the wrong type: UNAUTHENTICATED with the reason --------

IN_AN_HOUR = int(time.time()) + 3600


def signed(**overrides: object) -> str:
    """A token signed with the test server's secret, its claims sent exactly as given."""
    claims = {
        "sub": "mallory",
        "name": "Mallory",
        "role": "admin",
        "iss": "crm-graphql",
        "aud": "crm-graphql",
        "exp": IN_AN_HOUR,
        **overrides,
    }
    return jwt.PyJWS().encode(json.dumps(claims).encode(), TEST_JWT_SECRET, algorithm="HS256")


WRONG_CLAIMS = [
    ({"exp": str(IN_AN_HOUR)}, "`exp` claim must be"),
    ({"exp": 1e20}, "`exp` claim must be"),
    ({"iat": "today"}, "`iat` claim must be"),
    ({"nbf": [1]}, "`nbf` claim must be"),
    ({"sub": "mal\x00lory"}, "`sub` claim must not contain NUL"),
    ({"name": "Mal\ud800lory"}, "`name` claim must be valid Unicode"),
    ({"name": 7}, "`name` claim must be a string"),
    ({"iss": 7}, "`iss` claim must be a string"),
]


@pytest.mark.parametrize(("claims", "reason"), WRONG_CLAIMS, ids=repr)
async def test_tokens_with_claims_of_the_wrong_type_are_unauthenticated(
    server: ServerProcess, claims: dict[str, object], reason: str
):
    headers = {"authorization": f"Bearer {signed(**claims)}"}
    mutation = "mutation { createLead(input: {source: MANUAL}) { lead { id } } }"

    async def request() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=60, headers=headers) as http:
            return await http.post("/graphql", json={"query": mutation})

    response = await answered_while(server.url, request())
    assert response.status_code == 200, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert reason in error["message"]


@pytest.mark.parametrize(("claims", "reason"), WRONG_CLAIMS, ids=repr)
async def test_a_websocket_with_such_a_token_is_closed_with_4401(
    server: ServerProcess, claims: dict[str, object], reason: str
):
    async def connect() -> tuple[int | None, str | None, int]:
        async with open_websocket(server.url) as ws:
            await ws.send({"type": "connection_init", "payload": {"token": signed(**claims)}})
            return await ws.closed()

    code, close_reason, messages = await answered_while(server.url, connect())
    assert code == 4401
    assert close_reason is not None
    assert reason in close_reason
    assert messages == 0


# --- one field selected hundreds of times: graphql-core's overlap check is quadratic --------


@pytest.mark.parametrize(
    "document",
    [
        "{ " + "viewer { id } " * 390 + "}",  # cheap by cost: 2 a copy
        "{ " + "leads(first: 0) { totalCount } " * 200 + "}",
        "query { "
        + " ".join(f"...F{i}" for i in range(20))
        + " } "
        + " ".join(f"fragment F{i} on Query {{ {'viewer { id } ' * 20} }}" for i in range(20)),
    ],
    ids=["viewer", "empty-pages", "fragments"],
)
async def test_one_field_selected_hundreds_of_times_is_refused_fast(
    server: ServerProcess, document: str
):
    [error] = await answered_while(server.url, refused_request(server.url, {"query": document}))
    assert error["extensions"]["code"] == "FIELD_REPEAT_LIMIT_EXCEEDED"
    assert "the limit is 30 (setting max_field_repeats)" in error["message"]


async def test_a_field_selected_up_to_the_limit_runs(server: ServerProcess):
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        response = await http.post("/graphql", json={"query": "{ " + "__typename " * 30 + "}"})
    assert response.json()["data"] == {"__typename": "Query"}
