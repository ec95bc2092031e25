"""Webhook deliveries per second, and the main flow's throughput with one endpoint registered
beside none, side by side.

    python -m bench.webhooks                       # both parts
    python -m bench.webhooks --part deliveries --events 2000 --endpoints 1 4
    python -m bench.webhooks --part flow --rounds 2 --duration 15

`deliveries`: a backlog of events (leads created through the API while the receiver holds the
first requests) is released at once; the rate is events delivered per second until the last
arrives, verified by count and unique ids. `flow`: bench.load's flow (16 clients) on a fresh
database and server, alternately without endpoints and with one endpoint subscribed to every
event (its receiver answering 204 in this process), so each pair ran in the same conditions.
Uses CRM_BENCH_DATABASE_URL's server or a private embedded PostgreSQL, as bench.load does.
"""

import argparse
import asyncio
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import uvloop

from bench.http_client import KeepAliveClient
from bench.load import CREATE, LoadPlan, Result, apply_load, bench_headers, server_env
from tests.support.database import database_for_tests, recreate_database, with_database
from tests.support.graphql import token_for
from tests.support.server import ServerProcess
from tests.support.webhooks import ALL_EVENTS, CREATE_WEBHOOK, Receiver

WAIT_S = 300.0


async def register(server: ServerProcess, url: str, events: list[str]) -> None:
    admin = KeepAliveClient(
        "127.0.0.1", server.port, {"Authorization": f"Bearer {token_for('admin')}"}
    )
    try:
        body = await admin.post(CREATE_WEBHOOK, {"input": {"url": url, "events": events}})
    finally:
        await admin.close()
    if "errors" in body or body["data"]["createWebhook"]["errors"]:
        raise RuntimeError(f"createWebhook failed: {body}")


async def delivery_rate(server: ServerProcess, events: int, endpoints: int) -> float:
    receivers = [await Receiver(status=204, hold=asyncio.Event()).start() for _ in range(endpoints)]
    try:
        for receiver in receivers:
            await register(server, receiver.url(), ["LEAD_CREATED"])
        client = KeepAliveClient("127.0.0.1", server.port, bench_headers())
        try:
            for _ in range(events):
                await client.post(CREATE, {"input": {"source": "MANUAL"}})
        finally:
            await client.close()
        start = time.perf_counter()
        for receiver in receivers:
            assert receiver.hold is not None
            receiver.hold.set()
        async with asyncio.timeout(WAIT_S):
            for receiver in receivers:
                await receiver.wait_for(events)
        elapsed = time.perf_counter() - start
        for receiver in receivers:
            ids = {r.id for r in receiver.received}
            if len(ids) != events or len(receiver.received) != events:
                raise RuntimeError(
                    f"{len(receiver.received)} deliveries of {len(ids)} events, not {events} once"
                )
        return events * endpoints / elapsed
    finally:
        for receiver in receivers:
            await receiver.stop()


async def flow_with(server: ServerProcess, endpoint: bool, args: argparse.Namespace) -> Result:
    receiver = await Receiver(status=204).start()
    try:
        if endpoint:
            await register(server, receiver.url(), ALL_EVENTS)
        plan = LoadPlan(
            "flow",
            server.pid,
            "127.0.0.1",
            server.port,
            bench_headers(),
            args.clients,
            args.warmup,
            args.duration,
            subscribers=0,
        )
        result = await apply_load(plan, [])
        if endpoint:  # every committed change is delivered (warm-up included), none lost
            async with asyncio.timeout(WAIT_S):
                await receiver.wait_for(result.changes_committed)
        return result
    finally:
        await receiver.stop()


def fresh_server(database_url: str, log: Path) -> ServerProcess:
    asyncio.run(recreate_database(database_url))
    return ServerProcess(server_env(database_url), log).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["deliveries", "flow", "all"], default="all")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2, help="flow: pairs of runs")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    with ExitStack() as stack:
        if "CRM_BENCH_DATABASE_URL" in os.environ:
            os.environ["CRM_TEST_DATABASE_URL"] = os.environ["CRM_BENCH_DATABASE_URL"]
        database_url = with_database(
            stack.enter_context(database_for_tests()), "crm_bench_webhooks"
        )
        log = Path(tempfile.mkdtemp(prefix="crm-bench-webhooks-")) / "server.log"
        if args.part in ("deliveries", "all"):
            for endpoints in args.endpoints:
                server = fresh_server(database_url, log)
                try:
                    rate = uvloop.run(delivery_rate(server, args.events, endpoints))
                finally:
                    server.stop()
                print(
                    f"deliveries  {endpoints} endpoint(s), {args.events} events each: "
                    f"{rate:8.1f} deliveries/s",
                    flush=True,
                )
        if args.part in ("flow", "all"):
            for round_ in range(1, args.rounds + 1):
                for endpoint in (False, True):
                    server = fresh_server(database_url, log)
                    try:
                        result = uvloop.run(flow_with(server, endpoint, args))
                    finally:
                        server.stop()
                    label = "one endpoint" if endpoint else "no endpoint "
                    print(
                        f"flow round {round_} {label} {result.per_second:8.1f} flows/s  "
                        f"p50 {result.latency_ms['p50']:6.2f} ms  "
                        f"p99 {result.latency_ms['p99']:6.2f} ms  "
                        f"cpu/flow: server {result.cpu_ms_per_unit['server']:.2f} ms "
                        f"postgres {result.cpu_ms_per_unit['postgres']:.2f} ms "
                        f"client {result.cpu_ms_per_unit['client']:.2f} ms  "
                        f"({result.completed} ok, {result.failed} failed)",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
