"""Operations sent by hash: Apollo's automatic persisted queries on the shared server, and
trusted documents (CRM_TRUSTED_DOCUMENTS) on a server of this module's own."""

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support.graphql import GraphQLClient, token_for
from tests.support.server import ServerProcess, api_server
from tests.support.subscriptions import graphql_websocket

GRAPHQL_RESPONSE = "application/graphql-response+json"
LEADS = "query Leads { leads { totalCount } }"
CREATE_LEAD = "mutation { createLead(input: {source: MANUAL}) { lead { id } } }"


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def persisted(document: str, sha256_hash: str | None = None) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256_hash or sha256(document)}}


async def post(gql: GraphQLClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await gql.http.post("/graphql", json=body, headers={**gql.auth_headers, **headers})


async def get(gql: GraphQLClient, params: dict[str, str], **headers: str) -> httpx.Response:
    return await gql.http.get("/graphql", params=params, headers={**gql.auth_headers, **headers})


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert "data" not in body, body
    error = body["errors"][0]
    return response.status_code, error["extensions"]["code"], error["message"]


async def test_an_unknown_hash_asks_for_the_document_as_apollo_clients_expect(
    gql: GraphQLClient,
):
    document = "query Unknown { leads { totalCount } __typename }"
    hash_only = {"extensions": persisted(document)}
    # 200 whatever the media type: Apollo Client before 3.7.16 stops persisting after a 400.
    for accept in ("application/json", GRAPHQL_RESPONSE):
        response = await post(gql, hash_only, accept=accept)
        assert error_of(response) == (200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
    by_get = await get(gql, {"extensions": json.dumps(hash_only["extensions"])})
    assert error_of(by_get)[:2] == (200, "PERSISTED_QUERY_NOT_FOUND")

    # The client's retry: document and hash; from then on the hash alone runs it.
    registered = await post(gql, {"query": document, **hash_only})
    assert registered.json()["data"]["leads"] == {"totalCount": 0}
    assert (await post(gql, hash_only)).json()["data"]["leads"] == {"totalCount": 0}
    by_get = await get(gql, {"extensions": json.dumps(hash_only["extensions"])})
    assert by_get.json()["data"]["leads"] == {"totalCount": 0}


async def test_a_hash_only_get_is_answered_with_json_never_graphiql(gql: GraphQLClient):
    await post(gql, {"query": LEADS, "extensions": persisted(LEADS)})
    for accept in ("*/*", "text/html,application/xhtml+xml,*/*;q=0.8"):
        response = await get(gql, {"extensions": json.dumps(persisted(LEADS))}, accept=accept)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["data"] == {"leads": {"totalCount": 0}}


async def test_a_document_whose_hash_does_not_match_is_refused_and_runs_nothing(
    gql: GraphQLClient,
):
    wrong = persisted(CREATE_LEAD, sha256_hash=sha256("query NeverSent { __typename }"))
    response = await post(gql, {"query": CREATE_LEAD, "extensions": wrong})
    assert error_of(response)[:2] == (400, "PERSISTED_QUERY_HASH_MISMATCH")
    # Nor is the document now stored under the wrong hash.
    hash_only = await post(gql, {"extensions": wrong})
    assert error_of(hash_only)[:2] == (200, "PERSISTED_QUERY_NOT_FOUND")
    assert (await gql("{ leads { totalCount } }"))["leads"]["totalCount"] == 0


async def test_other_versions_and_malformed_hashes_are_refused(gql: GraphQLClient):
    v2 = {"persistedQuery": {"version": 2, "sha256Hash": sha256(LEADS)}}
    response = await post(gql, {"query": LEADS, "extensions": v2})
    assert error_of(response)[:2] == (400, "PERSISTED_QUERY_VERSION_NOT_SUPPORTED")
    no_hash = {"persistedQuery": {"version": 1, "sha256Hash": 7}}
    assert error_of(await post(gql, {"extensions": no_hash}))[:2] == (400, "BAD_REQUEST")


TRUSTED_QUERY = "query TrustedLeads { leads { totalCount } }"
TRUSTED_SUBSCRIPTION = "subscription Trusted { leadStageChanged { to } }"
# As GraphQL Code Generator's client preset writes it (its default hash is SHA-1).
MANIFEST = {
    hashlib.sha1(document.encode()).hexdigest(): document
    for document in (TRUSTED_QUERY, TRUSTED_SUBSCRIPTION)
}
QUERY_ID = next(key for key, document in MANIFEST.items() if document == TRUSTED_QUERY)


@pytest.fixture(scope="module")
def trusted_server(
    database_url: str, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # Depends on `server` so the shared test database is migrated before this one starts.
    folder = tmp_path_factory.mktemp("trusted")
    manifest = folder / "persisted-documents.json"
    manifest.write_text(json.dumps(MANIFEST))
    with api_server(database_url, folder, CRM_TRUSTED_DOCUMENTS=str(manifest)) as process:
        yield process


@pytest.fixture
async def trusted(trusted_server: ServerProcess, clean: None) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=trusted_server.url, timeout=30) as http:
        yield GraphQLClient(http, token_for("manager"))


async def test_with_trusted_documents_a_listed_hash_runs_its_document(trusted: GraphQLClient):
    expected = {"leads": {"totalCount": 0}}
    by_id = await post(trusted, {"documentId": QUERY_ID})
    assert by_id.json()["data"] == expected
    by_get = await get(trusted, {"documentId": QUERY_ID})
    assert by_get.json()["data"] == expected
    by_apollo = await post(trusted, {"extensions": persisted(TRUSTED_QUERY, QUERY_ID)})
    assert by_apollo.json()["data"] == expected


async def test_with_trusted_documents_no_other_document_runs(trusted: GraphQLClient):
    for body in (
        {"query": CREATE_LEAD},
        {"query": TRUSTED_QUERY},  # a trusted document, but sent as a document
    ):
        response = await post(trusted, body)
        assert error_of(response)[:2] == (400, "TRUSTED_DOCUMENT_REQUIRED"), body
    for body in (
        {"documentId": sha256(CREATE_LEAD)},
        {"query": CREATE_LEAD, "extensions": persisted(CREATE_LEAD)},  # APQ registration
    ):
        response = await post(trusted, body)
        assert error_of(response)[:2] == (400, "PERSISTED_QUERY_NOT_IN_LIST"), body
    swapped = await post(trusted, {"documentId": QUERY_ID, "query": CREATE_LEAD})
    assert error_of(swapped)[:2] == (400, "PERSISTED_QUERY_HASH_MISMATCH")
    assert (await post(trusted, {"documentId": QUERY_ID})).json()["data"]["leads"] == {
        "totalCount": 0
    }


async def test_with_trusted_documents_a_websocket_runs_only_them_too(
    trusted_server: ServerProcess, trusted: GraphQLClient
):
    async with graphql_websocket(trusted_server.url) as ws:
        await ws.send({"id": "1", "type": "subscribe", "payload": {"query": CREATE_LEAD}})
        refused = await ws.receive()
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"

        await ws.send({"id": "2", "type": "subscribe", "payload": {"documentId": QUERY_ID}})
        assert await ws.next_data("2") == {"leads": {"totalCount": 0}}
