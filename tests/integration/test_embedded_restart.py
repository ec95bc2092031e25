"""With no database configured, `serve` runs an embedded PostgreSQL whose data survives a
restart, and stops it when the server stops."""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.graphql import CREATE_LEAD, GET_LEAD
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(process)
    return found


def development_token(server: ServerProcess) -> str:
    """The manager token `serve` prints in development mode."""
    found = re.search(r"Development token \(role manager, valid 24h\): (\S+)", server.log())
    assert found, server.log()
    return found[1]


def graphql(server: ServerProcess, token: str, query: str, variables: dict) -> dict:
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def embedded_server(folder: Path) -> ServerProcess:
    configured = [k for k in os.environ if k.startswith(("POSTGRES_", "CRM_"))]
    return ServerProcess(
        # The working directory holds no .env; PYTHONPATH keeps the package importable.
        {"CRM_DATA_DIR": str(folder / "data"), "PYTHONPATH": str(ROOT)},
        folder / "server.log",
        unset=configured,
        cwd=folder,
    )


@pytest.fixture
def folder() -> Iterator[Path]:
    """Not under pytest's tmp_path: as root, the embedded server runs as another user, and
    every pytest run resets /tmp/pytest-of-root to mode 0700, locking that user out."""
    path = Path(tempfile.mkdtemp(prefix="crm-test-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_leads_survive_a_restart_and_postgres_stops_with_the_server(folder: Path):
    pgdata = (folder / "data" / "pgdata").resolve()
    server = embedded_server(folder).start(timeout=120)
    try:
        assert "Embedded PostgreSQL" in server.log()
        assert postgres_processes(pgdata), "the embedded PostgreSQL should be running"
        # The token signed at the first start still works after the restart: the secret is kept.
        token = development_token(server)
        created = graphql(server, token, CREATE_LEAD, {"input": {"source": "PARTNER"}})
        lead = created["createLead"]["lead"]
    finally:
        server.stop()
    assert server.process is not None
    # 143 = 128 + SIGTERM: it exited by itself, running its cleanup, rather than being killed.
    assert server.process.returncode == 143, server.log()
    assert postgres_processes(pgdata) == [], server.log()

    again = embedded_server(folder).start(timeout=120)
    try:
        found = graphql(again, token, GET_LEAD, {"id": lead["id"]})["lead"]
    finally:
        again.stop()
    assert found == lead
    assert postgres_processes(pgdata) == [], again.log()


def test_a_configured_database_starts_nothing_embedded(server: ServerProcess):
    # The session's server runs with CRM_DATABASE_URL set.
    assert "GraphQL API and GraphiQL at" in server.log()
    assert "Embedded PostgreSQL" not in server.log()
    assert "embedded_postgres" not in server.log()
