"""Browser pages on other origins (development server: no CRM_CORS_ORIGINS, so pages on
this machine only). Production, where only the listed origins pass: test_production_mode."""

import httpx

from tests.support.cors import (
    assert_preflight_allows,
    assert_preflight_refuses,
    assert_websocket_opens,
    assert_websocket_refused,
)
from tests.support.graphql import GraphQLClient

LOCAL_PAGE = "http://localhost:5173"
FOREIGN_PAGE = "https://evil.example"


async def cors_headers_of_responses(gql: GraphQLClient, origin: str) -> list[httpx.Headers]:
    """A JSON POST (the server's fast path) and a GET query, as a page on `origin` sends them."""
    headers = {**gql.auth_headers, "origin": origin}
    posted = await gql.http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    got = await gql.http.get("/graphql", params={"query": "{ __typename }"}, headers=headers)
    for response in (posted, got):
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"__typename": "Query"}
        assert "Origin" in response.headers["vary"]
    return [posted.headers, got.headers]


async def test_a_page_on_this_machine_may_call_the_development_server(gql: GraphQLClient):
    await assert_preflight_allows(gql.http, LOCAL_PAGE)
    await assert_preflight_allows(gql.http, "http://127.0.0.1:3000")
    for headers in await cors_headers_of_responses(gql, LOCAL_PAGE):
        assert headers["access-control-allow-origin"] == LOCAL_PAGE
        assert "x-request-id" in headers["access-control-expose-headers"]


async def test_a_page_on_another_origin_gets_no_cors_headers(gql: GraphQLClient):
    await assert_preflight_refuses(gql.http, FOREIGN_PAGE)
    await assert_preflight_refuses(gql.http, "http://localhost.evil.example:5173")
    for headers in await cors_headers_of_responses(gql, FOREIGN_PAGE):
        assert "access-control-allow-origin" not in headers


async def test_websockets_open_from_this_machine_only(gql: GraphQLClient):
    url = str(gql.http.base_url)
    await assert_websocket_opens(url, LOCAL_PAGE)
    await assert_websocket_refused(url, FOREIGN_PAGE)
