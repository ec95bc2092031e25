"""Webhooks end to end: two server processes (replicas) on a database of their own deliver to
real HTTP receivers on 127.0.0.1. Retries are fast here (0.2 s doubling, 6 attempts), so a
receiver that is down for a moment is retried within the test; nothing here measures time."""

import asyncio
import base64
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks import Webhook

from crm_graphql.api.ids import decode_global_id
from crm_graphql.db import webhooks as webhooks_db
from tests.support.database import plain_dsn, recreate_database, with_database
from tests.support.graphql import ADVANCE_SALE, MERGE_LEADS, GraphQLClient, token_for
from tests.support.leads import advance, codes, create_lead, ok, transferred_lead
from tests.support.server import ServerProcess, api_env
from tests.support.subscriptions import eventually
from tests.support.webhooks import (
    CREATE_WEBHOOK,
    DELETE_WEBHOOK,
    REDELIVER,
    ROTATE_SECRET,
    UPDATE_WEBHOOK,
    WEBHOOKS,
    Received,
    Receiver,
    create_webhook,
    deliveries,
)

FAST_RETRIES = {
    "CRM_WEBHOOK_POLL_INTERVAL_S": "0.1",
    "CRM_WEBHOOK_RETRY_FIRST_DELAY_S": "0.2",
    "CRM_WEBHOOK_MAX_ATTEMPTS": "6",
    "CRM_DB_POOL_SIZE": "5",  # three servers at most, on a PostgreSQL shared with other suites
}
TABLES = "webhook_endpoints, webhook_deliveries, activities, stage_changes, sales, leads, users"


@pytest.fixture(scope="module")
def webhook_database(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/") + "_webhooks"
    url = with_database(database_url, name)
    asyncio.run(recreate_database(url))
    return url


@pytest.fixture(scope="module")
def replicas(
    webhook_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    folder = tmp_path_factory.mktemp("webhooks")
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: the first migrates
            env = api_env(webhook_database, **FAST_RETRIES)
            started.append(ServerProcess(env, folder / f"replica-{name}.log").start())
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def wdb(
    webhook_database: str, replicas: list[ServerProcess]
) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_dsn(webhook_database))
    await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def clients(
    replicas: list[ServerProcess], wdb: asyncpg.Connection
) -> AsyncIterator[list[GraphQLClient]]:
    """An admin client per replica; `.as_role` for others."""
    async with (
        httpx.AsyncClient(base_url=replicas[0].url, timeout=30) as a,
        httpx.AsyncClient(base_url=replicas[1].url, timeout=30) as b,
    ):
        yield [GraphQLClient(a, token_for("admin")), GraphQLClient(b, token_for("admin"))]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload, verified as a receiver would with the standardwebhooks package."""
    return Webhook(secret).verify(request.body, request.headers)


async def all_delivered(admin: GraphQLClient, webhook_id: str, count: int) -> None:
    async def done() -> bool:
        found = await deliveries(admin, webhook_id)
        return len(found) == count and all(d["status"] == "DELIVERED" for d in found)

    await eventually(done)


def assert_in_order_per_lead(requests: list[Received]) -> None:
    """Each lead's events arrive in the order they happened (ids grow with it)."""
    seen: dict[str, list[int]] = defaultdict(list)
    for request in requests:
        data = request.json()["data"]
        seen[data["leadId"]].append(int(request.id.removeprefix("evt_")))
    for lead_id, ids in seen.items():
        firsts = list(dict.fromkeys(ids))
        assert firsts == sorted(firsts), (lead_id, ids)


async def test_only_admins_manage_webhooks(clients: list[GraphQLClient], receiver: Receiver):
    admin = clients[0]
    for role in ("manager", "sales"):
        body = await admin.as_role(role).raw(
            CREATE_WEBHOOK, {"input": {"url": receiver.url(), "events": ["LEAD_CREATED"]}}
        )
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        body = await admin.as_role(role).raw(WEBHOOKS)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body

    webhook_id, secret = await create_webhook(
        admin, receiver.url(), ["LEAD_CREATED", "LEAD_CREATED"], description="CRM chat"
    )
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    listed = (await admin(WEBHOOKS))["webhooks"]
    assert listed["totalCount"] == 1
    node = listed["edges"][0]["node"]
    assert (node["id"], node["url"], node["events"], node["description"]) == (
        webhook_id,
        receiver.url(),
        ["LEAD_CREATED"],
        "CRM chat",
    )
    assert "secret" not in node

    updated = await admin(
        UPDATE_WEBHOOK,
        {"input": {"webhookId": webhook_id, "events": ["LEADS_MERGED"], "description": None}},
    )
    webhook = ok(updated["updateWebhook"])["webhook"]
    assert (webhook["events"], webhook["description"], webhook["url"]) == (
        ["LEADS_MERGED"],
        None,
        receiver.url(),
    )
    rotated = ok(
        (await admin(ROTATE_SECRET, {"input": {"webhookId": webhook_id}}))["rotateWebhookSecret"]
    )
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != secret

    refused = await admin(
        CREATE_WEBHOOK,
        {"input": {"url": "ftp://example.com/x", "events": [], "description": "\x00"}},
    )
    assert sorted(e["field"][0] for e in refused["createWebhook"]["errors"]) == [
        "description",
        "events",
        "url",
    ]
    assert codes(refused["createWebhook"]) == ["INVALID_INPUT"] * 3

    deleted = await admin(DELETE_WEBHOOK, {"input": {"webhookId": webhook_id}})
    assert ok(deleted["deleteWebhook"])["deletedWebhookId"] == webhook_id
    again = await admin(DELETE_WEBHOOK, {"input": {"webhookId": webhook_id}})
    assert codes(again["deleteWebhook"]) == ["NOT_FOUND"]
    assert (await admin(WEBHOOKS))["webhooks"]["totalCount"] == 0


async def test_every_event_arrives_signed_once_in_order_from_two_replicas(
    clients: list[GraphQLClient], receiver: Receiver
):
    a, b = clients
    webhook_id, secret = await create_webhook(a, receiver.url())
    manager = a.as_role("manager")
    lead_id, sale_id = await transferred_lead(manager)  # created, analyzed, 2 moves, transfer
    ok(
        (await b.as_role("sales")(ADVANCE_SALE, {"input": {"saleId": sale_id, "to": "KYC"}}))[
            "advanceSaleStage"
        ]
    )
    keep = (await create_lead(manager, business_domain=None))["id"]
    duplicate = (await create_lead(b.as_role("manager"), business_domain="x.example"))["id"]
    await advance(manager, duplicate, "CONTACTED")
    ok((await a(MERGE_LEADS, {"input": {"keepId": keep, "mergeId": duplicate}}))["mergeLeads"])
    # Many more, through both replicas, so both deliver.
    for i in range(20):
        await create_lead(clients[i % 2].as_role("manager"), business_domain=None)

    expected = 1 + 2 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 20
    requests = await receiver.wait_for(expected)
    await all_delivered(a, webhook_id, expected)
    assert len(receiver.received) == expected  # none twice
    assert len({r.id for r in receiver.received}) == expected
    payloads = [verified(secret, r) for r in requests]
    assert all(p["id"] == r.id for p, r in zip(payloads, requests, strict=True))
    assert_in_order_per_lead(requests)

    by_lead = defaultdict(list)
    for p in sorted(payloads, key=lambda p: int(p["id"][4:])):
        by_lead[p["data"].get("leadId")].append((p["type"], p["data"]))
    history = by_lead[lead_id]
    assert history[:3] == [
        ("LEAD_CREATED", {"leadId": lead_id, "stage": "NEW", "by": "test-manager"}),
        (
            "LEAD_STAGE_CHANGED",
            {
                "leadId": lead_id,
                "from": "NEW",
                "to": "CONTACTED",
                "by": "test-manager",
                "note": None,
            },
        ),
        (
            "LEAD_STAGE_CHANGED",
            {
                "leadId": lead_id,
                "from": "CONTACTED",
                "to": "QUALIFIED",
                "by": "test-manager",
                "note": None,
            },
        ),
    ]
    # The transfer writes both in one statement, so either may come first.
    transfer = {"leadId": lead_id, "saleId": sale_id, "from": "QUALIFIED", "to": "TRANSFERRED"}
    sale_created = {"saleId": sale_id, "leadId": lead_id, "from": None, "to": "NEW"}
    assert sorted(history[3:5]) == [
        ("LEAD_TRANSFERRED", {**transfer, "by": "test-manager"}),
        ("SALE_STAGE_CHANGED", {**sale_created, "by": "test-manager"}),
    ]
    assert history[5:] == [
        (
            "SALE_STAGE_CHANGED",
            {"saleId": sale_id, "leadId": lead_id, "from": "NEW", "to": "KYC", "by": "test-sales"},
        ),
    ]
    assert by_lead[keep][-1] == (
        "LEADS_MERGED",
        {"leadId": keep, "mergedLeadId": duplicate, "stage": "NEW", "by": "test-admin"},
    )
    assert [t for t, _ in by_lead[duplicate]] == [
        "LEAD_CREATED",
        "LEAD_STAGE_CHANGED",
        "LEAD_STAGE_CHANGED",
    ]
    assert by_lead[duplicate][-1][1]["to"] == "LOST"


async def test_receiver_down_then_up_gets_every_event(
    clients: list[GraphQLClient], receiver: Receiver
):
    a = clients[0]
    webhook_id, secret = await create_webhook(
        a, receiver.url(), ["LEAD_CREATED", "LEAD_STAGE_CHANGED"]
    )
    await receiver.stop()
    leads = []
    for i in range(6):
        lead = await create_lead(clients[i % 2].as_role("manager"), business_domain=None)
        await advance(clients[i % 2].as_role("manager"), lead["id"], "CONTACTED", "LOST")
        leads.append(lead["id"])

    async def retried() -> bool:
        found = await deliveries(a, webhook_id)
        return any(d["attemptCount"] >= 2 for d in found)

    await eventually(retried)
    failing = [d for d in await deliveries(a, webhook_id) if d["attemptCount"] >= 1]
    assert all(d["status"] == "PENDING" and d["lastError"] for d in failing)
    assert all(d["nextAttemptAt"] for d in failing)
    await receiver.start()

    await all_delivered(a, webhook_id, 18)
    ids = {r.id for r in receiver.received}
    assert len(ids) == 18
    first_by_id: dict[str, bytes] = {}
    for request in receiver.received:  # a duplicate is the same event, byte for byte
        verified(secret, request)
        assert first_by_id.setdefault(request.id, request.body) == request.body
    assert_in_order_per_lead(receiver.received)


async def test_a_slow_endpoint_does_not_hold_up_another(
    clients: list[GraphQLClient], receiver: Receiver
):
    a, _ = clients
    slow = await Receiver(hold=asyncio.Event()).start()
    try:
        await create_webhook(a, slow.url(), ["LEAD_CREATED"])
        fast_id, _ = await create_webhook(a, receiver.url(), ["LEAD_CREATED"])
        for _ in range(10):
            await create_lead(a.as_role("manager"), business_domain=None)
        # Every event reaches the fast endpoint while the slow one holds its first requests.
        await receiver.wait_for(10)
        await all_delivered(a, fast_id, 10)
        assert slow.received == []
    finally:
        assert slow.hold is not None
        slow.hold.set()
        await slow.stop()


async def test_redirects_are_not_followed(clients: list[GraphQLClient], receiver: Receiver):
    a, _ = clients
    target = await Receiver().start()
    try:
        receiver.status = 307
        receiver.headers = {"location": target.url("/elsewhere")}
        webhook_id, _ = await create_webhook(a, receiver.url(), ["LEAD_CREATED"])
        await create_lead(a.as_role("manager"), business_domain=None)

        async def answered() -> bool:
            found = await deliveries(a, webhook_id)
            return bool(found) and found[0]["lastStatusCode"] == 307

        await eventually(answered)
        (delivery,) = await deliveries(a, webhook_id)
        assert (delivery["status"], delivery["lastError"]) == ("PENDING", "HTTP 307")
        assert target.received == []
    finally:
        await target.stop()


async def test_failed_after_the_last_attempt_then_redelivered(
    clients: list[GraphQLClient], receiver: Receiver
):
    a, _ = clients
    receiver.status = 500
    webhook_id, secret = await create_webhook(a, receiver.url(), ["LEAD_CREATED"])
    await create_lead(a.as_role("manager"), business_domain=None)

    async def failed() -> bool:
        return (await deliveries(a, webhook_id))[0]["status"] == "FAILED"

    await eventually(failed)
    (delivery,) = await deliveries(a, webhook_id)
    assert (delivery["attemptCount"], delivery["lastStatusCode"], delivery["nextAttemptAt"]) == (
        6,
        500,
        None,
    )
    assert len(receiver.received) == 6
    assert len({r.id for r in receiver.received}) == 1

    receiver.status = 200
    body = await a(REDELIVER, {"input": {"deliveryId": delivery["id"]}})
    assert ok(body["redeliverWebhook"])["delivery"]["status"] == "PENDING"
    await all_delivered(a, webhook_id, 1)
    assert receiver.received[-1].id == delivery["eventId"]
    verified(secret, receiver.received[-1])
    # Pending again? Not while it is delivered: a second redelivery is refused only when pending.
    forbidden = await a.as_role("manager").raw(REDELIVER, {"input": {"deliveryId": delivery["id"]}})
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_claim_never_finished_is_retried_by_another_replica(
    clients: list[GraphQLClient], receiver: Receiver, webhook_database: str, wdb: asyncpg.Connection
):
    """What a replica killed mid-attempt leaves behind: a claimed row with no outcome. It is
    due again when its lease ends, and another replica delivers it."""
    a, _ = clients
    await receiver.stop()  # nothing is delivered while the test claims
    webhook_id, secret = await create_webhook(a, receiver.url(), ["LEAD_CREATED"])
    await create_lead(a.as_role("manager"), business_domain=None)
    endpoint = decode_global_id(webhook_id)
    assert endpoint is not None
    engine = create_async_engine(webhook_database)
    try:

        async def claimed() -> bool:
            # The replicas may have attempted it already (refused): wait until it is due.
            async with engine.connect() as conn:
                rows = await webhooks_db.claim_due(conn, endpoint[1], 10, timedelta(seconds=1))
            return len(rows) == 1

        await eventually(claimed)
    finally:
        await engine.dispose()
    await receiver.start()
    (request,) = await receiver.wait_for(1)
    verified(secret, request)
    await all_delivered(a, webhook_id, 1)


async def test_production_refuses_urls_reaching_internal_addresses(
    webhook_database: str,
    clients: list[GraphQLClient],
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
):
    env = api_env(
        webhook_database,
        CRM_ENV="production",
        CRM_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        **FAST_RETRIES,
    )
    log = tmp_path_factory.mktemp("webhooks-production") / "server.log"
    production = ServerProcess(env, log).start()
    try:
        async with httpx.AsyncClient(base_url=production.url, timeout=30) as http:
            admin = GraphQLClient(http, token_for("admin"))
            for url, why in [
                (f"https://localhost:{receiver.port}/hook", "non-public address (127.0.0.1)"),
                (f"https://[::1]:{receiver.port}/hook", "non-public address (::1)"),
                ("https://169.254.169.254/latest/meta-data/", "non-public address"),
                ("https://10.0.0.7/hook", "non-public address"),
                ("https://192.168.0.1/hook", "non-public address"),
                (f"http://localhost:{receiver.port}/hook", "must use https"),
            ]:
                data = await admin(
                    CREATE_WEBHOOK, {"input": {"url": url, "events": ["LEAD_CREATED"]}}
                )
                (error,) = data["createWebhook"]["errors"]
                assert (error["code"], error["field"]) == ("INVALID_INPUT", ["url"]), url
                assert why in error["message"], (url, error["message"])
                assert data["createWebhook"]["webhook"] is None
            assert (await admin(WEBHOOKS))["webhooks"]["totalCount"] == 0

            # A named host is allowed, http included; its deliveries arrive.
            webhook_id, secret = await create_webhook(admin, receiver.url(), ["LEAD_CREATED"])
            await create_lead(admin.as_role("manager"), business_domain=None)
            (request,) = await receiver.wait_for(1)
            verified(secret, request)
            await all_delivered(admin, webhook_id, 1)
    finally:
        production.stop()


async def test_a_replica_killed_mid_delivery_leaves_the_event_to_another(
    database_url: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
):
    """On a database of its own, one replica (attempts of at most 3 s, so a lease of 33 s)
    is killed (SIGKILL) while its request waits at the receiver; a replica started after it
    delivers the event once the lease has run out, with the same id."""
    url = with_database(database_url, urlsplit(database_url).path.lstrip("/") + "_webhook_kill")
    await recreate_database(url)
    settings = {
        **FAST_RETRIES,
        "CRM_WEBHOOK_CONNECT_TIMEOUT_S": "1",
        "CRM_WEBHOOK_READ_TIMEOUT_S": "1",
    }
    folder = tmp_path_factory.mktemp("webhook-kill")
    first = ServerProcess(api_env(url, **settings), folder / "first.log").start()
    second: ServerProcess | None = None
    receiver.hold = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            admin = GraphQLClient(http, token_for("admin"))
            _, secret = await create_webhook(admin, receiver.url(), ["LEAD_CREATED"])
            await create_lead(admin.as_role("manager"), business_domain=None)
            await receiver.wait_seen(1)  # the first replica is mid-delivery
        assert first.process is not None
        first.process.kill()
        first.process.wait()
        receiver.hold.set()  # its held request completes into a closed connection

        second = ServerProcess(api_env(url, **settings), folder / "second.log").start()
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
            admin = GraphQLClient(http, token_for("admin"))
            requests = await receiver.wait_for(2)
            assert {r.id for r in requests} == {requests[0].id}  # the same event again
            assert requests[0].body == requests[1].body
            verified(secret, requests[1])
            (webhook,) = (await admin(WEBHOOKS))["webhooks"]["edges"]
            await all_delivered(admin, webhook["node"]["id"], 1)
            (delivery,) = await deliveries(admin, webhook["node"]["id"])
            assert delivery["attemptCount"] == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()
