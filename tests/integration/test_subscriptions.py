"""leadStageChanged over WebSocket, against two real server processes (replicas A and B)
sharing one PostgreSQL database. Sockets authenticate as a manager unless a test says
otherwise; changes go through replica B as a manager (`test-manager`)."""

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from crm_graphql.api.ids import encode_global_id
from crm_graphql.api.subscriptions import encode_change_cursor
from crm_graphql.db import repository as repo
from crm_graphql.db.driver import transaction
from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.lead import LeadFields
from tests.conftest import TABLES
from tests.support.database import close_pooled_connections, plain_dsn, with_database
from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    CREATE_LEAD,
    TEST_TOKENS,
    TRANSFER,
    GraphQLClient,
    token_for,
)
from tests.support.server import ServerProcess, api_env
from tests.support.subscriptions import (
    LEAD_STAGE_CHANGED,
    TIMEOUT,
    GraphQLWebSocket,
    connection_init,
    eventually,
    feed_state,
    graphql_websocket,
    open_websocket,
    wait_for_feed,
)

QUEUE_SIZE = 8  # small, so a client that stops reading is cut off after little traffic
FAT_EVENT_ALIASES = 1000
MANAGER = {"id": "test-manager"}  # who makes the changes through replica B


@pytest.fixture(scope="module")
def replicas(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    logs = tmp_path_factory.mktemp("replicas")
    env = api_env(
        database_url,
        CRM_SUBSCRIBER_QUEUE_SIZE=str(QUEUE_SIZE),
        # FAT_EVENT's thousand aliases, beyond the abuse limits' defaults.
        CRM_MAX_ALIASES=str(FAT_EVENT_ALIASES),
        CRM_MAX_QUERY_TOKENS=str(10 * FAT_EVENT_ALIASES),
    )
    replica_a = ServerProcess(env, logs / "a.log").start()
    try:
        replica_b = ServerProcess(env, logs / "b.log").start()
        try:
            yield replica_a, replica_b
        finally:
            replica_b.stop()
    finally:
        replica_a.stop()


@pytest.fixture
def replica_a(replicas: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return replicas[0]


@pytest.fixture
async def through_b(
    replicas: tuple[ServerProcess, ServerProcess], db: asyncpg.Connection
) -> AsyncIterator[GraphQLClient]:
    """GraphQL over HTTP to replica B, on emptied tables, once the sockets of earlier tests
    are gone from both replicas (tests count subscribers to know theirs are registered)."""
    for replica in replicas:
        await wait_for_feed(replica, subscribers=0)
    # Ids keep counting, as in production: the running feeds' positions stay valid.
    await db.execute(f"TRUNCATE {TABLES} CASCADE")
    async with httpx.AsyncClient(base_url=replicas[1].url, timeout=TIMEOUT) as http:
        yield GraphQLClient(http, token_for("manager"))


async def subscribe(
    ws: GraphQLWebSocket, replica: ServerProcess, subscribers: int = 1, **variables: Any
) -> str:
    operation_id = await ws.subscribe(LEAD_STAGE_CHANGED, variables)
    await wait_for_feed(replica, subscribers=subscribers)
    return operation_id


async def create_lead(
    gql: GraphQLClient, source: str = "PARTNER", domain: str | None = None
) -> str:
    data = await gql(CREATE_LEAD, {"input": {"source": source, "businessDomain": domain}})
    assert data["createLead"]["errors"] == []
    return data["createLead"]["lead"]["id"]


async def advance(gql: GraphQLClient, lead_id: str, to: str) -> list[dict[str, Any]]:
    data = await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": to}})
    return data["advanceStage"]["errors"]


def moves(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(e["lead"]["id"], e["from"], e["to"]) for e in events]


async def test_a_subscriber_on_replica_a_receives_changes_made_through_replica_b(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        lead = await create_lead(through_b, domain="fintech")
        created = await ws.next_change()
        assert moves([created]) == [(lead, None, "NEW")]
        assert created["lead"]["history"] == [{"from": None, "to": "NEW", "by": MANAGER}]

        assert (await through_b(ANALYZE_LEAD, {"input": {"leadId": lead}}))["analyzeLead"][
            "errors"
        ] == []
        assert await advance(through_b, lead, "CONTACTED") == []
        contacted = await ws.next_change()
        # Fresh data per event: the socket's first event must not leave a cached lead behind.
        assert contacted["lead"]["stage"] == "CONTACTED"
        assert contacted["lead"]["history"] == [
            {"from": None, "to": "NEW", "by": MANAGER},
            {"from": "NEW", "to": "CONTACTED", "by": MANAGER},
        ]
        assert await advance(through_b, lead, "QUALIFIED") == []
        transfer = (await through_b(TRANSFER, {"input": {"leadId": lead}}))["transferToSales"]
        assert transfer["errors"] == []
        assert moves(await ws.changes(2)) == [
            (lead, "CONTACTED", "QUALIFIED"),
            (lead, "QUALIFIED", "TRANSFERRED"),
        ]


async def test_a_subscriber_with_a_lead_id_gets_only_that_leads_changes(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    watched = await create_lead(through_b)
    other = await create_lead(through_b)
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a, leadId=watched)
        assert await advance(through_b, other, "CONTACTED") == []
        assert await advance(through_b, watched, "LOST") == []
        assert moves([await ws.next_change()]) == [(watched, "NEW", "LOST")]


async def test_a_refused_change_sends_nothing(replica_a: ServerProcess, through_b: GraphQLClient):
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        lead = await create_lead(through_b)
        assert moves([await ws.next_change()]) == [(lead, None, "NEW")]

        assert [e["code"] for e in await advance(through_b, lead, "QUALIFIED")] == [
            "INVALID_TRANSITION"
        ]
        refused = (await through_b(TRANSFER, {"input": {"leadId": lead}}))["transferToSales"]
        assert refused["errors"] != []
        assert await advance(through_b, lead, "CONTACTED") == []
        # Had the refusals sent anything, it would come before this.
        assert moves([await ws.next_change()]) == [(lead, "NEW", "CONTACTED")]


async def test_changes_made_while_the_listen_connection_is_down_arrive_in_order_once(
    replica_a: ServerProcess,
    through_b: GraphQLClient,
    database_url: str,
):
    name = urlsplit(database_url).path.lstrip("/")
    # A database cannot refuse connections while it is the one the command runs in.
    admin = await asyncpg.connect(plain_dsn(with_database(database_url, "postgres")))
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        first = await create_lead(through_b)
        assert moves([await ws.next_change()]) == [(first, None, "NEW")]

        # Keep the replicas from reconnecting, so the changes below certainly commit while
        # nobody listens (B's pool keeps the connections it already has).
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'crm-graphql-listen' AND datname = $1",
                name,
            )
            assert killed >= 2  # one per replica (and the suite's other server, if up)
            await wait_for_feed(replica_a, listening=False)

            assert await advance(through_b, first, "CONTACTED") == []
            second = await create_lead(through_b)
            assert await advance(through_b, first, "QUALIFIED") == []
            assert await advance(through_b, second, "LOST") == []
            assert (await feed_state(replica_a))["listening"] is False
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()

        assert moves(await ws.changes(4)) == [
            (first, "NEW", "CONTACTED"),
            (second, None, "NEW"),
            (first, "CONTACTED", "QUALIFIED"),
            (second, "NEW", "LOST"),
        ]
        await wait_for_feed(replica_a, listening=True)
        assert await advance(through_b, first, "LOST") == []
        # A duplicate of the catch-up would arrive before this live change.
        assert moves([await ws.next_change()]) == [(first, "QUALIFIED", "LOST")]


async def test_a_subscriber_gets_every_change_after_the_pooled_connections_were_closed(
    replica_a: ServerProcess, through_b: GraphQLClient, db: asyncpg.Connection
):
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        first = await create_lead(through_b)
        assert moves([await ws.next_change()]) == [(first, None, "NEW")]

        # Every pooled connection of both replicas dies; the LISTEN connections live on, so
        # the next change wakes replica A's feed, whose read then draws a closed connection.
        assert await close_pooled_connections(db) >= 2
        # Replica B's next request draws a closed connection too: it must not fail.
        second = await create_lead(through_b)
        assert await advance(through_b, second, "CONTACTED") == []

        assert moves(await ws.changes(2)) == [(second, None, "NEW"), (second, "NEW", "CONTACTED")]
    assert "reading lead stage changes failed; retrying" not in replica_a.log()


FAT_EVENT = (
    "subscription { leadStageChanged { "
    + " ".join(f"c{n}: cursor" for n in range(FAT_EVENT_ALIASES))
    + " } }"
)


async def test_a_slow_subscriber_is_cut_off_while_the_others_go_on(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    async with (
        graphql_websocket(replica_a.url, slow_reader=True) as slow,
        graphql_websocket(replica_a.url) as fast,
    ):
        # Large events fill the socket buffers of a client that stops reading in a few hundred
        # changes; then its queue on the server fills and it is cut off.
        await slow.subscribe(FAT_EVENT)
        await subscribe(fast, replica_a, subscribers=2)
        made = 0
        while "subscriber too slow" not in replica_a.log():
            assert made < 3000, "the slow subscriber was never cut off"
            lead = await create_lead(through_b)
            made += 1
            assert moves([await fast.next_change()]) == [(lead, None, "NEW")]

        code, reason, received = await slow.closed()
        assert (code, reason) == (1013, "subscriber too slow")
        assert received < made

        lead = await create_lead(through_b)
        assert moves([await fast.next_change()]) == [(lead, None, "NEW")]
        assert (await feed_state(replica_a))["subscribers"] == 1


async def test_a_subscriber_without_a_cursor_gets_only_the_changes_after_it_subscribed(
    replica_a: ServerProcess, through_b: GraphQLClient, db: asyncpg.Connection
):
    # Made while nobody subscribes to replica A: its feed follows them by their notifications.
    earlier = await create_lead(through_b)
    assert await advance(through_b, earlier, "CONTACTED") == []
    last_change = await db.fetchval("SELECT max(id) FROM stage_changes")
    await wait_for_feed(replica_a, position=last_change)

    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        later = await create_lead(through_b)
        assert moves([await ws.next_change()]) == [(later, None, "NEW")]


async def test_a_cursor_from_before_ten_changes_replays_them_then_continues_live(
    replicas: tuple[ServerProcess, ServerProcess], through_b: GraphQLClient
):
    replica_a, replica_b = replicas
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        lead = await create_lead(through_b)
        cursor = (await ws.next_change())["cursor"]

    made = []
    for _ in range(3):
        new = await create_lead(through_b)
        assert await advance(through_b, new, "CONTACTED") == []
        assert await advance(through_b, new, "QUALIFIED") == []
        made += [(new, None, "NEW"), (new, "NEW", "CONTACTED"), (new, "CONTACTED", "QUALIFIED")]
    assert await advance(through_b, lead, "LOST") == []
    made.append((lead, "NEW", "LOST"))
    assert len(made) == 10

    # The cursor came from replica A; it resumes on replica B as well.
    async with graphql_websocket(replica_b.url) as ws:
        await ws.subscribe(LEAD_STAGE_CHANGED, {"after": cursor})
        replayed = await ws.changes(10)
        assert moves(replayed) == made
        await wait_for_feed(replica_b, subscribers=1)
        live = await create_lead(through_b)
        assert moves([await ws.next_change()]) == [(live, None, "NEW")]


async def test_a_replay_from_the_start_of_history_for_one_lead(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    lead = await create_lead(through_b)
    await create_lead(through_b)
    assert await advance(through_b, lead, "CONTACTED") == []
    async with graphql_websocket(replica_a.url) as ws:
        await ws.subscribe(LEAD_STAGE_CHANGED, {"leadId": lead, "after": encode_change_cursor(0)})
        assert moves(await ws.changes(2)) == [(lead, None, "NEW"), (lead, "NEW", "CONTACTED")]


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        ({"after": "not-a-cursor"}, "INVALID_INPUT", "after"),
        ({"leadId": "not-an-id"}, "INVALID_INPUT", "leadId"),
        ({"leadId": "TGVhZDo5OTk5"}, "NOT_FOUND", "leadId"),  # Lead:9999
    ],
)
async def test_bad_arguments_are_refused_with_a_specific_error(
    replica_a: ServerProcess,
    through_b: GraphQLClient,
    variables: dict[str, str],
    code: str,
    field: str,
):
    async with graphql_websocket(replica_a.url) as ws:
        operation_id = await ws.subscribe(LEAD_STAGE_CHANGED, variables)
        message = await ws.receive()
        assert message["id"] == operation_id
        assert message["type"] == "error"
        [error] = message["payload"]
        assert error["extensions"] == {"code": code, "field": [field]}


async def test_a_change_committed_after_a_later_one_began_is_not_skipped(
    replica_a: ServerProcess,
    through_b: GraphQLClient,
    db: asyncpg.Connection,
    database_url: str,
):
    """A transaction that drew its audit id first and commits last must still be delivered
    (a reader of "ids after the last one delivered" would skip it if ids could commit out of
    order); here the second writer waits for the first."""
    engine = create_async_engine(database_url)
    async with graphql_websocket(replica_a.url) as ws:
        await subscribe(ws, replica_a)
        try:
            # Commits when the block ends, after the later writer is seen waiting.
            async with transaction(engine) as slow_writer:
                writer = Actor("test-writer", "Test Writer", Role.MANAGER)
                no_fields = LeadFields()
                lead = await repo.create_lead(slow_writer, writer, LeadSource.MANUAL, no_fields)
                assert lead is not None
                later = asyncio.create_task(create_lead(through_b))

                async def later_writer_waits_or_is_done() -> bool:
                    return later.done() or await db.fetchval(
                        "SELECT count(*) > 0 FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )

                await eventually(later_writer_waits_or_is_done)
            other = await later
        finally:
            await engine.dispose()
        assert moves(await ws.changes(2)) == [
            (encode_global_id("Lead", lead.id), None, "NEW"),
            (other, None, "NEW"),
        ]


async def transfer(gql: GraphQLClient, lead_id: str) -> None:
    """Take a NEW lead with a business domain through CONTACTED and QUALIFIED to TRANSFERRED
    (analyzing it on the way: a transfer needs a fresh, high enough score)."""
    analyzed = await gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}})
    assert analyzed["analyzeLead"]["errors"] == []
    assert await advance(gql, lead_id, "CONTACTED") == []
    assert await advance(gql, lead_id, "QUALIFIED") == []
    assert (await gql(TRANSFER, {"input": {"leadId": lead_id}}))["transferToSales"]["errors"] == []


@pytest.mark.parametrize(
    "token",
    [
        None,
        "not-a-token",
        TEST_TOKENS.issue(Actor("gone", "Gone", Role.ADMIN), timedelta(hours=-1)),
    ],
    ids=["no token", "malformed", "expired"],
)
async def test_a_subscriber_without_a_valid_token_gets_nothing(
    replica_a: ServerProcess, through_b: GraphQLClient, token: str | None
):
    async with open_websocket(replica_a.url) as ws:
        await ws.send(connection_init(token))
        # Sent without waiting for an ack, as a careless client might.
        await ws.subscribe(LEAD_STAGE_CHANGED)
        await create_lead(through_b)
        code, reason, received = await ws.closed()
    assert code == 4401
    assert (reason or "").startswith("Unauthorized")
    assert received == 0  # no connection_ack, no event
    assert (await feed_state(replica_a))["subscribers"] == 0


async def test_a_sales_subscriber_receives_transfers_and_nothing_of_the_funnel_before(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    async with (
        graphql_websocket(replica_a.url, token=token_for("sales")) as sales,
        graphql_websocket(replica_a.url) as manager,
    ):
        await subscribe(sales, replica_a)
        await subscribe(manager, replica_a, subscribers=2)
        first = await create_lead(through_b, domain="fintech")
        await transfer(through_b, first)
        lost = await create_lead(through_b)
        assert await advance(through_b, lost, "LOST") == []
        second = await create_lead(through_b, domain="fintech")
        await transfer(through_b, second)

        assert len(await manager.changes(10)) == 10
        # Every change of `lost` and the funnel of `second` came between these two.
        transfers = await sales.changes(2)
        assert moves(transfers) == [
            (first, "QUALIFIED", "TRANSFERRED"),
            (second, "QUALIFIED", "TRANSFERRED"),
        ]
        # The lead is readable to sales, with its whole history (as `lead(id:)` shows it).
        assert transfers[0]["lead"]["stage"] == "TRANSFERRED"
        assert [change["to"] for change in transfers[0]["lead"]["history"]] == [
            "NEW",
            "CONTACTED",
            "QUALIFIED",
            "TRANSFERRED",
        ]

    # A replay leaves out the same events: the funnel of `first` would come first.
    async with graphql_websocket(replica_a.url, token=token_for("sales")) as sales:
        await sales.subscribe(LEAD_STAGE_CHANGED, {"after": encode_change_cursor(0)})
        assert moves(await sales.changes(2)) == moves(transfers)


async def test_a_sales_subscriber_cannot_watch_a_lead_before_its_transfer(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    lead = await create_lead(through_b)
    async with graphql_websocket(replica_a.url, token=token_for("sales")) as sales:
        operation_id = await sales.subscribe(LEAD_STAGE_CHANGED, {"leadId": lead})
        message = await sales.receive()
    assert message["id"] == operation_id
    assert message["type"] == "error"
    # As for an ID never issued: its existence does not leak.
    assert [error["extensions"] for error in message["payload"]] == [
        {"code": "NOT_FOUND", "field": ["leadId"]}
    ]


async def test_sigterm_closes_an_active_subscription_with_1001_and_stops_the_feed(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
):
    server = ServerProcess(api_env(database_url), tmp_path / "server.log").start()
    try:
        async with graphql_websocket(server.url) as ws:
            await subscribe(ws, server)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            code, reason, received = await ws.closed()
        assert (code, reason, received) == (1001, "shutting down", 0)
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert server.process.wait(timeout=TIMEOUT) in (0, -signal.SIGTERM)
        # The lifespan shutdown (which stops the feed and its LISTEN connection) ran to its end.
        assert "Application shutdown complete" in server.log()
    finally:
        server.stop()


# --- fan-out: one execution per event per audience (api/audiences.py) ----------------------

BOARD = """subscription($leadId: ID, $after: String) {
  leadStageChanged(leadId: $leadId, after: $after) { lead { id stage } from to at cursor } }"""
# Variables used by the event's selection: they, unlike leadId and after, decide the payload.
DETAIL = """subscription($leadId: ID, $after: String, $merged: Boolean!, $withAt: Boolean!) {
  leadStageChanged(leadId: $leadId, after: $after) {
    lead {
      id stage businessDomain score { value }
      history(includeMerged: $merged) { from to by { id } }
      sale { id stage } owner { id } createdBy { id }
    }
    from to at @include(if: $withAt) cursor
  }
}"""


async def test_shared_execution_delivers_what_each_subscribers_own_execution_would(
    replica_a: ServerProcess, through_b: GraphQLClient, db: asyncpg.Connection
):
    # Leads made ready before the subscribers come; each then changes exactly once, so the
    # lead an event shows is the same when it goes out live and when it is replayed later
    # (a replay is executed for its subscriber alone).
    to_transfer = await create_lead(through_b, domain="fintech")
    analyzed = await through_b(ANALYZE_LEAD, {"input": {"leadId": to_transfer}})
    assert analyzed["analyzeLead"]["errors"] == []
    for stage in ("CONTACTED", "QUALIFIED"):
        assert await advance(through_b, to_transfer, stage) == []
    to_contact = await create_lead(through_b)
    to_lose = await create_lead(through_b)
    before = encode_change_cursor(await db.fetchval("SELECT max(id) FROM stage_changes"))

    # (role, document, variables, how many of the window's four changes it gets)
    configurations: list[tuple[str, str, dict[str, Any], int]] = []
    for role in ("manager", "admin", "sales"):
        sales = role == "sales"
        configurations += [
            (role, BOARD, {}, 1 if sales else 4),
            (role, DETAIL, {"merged": False, "withAt": True}, 1 if sales else 4),
            (role, DETAIL, {"merged": True, "withAt": False}, 1 if sales else 4),
        ]
        if not sales:  # sales may not name a lead before its transfer (NOT_FOUND)
            configurations += [
                (role, BOARD, {"leadId": to_transfer}, 1),
                (role, DETAIL, {"merged": False, "withAt": True, "leadId": to_contact}, 1),
            ]
    async with AsyncExitStack() as stack:
        live: list[tuple[GraphQLWebSocket, str]] = []
        for role, document, variables, _ in configurations:
            for _ in range(2):  # two subscribers asking the same: they share
                ws = await stack.enter_async_context(
                    graphql_websocket(replica_a.url, token=token_for(role))
                )
                live.append((ws, await ws.subscribe(document, variables)))
        # leadId does not split an audience: three per role (BOARD, and DETAIL twice). Each
        # socket gets its live events written straight to it (web/frames.py).
        await wait_for_feed(
            replica_a, subscribers=len(live), audiences=9, directSubscribers=len(live)
        )

        await transfer_qualified(through_b, to_transfer)
        assert await advance(through_b, to_contact, "CONTACTED") == []
        await create_lead(through_b)
        assert await advance(through_b, to_lose, "LOST") == []

        for index, (role, document, variables, count) in enumerate(configurations):
            received = [
                [await next_payload(ws, operation_id) for _ in range(count)]
                for ws, operation_id in live[2 * index : 2 * index + 2]
            ]
            assert received[0] == received[1]
            async with graphql_websocket(replica_a.url, token=token_for(role)) as own:
                operation_id = await own.subscribe(document, {**variables, "after": before})
                replayed = [await next_payload(own, operation_id) for _ in range(count)]
            assert received[0] == replayed, (role, document, variables)
            assert all("errors" not in payload for payload in replayed)


async def next_payload(ws: GraphQLWebSocket, operation_id: str) -> dict[str, Any]:
    message = await ws.receive()
    assert (message["id"], message["type"]) == (operation_id, "next"), message
    return message["payload"]


async def transfer_qualified(gql: GraphQLClient, lead_id: str) -> None:
    assert (await gql(TRANSFER, {"input": {"leadId": lead_id}}))["transferToSales"]["errors"] == []


async def test_a_slow_subscriber_sharing_its_audience_is_cut_off_alone(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    cut_off_before = replica_a.log().count("subscriber too slow")
    async with (
        graphql_websocket(replica_a.url, slow_reader=True) as slow,
        graphql_websocket(replica_a.url) as fast,
    ):
        await slow.subscribe(FAT_EVENT)
        fast_id = await fast.subscribe(FAT_EVENT)
        await wait_for_feed(replica_a, subscribers=2, audiences=1)
        made = 0
        while replica_a.log().count("subscriber too slow") == cut_off_before:
            assert made < 3000, "the slow subscriber was never cut off"
            await create_lead(through_b)
            made += 1
            assert (await fast.next_data(fast_id))["leadStageChanged"]["c0"]

        code, reason, received = await slow.closed()
        assert (code, reason) == (1013, "subscriber too slow")
        assert received < made

        await create_lead(through_b)
        assert (await fast.next_data(fast_id))["leadStageChanged"]["c0"]
        assert await feed_state(replica_a) | {"position": None} == {
            "listening": True,
            "subscribers": 1,
            "audiences": 1,
            "directSubscribers": 1,
            "position": None,
        }


async def test_a_subscriber_joining_mid_stream_with_a_cursor_neither_misses_nor_duplicates(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    received: dict[str, list[dict[str, Any]]] = {"steady": [], "joining": []}

    async def read(ws: GraphQLWebSocket, into: list[dict[str, Any]]) -> None:
        while True:
            into.append(await ws.next_change())

    async with (
        graphql_websocket(replica_a.url) as steady,
        graphql_websocket(replica_a.url) as joining,
    ):
        await subscribe(steady, replica_a)
        reading = [asyncio.create_task(read(steady, received["steady"]))]
        made = [await create_lead(through_b)]
        await eventually(collected(lambda: bool(received["steady"])))
        cursor = received["steady"][0]["cursor"]

        stop = asyncio.Event()

        async def write() -> None:
            while not stop.is_set():
                made.append(await create_lead(through_b))

        writing = asyncio.create_task(write())
        try:
            await eventually(collected(lambda: len(made) >= 10))
            # Joins while changes commit: its replay catches up with the live fan-out.
            await joining.subscribe(LEAD_STAGE_CHANGED, {"after": cursor})
            reading.append(asyncio.create_task(read(joining, received["joining"])))
            await eventually(collected(lambda: len(received["joining"]) >= 10))
            await eventually(collected(lambda: len(made) >= 40))
        finally:
            stop.set()
            await writing
        # A last change: a duplicate in the join would show before it, a gap after it.
        made.append(await create_lead(through_b))
        await eventually(collected(lambda: len(received["steady"]) >= len(made)))
        await eventually(collected(lambda: len(received["joining"]) >= len(made) - 1))
        for task in reading:
            task.cancel()
    assert moves(received["steady"]) == [(lead, None, "NEW") for lead in made]
    assert received["joining"] == received["steady"][1:]


def collected(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """`condition` (on what a test's reader tasks collected) as a check for `eventually`."""

    async def check() -> bool:
        return condition()

    return check


async def test_websocket_messages_are_not_compressed_by_default(replica_a: ServerProcess):
    # The client offers permessage-deflate, as browsers do; the server declines it: compressing
    # costs every socket for every message (docs/subscriptions.md, Compression).
    async with open_websocket(replica_a.url) as ws:
        assert ws.connection.protocol.extensions == []


async def test_a_member_whose_token_expires_is_ended_alone_its_audience_goes_on(
    replica_a: ServerProcess, through_b: GraphQLClient
):
    # Accepted for about three more seconds: issued 27 s past its expiry, within the 30 s leeway.
    brief_token = TEST_TOKENS.issue(Actor("brief", "Brief", Role.MANAGER), timedelta(seconds=-27))
    valid_until = time.time() + 3
    async with (
        graphql_websocket(replica_a.url, token=brief_token) as brief,
        graphql_websocket(replica_a.url) as other,
    ):
        brief_id = await brief.subscribe(LEAD_STAGE_CHANGED)
        other_id = await other.subscribe(LEAD_STAGE_CHANGED)
        await wait_for_feed(replica_a, subscribers=2, audiences=1)
        await eventually(collected(lambda: time.time() > valid_until + 1))

        lead = await create_lead(through_b)
        ended = await brief.receive()
        assert ended["id"] == brief_id
        assert [error["extensions"]["code"] for error in ended["payload"]["errors"]] == [
            "UNAUTHENTICATED"
        ]
        assert await brief.receive() == {"id": brief_id, "type": "complete"}
        assert moves([await other.next_change(other_id)]) == [(lead, None, "NEW")]
