"""leadStageChanged: commit-to-delivery latency and events delivered per second.

    .venv/bin/python -m bench.subscriptions [--subscribers 0 1 500] [--workers N]
        [--baseline PATH_OR_GIT_REF] [--output PATH]

Starts `crm-graphql serve` on CRM_DATABASE_URL (a scratch database, dropped and created again
for each server) or, when that is unset, on a private embedded PostgreSQL deleted afterwards.
For each subscriber count N it starts a fresh server, opens N WebSocket connections, each
subscribed to every lead's changes, waits until each of them has received an event, then:

- memory: the server's resident memory before the sockets opened and after, per subscriber.
- latency: one createLead at a time through HTTP; the next starts once all N subscribers have
  its event. The commit happens after the transaction starts (the event's `at`, taken by
  PostgreSQL on this machine's clock) and before the mutation's response arrives, so
  "at -> event" bounds commit-to-delivery from above and "response -> event" from below
  (negative when the event beats the HTTP response).
- throughput: WRITERS concurrent createLead loops for THROUGHPUT_SECONDS; every event received
  by every subscriber counts as one delivery. N = 0 gives the writers' rate with nobody
  listening (after 40 warm-up changes, as the latency phase warms the others). Server CPU per
  delivery is steadier than the rates on a shared machine; the client's CPU per delivery is
  reported too, since the subscribers' client (bench/raw_websocket.py) shares the cores.

With `--baseline` (another checkout, e.g. `git worktree add /tmp/base REV`, or a git ref, checked
out into a temporary worktree), each subscriber count runs against the baseline's server, then
against this checkout's, so the figures sit side by side from one run.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.cpu import cpu_seconds, rss_bytes
from bench.raw_websocket import RawSubscriber
from tests.support.database import recreate_database
from tests.support.graphql import token_for
from tests.support.server import ServerProcess, api_env

# Per subscriber count; others use 40. A p99 over 40 changes is the worst change or two.
LATENCY_CHANGES = {1: 200, 500: 200}
THROUGHPUT_SECONDS = 5.0
WRITERS = 4
SUBSCRIPTION = "subscription { leadStageChanged { lead { id stage } from to at cursor } }"
# Nothing resolved after the commit, so the response follows it closely.
CREATE_LEAD = "mutation { createLead(input: {source: PARTNER}) { lead { id } errors { code } } }"


LEAD_ID = b'"lead":{"id":"'
AT = b'"at":"'


class Receivers:
    """Every subscriber's receive times, per lead id. Light on the client's CPU, which shares
    the machine with the server: raw frames (bench/raw_websocket.py), of which only the lead id
    and `at` are read, by position; `at` is parsed after the phase; no wake-up unless a wait is
    due."""

    def __init__(self) -> None:
        self.received: dict[str, list[float]] = defaultdict(list)  # perf_counter
        self.arrivals: list[tuple[float, bytes]] = []  # (time.time(), the event's `at`)
        self.deliveries = 0
        self.sockets_reached: set[int] = set()
        self.failure: Exception | None = None
        self._goal: Callable[[], bool] | None = None
        self._reached = asyncio.Event()

    def reader(self, socket: int) -> Callable[[list[bytes]], None]:
        def on_messages(messages: list[bytes]) -> None:
            now, wall = time.perf_counter(), time.time()
            for message in messages:
                try:
                    lead = message.index(LEAD_ID) + len(LEAD_ID)
                    at = message.index(AT, lead) + len(AT)
                except ValueError:
                    self.failure = RuntimeError(f"unexpected message: {message[:500]!r}")
                    self._reached.set()
                    return
                self.received[message[lead : message.index(b'"', lead)].decode()].append(now)
                self.arrivals.append((wall, message[at : message.index(b'"', at)]))
            self.deliveries += len(messages)
            self.sockets_reached.add(socket)
            if self._goal is not None and self._goal():
                self._reached.set()

        return on_messages

    def after_start(self) -> list[float]:
        """Seconds from each event's transaction start (`at`) to its arrival."""
        return [
            wall - datetime.fromisoformat(at.decode()).timestamp() for wall, at in self.arrivals
        ]

    async def until(self, goal: Callable[[], bool]) -> None:
        self._goal, self._reached = goal, asyncio.Event()
        try:
            if not goal():
                await self._reached.wait()
        finally:
            self._goal = None
        if self.failure is not None:
            raise self.failure


@asynccontextmanager
async def subscriber_socket(url: str, receivers: Receivers, socket: int) -> AsyncIterator[None]:
    """A manager's connection, subscribed. It offers permessage-deflate, as browsers do: each
    server compresses or not as its settings say. Frames are taken as text or binary: a
    baseline from before 2857e39 sends binary ones."""
    subscriber = await RawSubscriber.connect(
        url, token_for("manager"), SUBSCRIPTION, receivers.reader(socket), deflate=True
    )
    try:
        yield
    finally:
        subscriber.close()


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


async def wait_until_every_socket_receives(
    http: httpx.AsyncClient, receivers: Receivers, sockets: int
) -> None:
    """Changes until each socket has had one: then every subscription is live, in every
    worker (each worker's /readyz counts only its own subscribers)."""
    async with asyncio.timeout(300):
        while len(receivers.sockets_reached) < sockets:
            await create_lead(http)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await receivers.until(lambda: len(receivers.sockets_reached) >= sockets)


async def write_for(http: httpx.AsyncClient, seconds: float) -> tuple[int, float]:
    """WRITERS concurrent createLead loops for `seconds`: the changes made, and the seconds
    taken."""
    writes = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def writer() -> None:
        nonlocal writes
        while time.perf_counter() < deadline:
            await create_lead(http)
            writes += 1

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return writes, time.perf_counter() - started


def write_in_own_process(url: str, seconds: float) -> tuple[int, float]:
    """`write_for` in the process of a ProcessPoolExecutor, once each writer's connection is
    open: the writers are other people's browsers, whose responses do not wait while this
    client's loop reads hundreds of sockets' frames."""

    async def write() -> tuple[int, float]:
        headers = {"Authorization": f"Bearer {token_for('manager')}"}
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
            await asyncio.gather(*(create_lead(http) for _ in range(WRITERS)))
            return await write_for(http, seconds)

    return uvloop.run(write())


async def run(
    url: str, server_pid: int, subscribers: int, writers: ProcessPoolExecutor | None
) -> dict[str, Any]:
    receivers = Receivers()
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"subscribers": subscribers}
    async with AsyncExitStack() as stack:
        # Changes are made, and sockets subscribe, as a manager.
        headers = {"Authorization": f"Bearer {token_for('manager')}"}
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, timeout=60, headers=headers)
        )
        await create_lead(http)  # the server's first request warms it up
        rss_before = rss_bytes(server_pid)
        for socket in range(subscribers):
            await stack.enter_async_context(subscriber_socket(url, receivers, socket))
        if subscribers:
            await wait_until_every_socket_receives(http, receivers, subscribers)
            rss_after = rss_bytes(server_pid)
            result["server_memory"] = {
                "rss_mib_before": round(rss_before / 2**20, 1),
                "rss_mib_after": round(rss_after / 2**20, 1),
                "kib_per_subscriber": round((rss_after - rss_before) / 1024 / subscribers, 1),
            }
            from_response = []
            receivers.arrivals = []
            for _ in range(LATENCY_CHANGES.get(subscribers, 40)):
                lead_id, answered = await create_lead(http)
                async with asyncio.timeout(60):
                    await receivers.until(
                        lambda lead_id=lead_id: len(receivers.received[lead_id]) >= subscribers
                    )
                from_response += [t - answered for t in receivers.received[lead_id]]
            result["latency_changes"] = len(from_response) // subscribers
            result["commit_to_event_at_most"] = percentiles(receivers.after_start())
            result["commit_to_event_at_least"] = percentiles(from_response)
        else:
            # The same warm-up as the latency phase gives the others (pooled connections,
            # prepared statements), so the rate with nobody listening compares like for like.
            for _ in range(40):
                await create_lead(http)

        delivered_before = receivers.deliveries
        receivers.arrivals = []
        cpu_before = cpu_seconds(server_pid)
        started = time.perf_counter()
        if writers is None:
            writes, writing = await write_for(http, THROUGHPUT_SECONDS)
        else:
            writes, writing = await asyncio.get_running_loop().run_in_executor(
                writers, write_in_own_process, url, THROUGHPUT_SECONDS
            )
        # Until every subscriber has every event.
        expected = delivered_before + writes * subscribers
        async with asyncio.timeout(300):
            await receivers.until(lambda: receivers.deliveries >= expected)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(server_pid)
    server_cpu = cpu_after["server"] - cpu_before["server"]
    client_cpu = cpu_after["client"] - cpu_before["client"]
    deliveries = writes * subscribers
    result["throughput"] = {
        "seconds": round(elapsed, 2),
        "changes": writes,
        "changes_per_s": round(writes / writing, 1),
        "events_delivered_per_s": round(deliveries / elapsed, 1),
        "server_cpu_ms_per_change": round(server_cpu * 1000 / max(writes, 1), 2),
        "server_cpu_us_per_delivery": round(server_cpu * 1e6 / deliveries, 1)
        if deliveries
        else None,
        "client_cpu_s": round(client_cpu, 2),
        "client_cpu_us_per_delivery": round(client_cpu * 1e6 / deliveries, 1)
        if deliveries
        else None,
    }
    if subscribers:
        # While the writers go flat out: what a board shows when the whole floor is busy.
        result["throughput"]["commit_to_event_at_most"] = percentiles(receivers.after_start())
    result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def database_url(scratch: Path) -> str:
    configured = os.environ.get("CRM_DATABASE_URL")
    if configured:
        return configured
    from crm_graphql.db.embedded import start_embedded_postgres

    return start_embedded_postgres(scratch, database="crm_bench", cleanup="delete")


@contextmanager
def checkout(path_or_ref: str) -> Iterator[Path]:
    """The baseline's code: a directory as it is, or a git ref checked out for the run."""
    if Path(path_or_ref).is_dir():
        yield Path(path_or_ref).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="crm-baseline-") as parent:
        target = Path(parent) / "checkout"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(target), path_or_ref],
            check=True,
            capture_output=True,
        )
        try:
            yield target
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(target)], check=False)


def measure(
    url: str,
    scratch: Path,
    subscribers: int,
    workers: int,
    code: Path | None,
    deflate: bool,
    writers: ProcessPoolExecutor | None,
) -> dict[str, Any]:
    """One subscriber count on a fresh server and a fresh database (a baseline may not know
    this checkout's migrations): this checkout's code, or the package in `code` (put first on
    the server's import path)."""
    asyncio.run(recreate_database(url))
    # The test token secret; no statement counting, which production does not do either.
    env = api_env(url, CRM_EXPOSE_SQL_COUNT="false")
    if deflate:  # else the server's default
        env["CRM_WS_PER_MESSAGE_DEFLATE"] = "true"
    if code is not None:
        env["PYTHONPATH"] = str(code)
    server = ServerProcess(env, scratch / "server.log", "--workers", str(workers), cwd=code)
    server.start()
    try:
        # The client's loop as the server's: uvloop, lighter on the cores they share.
        return uvloop.run(run(server.url, server.pid, subscribers, writers))
    finally:
        server.stop()


def summary(version: str, run: dict[str, Any]) -> str:
    throughput = run["throughput"]
    line = (
        f"{run['subscribers']:5} subscribers {version:12} "
        f"{throughput['changes_per_s']:7.1f} changes/s "
        f"{throughput['events_delivered_per_s']:9.1f} deliveries/s"
    )
    if run["subscribers"]:
        latency = run["commit_to_event_at_most"]
        loaded = throughput["commit_to_event_at_most"]
        line += (
            f"  commit->event p50 {latency['p50_ms']:7.2f} ms p99 {latency['p99_ms']:7.2f} ms"
            f" (under load {loaded['p50_ms']:.1f} / {loaded['p99_ms']:.1f} ms)"
            f"  server cpu {throughput['server_cpu_us_per_delivery']:6.1f} us/delivery"
            f"  {run['server_memory']['kib_per_subscriber']:.1f} KiB/subscriber"
        )
    return line


def median_of(runs: list[dict[str, Any]], *path: str) -> float:
    """The median over runs of the figure at `path` in each run's result."""
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def medians(runs: list[dict[str, Any]]) -> str:
    """Per version and subscriber count, the median over the rounds; and the share of their
    rate with nobody listening that the writers keep."""
    rounds: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        rounds[run["version"], run["subscribers"]].append(run)
    lines = [f"medians of {max(map(len, rounds.values()))} rounds:"]
    for (version, subscribers), same in rounds.items():
        changes = median_of(same, "throughput", "changes_per_s")
        line = f"{subscribers:5} subscribers {version:12} {changes:7.1f} changes/s"
        if subscribers:
            alone = rounds.get((version, 0))
            if alone:
                kept = changes / median_of(alone, "throughput", "changes_per_s")
                line += f" ({kept:.0%} of the rate with none)"
            loaded = median_of(same, "throughput", "commit_to_event_at_most", "p99_ms")
            line += (
                f" {median_of(same, 'throughput', 'events_delivered_per_s'):9.1f} deliveries/s"
                f"  p99 {median_of(same, 'commit_to_event_at_most', 'p99_ms'):6.2f} ms"
                f" (under load {loaded:.1f} ms)  cpu per delivery:"
                f" server {median_of(same, 'throughput', 'server_cpu_us_per_delivery'):5.1f} us,"
                f" client {median_of(same, 'throughput', 'client_cpu_us_per_delivery'):5.1f} us"
            )
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[0, 1, 500])
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--baseline",
        help="another checkout (a directory) or a git ref: each subscriber count runs against "
        "it, then against this checkout, so both sets of figures come from one run",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="also run this checkout with CRM_WS_PER_MESSAGE_DEFLATE=true (the bench's client "
        "always offers permessage-deflate, as browsers do; otherwise each server does what its "
        "default says: off since the setting exists, on before it)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every subscriber count and version this many times, in turn, and print the "
        "medians: rates on a shared machine drift with the neighbours",
    )
    parser.add_argument(
        "--writers-beside-subscribers",
        action="store_true",
        help="run the writers in the subscribers' process and loop, as before 2026-12-06 "
        "(their responses then wait while that loop reads every socket's frames)",
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/subscriptions.json"))
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crm-bench-")))
        writers = None
        if not args.writers_beside_subscribers:
            writers = stack.enter_context(ProcessPoolExecutor(1, get_context("spawn")))
            writers.submit(int).result()  # started and imported before any measurement
        url = database_url(scratch)
        versions: list[tuple[str, Path | None, bool]] = [("this", None, False)]
        if args.deflate:
            versions.append(("this+deflate", None, True))
        if args.baseline:
            versions.insert(0, ("baseline", stack.enter_context(checkout(args.baseline)), False))
        for _ in range(max(args.rounds, 1)):
            for subscribers in args.subscribers:
                for version, code, deflate in versions:
                    run = measure(url, scratch, subscribers, args.workers, code, deflate, writers)
                    runs.append({"version": version, **run})
                    print(summary(version, run), flush=True)
        if args.rounds > 1:
            print(medians(runs), flush=True)
    result = {
        "benchmark": "subscriptions",
        "command": "python -m bench.subscriptions --subscribers "
        + " ".join(map(str, args.subscribers))
        + (f" --workers {args.workers}" if args.workers != 1 else "")
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + (" --deflate" if args.deflate else "")
        + (f" --rounds {args.rounds}" if args.rounds != 1 else "")
        + (" --writers-beside-subscribers" if args.writers_beside_subscribers else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "writers": WRITERS,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
