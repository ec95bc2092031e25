"""leadStageChanged: commit-to-delivery latency and events delivered per second.

    .venv/bin/python -m bench.subscriptions [--subscribers 1 500] [--output PATH]

Starts one `crm-graphql serve` on CRM_DATABASE_URL (a scratch database: the run creates leads)
or, when that is unset, on a private embedded PostgreSQL deleted afterwards. For each subscriber
count N it opens N WebSocket connections, each subscribed to every lead's changes, then:

- latency: one createLead at a time through HTTP; the next starts once all N subscribers have
  its event. The commit happens after the transaction starts (the event's `at`, taken by
  PostgreSQL on this machine's clock) and before the mutation's response arrives, so
  "at -> event" bounds commit-to-delivery from above and "response -> event" from below
  (negative when the event beats the HTTP response).
- throughput: WRITERS concurrent createLead loops for THROUGHPUT_SECONDS; every event received
  by every subscriber counts as one delivery.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.graphql import token_for
from tests.support.server import ServerProcess, api_env
from tests.support.subscriptions import GraphQLWebSocket, graphql_websocket

LATENCY_CHANGES = {1: 200, 500: 40}  # per subscriber count; others use 40
THROUGHPUT_SECONDS = 5.0
WRITERS = 4
SUBSCRIPTION = "subscription { leadStageChanged { lead { id stage } from to at cursor } }"
# Nothing resolved after the commit, so the response follows it closely.
CREATE_LEAD = "mutation { createLead(input: {source: PARTNER}) { lead { id } errors { code } } }"


class Receivers:
    """Every subscriber's receive times, per lead id."""

    def __init__(self) -> None:
        self.received: dict[str, list[float]] = defaultdict(list)  # perf_counter
        self.after_start: list[float] = []  # seconds from the transaction's start (`at`)
        self.deliveries = 0
        self.changed = asyncio.Condition()

    async def read(self, ws: GraphQLWebSocket) -> None:
        while True:
            message = json.loads(await ws.connection.recv())
            now, wall = time.perf_counter(), time.time()
            if message["type"] != "next":
                raise RuntimeError(f"unexpected message: {message}")
            event = message["payload"]["data"]["leadStageChanged"]
            self.received[event["lead"]["id"]].append(now)
            self.after_start.append(wall - datetime.fromisoformat(event["at"]).timestamp())
            self.deliveries += 1
            async with self.changed:
                self.changed.notify_all()

    async def wait_for(self, lead_id: str, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: len(self.received[lead_id]) >= count)

    async def wait_for_deliveries(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.deliveries >= count)


async def create_lead(http: httpx.AsyncClient) -> tuple[str, float]:
    response = await http.post("/graphql", json={"query": CREATE_LEAD})
    answered = time.perf_counter()
    return response.json()["data"]["createLead"]["lead"]["id"], answered


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    ms = [s * 1000 for s in ordered]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
    }


async def wait_for_subscribers(http: httpx.AsyncClient, count: int) -> None:
    async with asyncio.timeout(120):
        while True:
            if (await http.get("/readyz")).json()["changeFeed"]["subscribers"] == count:
                return
            await asyncio.sleep(0.1)


async def run(url: str, subscribers: int) -> dict[str, Any]:
    receivers = Receivers()
    load_before = os.getloadavg()[0]
    async with AsyncExitStack() as stack:
        # Changes are made, and sockets subscribe (graphql_websocket's default), as a manager.
        headers = {"Authorization": f"Bearer {token_for('manager')}"}
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, timeout=60, headers=headers)
        )
        readers = []
        for _ in range(subscribers):
            ws = await stack.enter_async_context(graphql_websocket(url))
            await ws.subscribe(SUBSCRIPTION)
            readers.append(asyncio.create_task(receivers.read(ws)))
        await wait_for_subscribers(http, subscribers)

        from_response = []
        for _ in range(LATENCY_CHANGES.get(subscribers, 40)):
            lead_id, answered = await create_lead(http)
            await asyncio.wait_for(receivers.wait_for(lead_id, subscribers), 60)
            from_response += [t - answered for t in receivers.received[lead_id]]
        from_start = receivers.after_start
        receivers.after_start = []

        delivered_before = receivers.deliveries
        writes = 0
        deadline = time.perf_counter() + THROUGHPUT_SECONDS
        started = time.perf_counter()

        async def writer() -> None:
            nonlocal writes
            while time.perf_counter() < deadline:
                await create_lead(http)
                writes += 1

        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        # Until every subscriber has every event.
        await asyncio.wait_for(
            receivers.wait_for_deliveries(delivered_before + writes * subscribers), 120
        )
        elapsed = time.perf_counter() - started
        for reader in readers:
            reader.cancel()
    return {
        "subscribers": subscribers,
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "latency_changes": len(from_response) // subscribers,
        "commit_to_event_at_most": percentiles(from_start),
        "commit_to_event_at_least": percentiles(from_response),
        "throughput": {
            "seconds": round(elapsed, 2),
            "changes": writes,
            "changes_per_s": round(writes / elapsed, 1),
            "events_delivered_per_s": round(writes * subscribers / elapsed, 1),
        },
    }


def database_url(scratch: Path) -> str:
    configured = os.environ.get("CRM_DATABASE_URL")
    if configured:
        return configured
    from crm_graphql.db.embedded import start_embedded_postgres

    return start_embedded_postgres(scratch, database="crm_bench", cleanup="delete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 500])
    parser.add_argument("--output", type=Path, default=Path("bench/results/subscriptions.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as scratch:
        url = database_url(Path(scratch))
        # The test token secret; no statement counting, which production does not do either.
        env = api_env(url, CRM_EXPOSE_SQL_COUNT="false")
        server = ServerProcess(env, Path(scratch) / "server.log").start()
        try:
            runs = [asyncio.run(run(server.url, n)) for n in args.subscribers]
        finally:
            server.stop()
    result = {
        "benchmark": "subscriptions",
        "command": "python -m bench.subscriptions --subscribers "
        + " ".join(map(str, args.subscribers)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "writers": WRITERS,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
