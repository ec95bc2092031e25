"""Load generator: N concurrent clients for a fixed duration after a warm-up.

    python -m bench.load --scenario flow --clients 16 --duration 20
    python -m bench.load --scenario all --json bench/results/load.json
    python -m bench.load --baseline /tmp/base   # side by side with another checkout

Scenarios: `flow` (create, analyze, advance to CONTACTED, advance to QUALIFIED, transfer: the
REST service's main flow), `leads` (a page of 50 leads with sale, history and score), `lead`
(one lead by ID). Starts its own `crm-graphql serve` on CRM_BENCH_DATABASE_URL's server (in the
database CRM_BENCH_DATABASE names, crm_bench by default: it is dropped and created) or on a
private embedded PostgreSQL, so one command measures the real path.

With `--subscribers N` the flow runs while N WebSocket clients follow every lead's stage
changes (leadStageChanged); the run then checks that each of them received every change the
flow committed.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop

from bench.cpu import cpu_seconds
from bench.http_client import KeepAliveClient
from tests.support.database import database_for_tests, recreate_database, with_database
from tests.support.graphql import token_for
from tests.support.server import ServerProcess, api_env
from tests.support.subscriptions import GraphQLWebSocket, graphql_websocket

CREATE = """mutation($input: CreateLeadInput!) {
  createLead(input: $input) { lead { id stage } errors { code } } }"""
ANALYZE = """mutation($input: AnalyzeLeadInput!) {
  analyzeLead(input: $input) { lead { id score { value recommendation } } errors { code } } }"""
ADVANCE = """mutation($input: AdvanceStageInput!) {
  advanceStage(input: $input) { lead { id stage } errors { code } } }"""
TRANSFER = """mutation($input: TransferToSalesInput!) {
  transferToSales(input: $input) { lead { id stage } sale { id stage } errors { code } } }"""
LEADS_PAGE = """query { leads(first: 50) { totalCount edges { cursor node {
  id stage source businessDomain
  score { value recommendation stale }
  sale { id stage }
  history { from to at } } } } }"""
ONE_LEAD = """query($id: ID!) { lead(id: $id) {
  id stage source businessDomain activityCount
  score { value recommendation reasons stale }
  sale { id stage }
  history { from to at } } }"""
FOLLOW_CHANGES = """subscription {
  leadStageChanged { lead { id stage businessDomain } from to at cursor } }"""
SYNCHRONISING_DOMAIN = "bench-synchronise"
CATCH_UP_TIMEOUT_S = 60.0
STRAGGLERS_S = 0.2  # waited after the last subscriber caught up, for late duplicates


@dataclass
class Result:
    scenario: str
    clients: int
    duration_s: float
    completed: int = 0
    failed: int = 0
    per_second: float = 0.0
    unit: str = "requests"
    requests: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    # CPU milliseconds per flow or request while measuring: steadier than throughput.
    cpu_ms_per_unit: dict[str, float] = field(default_factory=dict)
    # With --subscribers: the stage changes the flow committed (warm-up included), the fewest
    # and the most any subscriber received, how long after the load the last one caught up,
    # and what went wrong if any change was not delivered exactly once. (CPU is read when the
    # load stops: fan-out still pending then, see catch_up_ms, is not in it.)
    subscribers: int = 0
    changes_committed: int = 0
    changes_received: tuple[int, int] = (0, 0)
    catch_up_ms: float | None = None
    delivery_failure: str | None = None


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


class Recorder:
    def __init__(self, measure_from: float) -> None:
        self.measure_from = measure_from
        self.latencies: list[float] = []
        self.completed = 0
        self.failed = 0
        self.stage_changes = 0  # committed, warm-up included: what subscribers must receive

    async def timed(self, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        body = await call
        if start >= self.measure_from:
            self.latencies.append((time.perf_counter() - start) * 1000)
        return body


def payload_ok(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    if "errors" in body:
        return None
    data = body["data"][name]
    return None if data.get("errors") else data


async def run_flow(client: KeepAliveClient, rec: Recorder) -> bool:
    created = payload_ok(
        await rec.timed(
            client.post(CREATE, {"input": {"source": "PARTNER", "businessDomain": "fintech"}})
        ),
        "createLead",
    )
    if not created:
        return False
    rec.stage_changes += 1
    lead_id = created["lead"]["id"]
    steps: list[tuple[str, str, dict[str, Any], bool]] = [  # the last: whether the stage moves
        ("analyzeLead", ANALYZE, {"leadId": lead_id}, False),
        ("advanceStage", ADVANCE, {"leadId": lead_id, "to": "CONTACTED"}, True),
        ("advanceStage", ADVANCE, {"leadId": lead_id, "to": "QUALIFIED"}, True),
        ("transferToSales", TRANSFER, {"leadId": lead_id}, True),
    ]
    for name, query, variables, moves_stage in steps:
        if not payload_ok(await rec.timed(client.post(query, {"input": variables})), name):
            return False
        rec.stage_changes += moves_stage
    return True


class Followers:
    """WebSocket clients subscribed to every lead's stage changes, collecting the cursors each
    receives of the load's changes (the leads created to synchronise are told apart by their
    domain). A cursor received twice ends that subscriber's reading as a failure."""

    def __init__(self) -> None:
        self.received: list[set[str]] = []
        self.synchronised: list[bool] = []
        self.readers: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()  # a change received or a subscription ended

    async def open(self, stack: AsyncExitStack, http_url: str, count: int) -> None:
        for index in range(count):
            socket = await stack.enter_async_context(graphql_websocket(http_url))
            await socket.subscribe(FOLLOW_CHANGES)
            self.received.append(set())
            self.synchronised.append(False)
            reader = asyncio.create_task(self.read(socket, index))
            reader.add_done_callback(lambda _: self.changed.set())
            self.readers.append(reader)
            stack.push_async_callback(cancel, reader)  # before its socket closes

    async def read(self, socket: GraphQLWebSocket, index: int) -> None:
        received = self.received[index]
        while True:
            message = json.loads(await socket.connection.recv())
            if message["type"] != "next" or "errors" in message["payload"]:
                raise RuntimeError(f"subscriber {index} got {message}")
            change = message["payload"]["data"]["leadStageChanged"]
            if change["lead"]["businessDomain"] == SYNCHRONISING_DOMAIN:
                self.synchronised[index] = True
            elif change["cursor"] in received:
                raise RuntimeError(f"subscriber {index} got a change twice: {change}")
            else:
                received.add(change["cursor"])
                self.changed.set()

    def ended(self) -> str | None:
        """Why a subscription ended (an error, a duplicate, or closed as too slow), if one has."""
        for reader in self.readers:
            if reader.done():
                return repr(reader.exception()) if not reader.cancelled() else "cancelled"
        return None

    async def synchronise(self, client: KeepAliveClient) -> None:
        """Returns once every subscription is live: each has received a lead created for this.
        A socket may register after such a lead went out, so one is created until each has."""
        async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
            while not all(self.synchronised):
                if reason := self.ended():
                    raise RuntimeError(f"a subscription ended: {reason}")
                body = await client.post(
                    CREATE, {"input": {"source": "MANUAL", "businessDomain": SYNCHRONISING_DOMAIN}}
                )
                if not payload_ok(body, "createLead"):
                    raise RuntimeError(f"creating a lead to synchronise failed: {body}")
                await asyncio.sleep(0.1)

    def counts(self) -> list[int]:
        return [len(received) for received in self.received]

    async def deliveries(self, committed: int) -> tuple[float | None, str | None]:
        """How long until every subscriber had all `committed` changes (None if not within
        CATCH_UP_TIMEOUT_S), and what went wrong if anything did."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                while min(self.counts()) < committed and not self.ended():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return None, f"not all delivered within {CATCH_UP_TIMEOUT_S:.0f} s"
        caught_up_ms = round((time.perf_counter() - start) * 1000, 1)
        await asyncio.sleep(STRAGGLERS_S)  # a late duplicate or extra change still counts
        if reason := self.ended():
            return None, f"a subscription ended: {reason}"
        if max(self.counts()) > committed:
            return caught_up_ms, "a subscriber received more changes than were committed"
        return caught_up_ms, None


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def seed(client: KeepAliveClient, count: int) -> list[str]:
    """Leads in every state, so reads touch scores, sales and histories."""
    ids = []
    for i in range(count):
        body = await client.post(
            CREATE,
            {
                "input": {
                    "source": ["PARTNER", "MANUAL", "SCANNER"][i % 3],
                    "businessDomain": "retail" if i % 4 else None,
                }
            },
        )
        lead_id = body["data"]["createLead"]["lead"]["id"]
        ids.append(lead_id)
        if i % 2 == 0:
            await run_flow_for(client, lead_id)
    return ids


async def run_flow_for(client: KeepAliveClient, lead_id: str) -> None:
    await client.post(ANALYZE, {"input": {"leadId": lead_id}})
    await client.post(ADVANCE, {"input": {"leadId": lead_id, "to": "CONTACTED"}})
    await client.post(ADVANCE, {"input": {"leadId": lead_id, "to": "QUALIFIED"}})
    await client.post(TRANSFER, {"input": {"leadId": lead_id}})


@dataclass(frozen=True)
class LoadPlan:
    scenario: str
    server_pid: int
    host: str
    port: int
    headers: dict[str, str]
    clients: int
    warmup: float
    duration: float
    subscribers: int  # following every lead's stage changes meanwhile
    database: str  # whose backends' CPU is counted apart from the rest of PostgreSQL's


async def measure(plan: LoadPlan) -> Result:
    async with AsyncExitStack() as stack:
        followers = Followers()
        setup = KeepAliveClient(plan.host, plan.port, plan.headers)
        lead_ids = await seed(setup, 120) if plan.scenario in ("leads", "lead") else []
        if plan.subscribers:
            await followers.open(stack, f"http://{plan.host}:{plan.port}", plan.subscribers)
            await followers.synchronise(setup)
        await setup.close()
        result = await apply_load(plan, lead_ids)
        if plan.subscribers:
            result.subscribers = plan.subscribers
            result.catch_up_ms, result.delivery_failure = await followers.deliveries(
                result.changes_committed
            )
            counts = followers.counts()
            result.changes_received = (min(counts), max(counts))
        return result


async def apply_load(plan: LoadPlan, lead_ids: list[str]) -> Result:
    start = time.perf_counter()
    rec = Recorder(measure_from=start + plan.warmup)
    deadline = start + plan.warmup + plan.duration

    async def one_iteration(client: KeepAliveClient) -> bool:
        if plan.scenario == "flow":
            return await run_flow(client, rec)
        if plan.scenario == "leads":
            return "errors" not in await rec.timed(client.post(LEADS_PAGE))
        body = await rec.timed(client.post(ONE_LEAD, {"id": random.choice(lead_ids)}))
        return "errors" not in body and body["data"]["lead"] is not None

    async def worker() -> None:
        client = KeepAliveClient(plan.host, plan.port, plan.headers)
        try:
            while (now := time.perf_counter()) < deadline:
                ok = await one_iteration(client)
                if now >= rec.measure_from:
                    if ok:
                        rec.completed += 1
                    else:
                        rec.failed += 1
        finally:
            await client.close()

    async def cpu_while_measuring() -> dict[str, float]:
        await asyncio.sleep(plan.warmup)
        return cpu_seconds(plan.server_pid, plan.database)

    cpu_before, *_ = await asyncio.gather(
        cpu_while_measuring(), *(worker() for _ in range(plan.clients))
    )
    cpu_after = cpu_seconds(plan.server_pid, plan.database)
    latencies = sorted(rec.latencies)
    return Result(
        scenario=plan.scenario,
        clients=plan.clients,
        duration_s=plan.duration,
        completed=rec.completed,
        failed=rec.failed,
        per_second=round(rec.completed / plan.duration, 1),
        unit="flows" if plan.scenario == "flow" else "requests",
        requests=len(latencies),
        latency_ms={
            "p50": round(percentile(latencies, 0.50), 2),
            "p90": round(percentile(latencies, 0.90), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "mean": round(statistics.fmean(latencies), 2) if latencies else float("nan"),
        },
        cpu_ms_per_unit={
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / max(rec.completed, 1), 2)
            for name in cpu_after
        },
        changes_committed=rec.stage_changes,
    )


def subscriber_summary(result: Result) -> str:
    low, high = result.changes_received
    outcome = (
        f"DELIVERY FAILED: {result.delivery_failure}"
        if result.delivery_failure
        else f"each received every change once, the last {result.catch_up_ms:.0f} ms after "
        "the load stopped"
    )
    return (
        f"{result.subscribers} subscribers: {result.changes_committed} stage changes committed, "
        f"{low} to {high} received per subscriber; {outcome}"
    )


def server_env(database_url: str) -> dict[str, str]:
    # Every feature on, as in production: authentication, audit rows, events, request logs.
    return api_env(database_url, CRM_EXPOSE_SQL_COUNT="false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["flow", "leads", "lead", "all"], default="all")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--subscribers",
        type=int,
        default=0,
        help="WebSocket clients following every lead's stage changes while the flow runs",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another version (e.g. `git worktree add /tmp/base REV`): each "
        "scenario runs against it, then against this one, so the ratio comes from one run",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline: run the two versions alternately this many times each",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.subscribers < 0:
        parser.error("--subscribers must be 0 or more")

    scenarios = ["flow", "leads", "lead"] if args.scenario == "all" else [args.scenario]
    versions: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline:
        versions.insert(0, ("baseline", args.baseline.resolve()))
    versions *= max(args.rounds, 1)
    with ExitStack() as stack:
        if "CRM_BENCH_DATABASE_URL" in os.environ:
            os.environ["CRM_TEST_DATABASE_URL"] = os.environ["CRM_BENCH_DATABASE_URL"]
        server_url = stack.enter_context(database_for_tests())
        database_url = with_database(server_url, os.environ.get("CRM_BENCH_DATABASE", "crm_bench"))
        log = Path(tempfile.mkdtemp(prefix="crm-bench-")) / "server.log"
        results: list[dict[str, Any]] = []
        for scenario in scenarios:
            per_version: dict[str, Result] = {}
            for version, code in versions:
                result = run_scenario(scenario, database_url, log, args, code)
                per_version[version] = result
                results.append({"version": version, **asdict(result)})
                print(
                    f"{scenario:6} {version:8} {result.per_second:8.1f} {result.unit}/s  "
                    f"p50 {result.latency_ms['p50']:6.2f} ms  "
                    f"p99 {result.latency_ms['p99']:6.2f} ms"
                    f"  cpu/{result.unit[:-1]}: server {result.cpu_ms_per_unit['server']:.2f} ms"
                    f" postgres {result.cpu_ms_per_unit['postgres']:.2f} ms"
                    f" (its backends {result.cpu_ms_per_unit['postgres_backends']:.2f} ms)"
                    f" client {result.cpu_ms_per_unit['client']:.2f} ms"
                    f"  ({result.completed} ok, {result.failed} failed, {args.clients} clients)",
                    flush=True,
                )
                if result.subscribers:
                    print(f"{scenario:6} {version:8} {subscriber_summary(result)}", flush=True)
            if "baseline" in per_version and per_version["baseline"].per_second:
                ratio = per_version["this"].per_second / per_version["baseline"].per_second
                print(f"{scenario:6} this / baseline: {ratio:.2f}x", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    failed = [f"{r['scenario']} ({r['version']})" for r in results if r["delivery_failure"]]
    if failed:
        raise SystemExit(f"not every change delivered exactly once in: {', '.join(failed)}")


def run_scenario(
    scenario: str, database_url: str, log: Path, args: argparse.Namespace, code: Path | None
) -> Result:
    """One scenario against a fresh database and a fresh server: this checkout's code, or the
    package in `code` (put first on the server's import path)."""
    asyncio.run(recreate_database(database_url))
    env = server_env(database_url)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    server = ServerProcess(env, log, "--workers", str(args.workers), cwd=code)
    server.start()
    try:
        return uvloop.run(
            measure(
                LoadPlan(
                    scenario,
                    server.pid,
                    "127.0.0.1",
                    server.port,
                    bench_headers(),
                    args.clients,
                    args.warmup,
                    args.duration,
                    subscribers=args.subscribers if scenario == "flow" else 0,
                    database=urlsplit(database_url).path.lstrip("/"),
                )
            )
        )
    finally:
        server.stop()


def bench_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for('manager', sub='bench-manager')}"}


if __name__ == "__main__":
    main()
