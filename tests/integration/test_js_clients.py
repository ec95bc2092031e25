"""The JavaScript clients front ends run (graphql-ws, Apollo Client, urql), in Node, against
the real server: tests/clients holds them, pinned by its lock file, and the README's client
snippets, which these scenarios import as they are."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import TABLES
from tests.support.graphql import token_for
from tests.support.node import node_project
from tests.support.server import ServerProcess, api_server

CLIENTS_DIR = Path(__file__).resolve().parents[1] / "clients"
LISTED_PAGE = "https://app.example.com"


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own: its change feed follows ids that keep counting."""
    log_dir = tmp_path_factory.mktemp("clients")
    with api_server(database_url, log_dir, CRM_CORS_ORIGINS=LISTED_PAGE) as process:
        yield process


@pytest.fixture(autouse=True)
async def emptied(server: ServerProcess, db: asyncpg.Connection) -> None:
    # Without RESTART IDENTITY: the running feed's position stays valid (as in production).
    await db.execute(f"TRUNCATE {TABLES} CASCADE")


def run_scenario(server: ServerProcess, name: str, **env: str) -> Any:
    node = node_project(CLIENTS_DIR, "graphql-ws")
    completed = subprocess.run(
        [node, "--import", "./bundler-resolution.mjs", "scenarios.mjs", name],
        cwd=CLIENTS_DIR,
        env={**os.environ, "CRM_URL": server.url, "CRM_TOKEN": token_for("manager"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def created_lead(result: dict[str, Any]) -> dict[str, Any]:
    payload = result["createLead"]
    assert payload["errors"] == []
    assert payload["lead"]["stage"] == "NEW"
    return payload["lead"]


def assert_creation_event(subscription: dict[str, Any]) -> None:
    event = subscription["event"]
    assert event["lead"]["id"] == subscription["lead"]["id"]
    assert (event["from"], event["to"]) == (None, "NEW")
    assert event["cursor"]


def test_graphql_ws_runs_a_query_a_mutation_and_a_subscription(server: ServerProcess):
    result = run_scenario(server, "graphql-ws")
    assert result["query"] == {"data": {"leads": {"totalCount": 0, "edges": []}}}
    created_lead(result["mutation"]["data"])
    assert_creation_event(result["subscription"])


def test_graphql_ws_resumes_after_a_dropped_connection_with_every_missed_change(
    server: ServerProcess,
):
    result = run_scenario(server, "graphql-ws-reconnect")
    # The first event came live; the other two were made while no socket was open.
    assert [event["lead"]["id"] for event in result["events"]] == [
        lead["id"] for lead in result["leads"]
    ]
    assert [(event["from"], event["to"]) for event in result["events"]] == [(None, "NEW")] * 3


def test_a_websocket_opens_from_a_listed_origin_and_is_refused_from_another(
    server: ServerProcess,
):
    listed = run_scenario(server, "ws-origin", CRM_ORIGIN=LISTED_PAGE)
    assert listed == {"accepted": "connection_ack", "isBinary": False}
    unlisted = run_scenario(server, "ws-origin", CRM_ORIGIN="https://evil.example")
    assert unlisted == {"refused": 403}


def test_urql_with_its_default_exchanges_runs_a_query_a_mutation_and_a_subscription(
    server: ServerProcess,
):
    result = run_scenario(server, "urql")
    # urql's cache asks for __typename.
    leads = {"totalCount": 0, "edges": [], "__typename": "LeadConnection"}
    assert result["query"] == {"data": {"leads": leads}, "error": None}
    assert result["mutation"]["error"] is None
    created_lead(result["mutation"]["data"])
    assert_creation_event(result["subscription"])
    # urql sends queries as GET (with Authorization, which the CSRF rule accepts).
    assert [request["method"] for request in result["sent"]] == ["GET", "POST", "POST"]


def test_apollo_client_with_persisted_queries_and_graphql_ws(server: ServerProcess):
    result = run_scenario(server, "apollo")
    leads = {"__typename": "LeadConnection", "totalCount": 0, "edges": []}
    assert result["query"] == [{"leads": leads}, {"leads": leads}]
    created_lead(result["mutation"])
    assert_creation_event(result["subscription"])
    # Automatic persisted queries: queries by GET with the hash only; an unknown hash is
    # retried once with the document (POST); after that the hash alone does.
    sent = [
        (request["method"], "query" in json.loads(request["body"] or "{}"))
        for request in result["sent"]
    ]
    assert sent == [
        ("GET", False),  # Leads: PERSISTED_QUERY_NOT_FOUND
        ("POST", True),
        ("GET", False),  # Leads again: the hash is known now
        ("POST", False),  # CreateLead: PERSISTED_QUERY_NOT_FOUND
        ("POST", True),
        ("POST", False),  # CreateLead again
    ]
    assert all("query=" not in request["url"] for request in result["sent"])


def test_codegen_s_persisted_documents_are_a_trusted_documents_manifest(
    database_url: str, server: ServerProcess, tmp_path: Path
):
    # The README's codegen.yml, run as a front end's build runs it.
    node = node_project(CLIENTS_DIR, "@graphql-codegen/cli")
    codegen = CLIENTS_DIR / "node_modules" / "@graphql-codegen" / "cli" / "cjs" / "bin.js"
    subprocess.run(
        [node, str(codegen), "--config", "codegen.yml"],
        cwd=CLIENTS_DIR,
        check=True,
        capture_output=True,
        timeout=120,
    )
    manifest = CLIENTS_DIR / "generated" / "gql" / "persisted-documents.json"
    (document_id, document), *_ = json.loads(manifest.read_text()).items()
    assert document.startswith("query RecentLeads")

    with api_server(database_url, tmp_path, CRM_TRUSTED_DOCUMENTS=str(manifest)) as trusted:
        headers = {"Authorization": f"Bearer {token_for('manager')}"}
        # What the client preset's documents send: the hash as documentId.
        by_id = {"documentId": document_id, "variables": {"first": 5}}
        answer = httpx.post(f"{trusted.url}/graphql", json=by_id, headers=headers)
        assert answer.json()["data"]["leads"] == {"totalCount": 0, "edges": []}
        other = {"query": "{ leads { totalCount } }"}
        refused = httpx.post(f"{trusted.url}/graphql", json=other, headers=headers)
        assert refused.json()["errors"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
