"""`crm-graphql serve --workers N` runs N processes behind one port; each keeps its own LISTEN
connection and fans out to its own subscribers, so a change reaches every client whichever
process accepted its socket."""

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack

import asyncpg
import httpx
import pytest

from crm_graphql.api.subscriptions import encode_change_cursor
from tests.support.graphql import CREATE_LEAD, GraphQLClient, token_for
from tests.support.server import ServerProcess, api_env
from tests.support.subscriptions import LEAD_STAGE_CHANGED, eventually, graphql_websocket

WORKERS = 2
SUBSCRIBERS = 8


@pytest.fixture(scope="module")
def two_workers(
    database_url: str, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # `server` first: it migrates the shared test database before this one starts.
    log = tmp_path_factory.mktemp("workers") / "server.log"
    process = ServerProcess(api_env(database_url), log, "--workers", str(WORKERS)).start()
    yield process
    process.stop()


async def test_every_subscriber_of_every_worker_receives_a_change(
    two_workers: ServerProcess, db: asyncpg.Connection
):
    # No truncating here: the workers' feeds follow audit ids, which only ever grow.
    async def every_worker_listens() -> bool:
        # The main test server listens too: one connection for it, one per worker.
        return (
            await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'crm-graphql-listen' AND datname = current_database()"
            )
            >= 1 + WORKERS
        )

    await eventually(every_worker_listens)
    # From a cursor taken now the change arrives by replay or live, so the test need not know
    # when each worker registered its subscriber.
    after = encode_change_cursor(
        await db.fetchval("SELECT coalesce(max(id), 0) FROM stage_changes")
    )
    async with (
        AsyncExitStack() as sockets,
        httpx.AsyncClient(base_url=two_workers.url, timeout=30) as http,
    ):
        subscribers = [
            await sockets.enter_async_context(graphql_websocket(two_workers.url))
            for _ in range(SUBSCRIBERS)
        ]
        for ws in subscribers:
            await ws.subscribe(LEAD_STAGE_CHANGED, {"after": after})
        created = await GraphQLClient(http, token_for("manager"))(
            CREATE_LEAD, {"input": {"source": "MANUAL"}}
        )
        events = await asyncio.gather(*(ws.next_change() for ws in subscribers))
    lead_id = created["createLead"]["lead"]["id"]
    assert [(e["lead"]["id"], e["from"], e["to"]) for e in events] == [
        (lead_id, None, "NEW")
    ] * SUBSCRIBERS
