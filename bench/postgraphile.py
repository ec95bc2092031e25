"""Reads side by side with PostGraphile V4 on one database, this server once with its general
(graphql-core) path only and once with its compiled read path (issue 18).

    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python -m bench.postgraphile --leads 2000 --rounds 3 --seconds 8

On that server it drops and creates the database CRM_BENCH_DATABASE (crm_bench_peer by
default; give each concurrent run its own).

Seeds leads through this server's API (half of them analyzed, advanced and transferred), starts
two of this server's processes on the same database, one with CRM_COMPILED_READS=false
("general", the path before issue 18) and one with it on ("compiled"), and PostGraphile V4
(pinned in bench/postgraphile/package-lock.json, installed here with `npm ci` when absent) with
no plugins; checks that all three return the same data and counts the SQL statements each of
ours sends per query (in this process, with statement counting on), then measures three reads
in rounds: each round runs every query against each server in turn, with N keep-alive clients,
the servers' order rotating from round to round. What is compared is CPU per request of each
server's process tree (from /proc), which the shared machine disturbs far less than
throughput; PostgreSQL's CPU per request is printed beside it (it counts every backend on the
machine, so it is only meaningful on a quiet one). This server runs with every feature on
(authentication, per-role visibility, limits, request log); PostGraphile as
`postgraphile -c DB --schema public`.
"""

import argparse
import asyncio
import base64
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.cpu import cpu_seconds
from bench.http_client import KeepAliveClient
from bench.load import ADVANCE, ANALYZE, CREATE, LEADS_PAGE, ONE_LEAD, TRANSFER, bench_headers
from tests.support.database import database_for_tests, recreate_database, with_database
from tests.support.inprocess import app_client
from tests.support.node import NodeMissing, installed_node_project
from tests.support.server import ServerProcess, api_env, free_port

PEER_DIR = Path(__file__).parent / "postgraphile"
PEER_CLI = PEER_DIR / "node_modules" / "postgraphile" / "cli.js"

SCALAR_FIELDS = (
    "id source stage businessDomain activityCount createdAt updatedAt "
    "contactName companyName email phone website"
)
OURS = {
    "leads50": LEADS_PAGE,
    "scalars100": f"query {{ leads(first: 100) {{ edges {{ node {{ {SCALAR_FIELDS} }} }} }} }}",
    "lead": ONE_LEAD,
}
# The same data in PostGraphile's generated schema: the same order (newest first), the lead's
# sale through its unique foreign key, its history through stage_changes.lead_id.
PEERS = {
    "leads50": """query { allLeads(first: 50, orderBy: [CREATED_AT_DESC, ID_DESC]) {
  totalCount edges { cursor node {
  id stage source businessDomain score
  saleByLeadId { id stage }
  stageChangesByLeadId(orderBy: ID_ASC) { nodes { fromStage toStage at } } } } } }""",
    "scalars100": "query { allLeads(first: 100, orderBy: [CREATED_AT_DESC, ID_DESC]) "
    f"{{ edges {{ node {{ {SCALAR_FIELDS} }} }} }} }}",
    "lead": """query($id: BigInt!) { leadById(id: $id) {
  id stage source businessDomain activityCount score
  saleByLeadId { id stage }
  stageChangesByLeadId(orderBy: ID_ASC) { nodes { fromStage toStage at } } } }""",
}
# Dropped and created on the server CRM_BENCH_DATABASE_URL names (as bench.load's).
BENCH_DATABASE = os.environ.get("CRM_BENCH_DATABASE", "crm_bench_peer")
# This server's two configurations: CRM_COMPILED_READS for each.
OUR_PATHS = {"general": "false", "compiled": "true"}
DESCRIPTIONS = {
    "leads50": "50 leads with score, sale and history",
    "scalars100": "100 leads, 12 scalar fields",
    "lead": "one lead by id, nested",
}


def relay_to_row_id(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().partition(":")[2])


@dataclass
class Server:
    name: str
    pid: int
    port: int
    headers: dict[str, str]
    queries: dict[str, str]
    # The variables of the one-lead query, from this server's (Relay) id of the lead.
    lead_variables: Callable[[str], dict[str, Any]]


@dataclass
class Measurement:
    requests: int
    seconds: float
    server_cpu_s: float
    postgres_cpu_s: float

    def server_ms(self) -> float:
        return self.server_cpu_s * 1000 / max(self.requests, 1)

    def postgres_ms(self) -> float:
        return self.postgres_cpu_s * 1000 / max(self.requests, 1)


async def seed(server: Server, count: int, concurrency: int = 8) -> list[str]:
    """`count` leads with contact data; every other one taken through the whole flow."""

    async def make(client: KeepAliveClient, index: int) -> str:
        lead_input = {
            "source": ["PARTNER", "MANUAL", "SCANNER"][index % 3],
            "businessDomain": "retail" if index % 4 else None,
            "contactName": f"Contact {index}",
            "companyName": f"Company {index} GmbH",
            "email": f"contact{index}@company{index}.example",
            "phone": f"+4930{1_000_000 + index}",
            "website": f"company{index}.example",
        }
        body = await client.post(CREATE, {"input": lead_input})
        payload = body["data"]["createLead"]
        if payload["errors"]:
            raise RuntimeError(f"seeding failed: {payload['errors']}")
        lead_id: str = payload["lead"]["id"]
        if index % 2 == 0:
            for query, variables in (
                (ANALYZE, {"leadId": lead_id}),
                (ADVANCE, {"leadId": lead_id, "to": "CONTACTED"}),
                (ADVANCE, {"leadId": lead_id, "to": "QUALIFIED"}),
                (TRANSFER, {"leadId": lead_id}),
            ):
                await client.post(query, {"input": variables})
        return lead_id

    async def worker(indexes: range) -> list[str]:
        client = KeepAliveClient("127.0.0.1", server.port, server.headers)
        try:
            return [await make(client, index) for index in indexes]
        finally:
            await client.close()

    parts = await asyncio.gather(
        *(worker(range(start, count, concurrency)) for start in range(concurrency))
    )
    return [lead_id for part in parts for lead_id in part]


async def fetch(server: Server, scenario: str, variables: dict[str, Any]) -> dict[str, Any]:
    client = KeepAliveClient("127.0.0.1", server.port, server.headers)
    try:
        body = await client.post(server.queries[scenario], variables)
    finally:
        await client.close()
    if "errors" in body:
        raise RuntimeError(f"{server.name} {scenario}: {body['errors']}")
    return body["data"]


def normalised_lead(node: dict[str, Any], ours: bool) -> dict[str, Any]:
    """One lead from either server in one shape: row ids, parsed timestamps, history pairs."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "id":
            out["id"] = relay_to_row_id(value) if ours else int(value)
        elif key in ("createdAt", "updatedAt"):
            out[key] = datetime.fromisoformat(value)
        elif key == "score":
            out["scored"] = value is not None
        elif key in ("sale", "saleByLeadId"):
            out["sale"] = value and (
                relay_to_row_id(value["id"]) if ours else int(value["id"]),
                value["stage"],
            )
        elif key == "history":
            out["history"] = [(c["from"], c["to"], datetime.fromisoformat(c["at"])) for c in value]
        elif key == "stageChangesByLeadId":
            out["history"] = [
                (c["fromStage"], c["toStage"], datetime.fromisoformat(c["at"]))
                for c in value["nodes"]
            ]
        else:
            out[key] = value
    return out


async def check_same_data(ours: Server, peer: Server, lead_ids: list[str]) -> None:
    """`ours` and `peer` return the same leads, sales and histories for each query."""
    for scenario in ("leads50", "scalars100"):
        mine = await fetch(ours, scenario, {})
        theirs = await fetch(peer, scenario, {})
        mine_nodes = [normalised_lead(e["node"], True) for e in mine["leads"]["edges"]]
        their_nodes = [normalised_lead(e["node"], False) for e in theirs["allLeads"]["edges"]]
        if mine_nodes != their_nodes:
            raise SystemExit(f"{scenario}: the servers return different leads")
    for lead_id in random.sample(lead_ids, min(20, len(lead_ids))):
        mine = await fetch(ours, "lead", ours.lead_variables(lead_id))
        theirs = await fetch(peer, "lead", peer.lead_variables(lead_id))
        if normalised_lead(mine["lead"], True) != normalised_lead(theirs["leadById"], False):
            raise SystemExit(f"lead {lead_id}: the servers return different data")


async def load(
    server: Server, scenario: str, lead_ids: list[str], clients: int, seconds: float
) -> Measurement:
    query = server.queries[scenario]
    lead_variables = [server.lead_variables(lead_id) for lead_id in lead_ids]
    deadline = time.perf_counter() + seconds
    completed = 0

    async def worker() -> None:
        nonlocal completed
        client = KeepAliveClient("127.0.0.1", server.port, server.headers)
        try:
            while time.perf_counter() < deadline:
                variables = random.choice(lead_variables) if scenario == "lead" else {}
                body = await client.post(query, variables)
                if "errors" in body:
                    raise RuntimeError(f"{server.name} {scenario}: {body['errors']}")
                completed += 1
        finally:
            await client.close()

    before = cpu_seconds(server.pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    after = cpu_seconds(server.pid)
    return Measurement(
        completed,
        elapsed,
        after["server"] - before["server"],
        after["postgres"] - before["postgres"],
    )


@contextmanager
def peer_process(database_url: str, log: Path) -> Iterator[tuple[int, int]]:
    """PostGraphile V4 on `database_url`: (pid, port), once it answers."""
    try:
        node = installed_node_project(PEER_DIR, "postgraphile/cli.js")
    except NodeMissing as missing:
        raise SystemExit(f"{missing} (PostGraphile)") from None
    port = free_port()
    plain_url = database_url.replace("postgresql+asyncpg://", "postgres://")
    command = [node, str(PEER_CLI), "-c", plain_url, "--schema", "public"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--disable-query-log"]
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"PostGraphile did not start:\n{log.read_text()}")
            try:
                httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"}, timeout=1
                ).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(20)


async def statements_per_query(database_url: str, lead_id: str) -> dict[str, dict[str, int]]:
    """The SQL statements each of our paths sends for each query: one request each, through
    an app in this process with statement counting on (what tests/integration counts)."""
    counted: dict[str, dict[str, int]] = {}
    for path, compiled in OUR_PATHS.items():
        async with app_client(database_url, compiled_reads=compiled == "true") as http:
            counted[path] = {}
            for scenario, query in OURS.items():
                variables = {"id": lead_id} if scenario == "lead" else {}
                response = await http.post(
                    "/graphql",
                    json={"query": query, "variables": variables},
                    headers=bench_headers(),
                )
                counted[path][scenario] = response.json()["extensions"]["sqlStatements"]
    return counted


async def compare(
    servers: list[Server], args: argparse.Namespace, database_url: str
) -> tuple[dict[str, dict[str, list[Measurement]]], dict[str, dict[str, int]]]:
    ours = [server for server in servers if server.name in OUR_PATHS]
    peer = next(server for server in servers if server.name not in OUR_PATHS)
    lead_ids = await seed(ours[0], args.leads)
    for server in ours:
        await check_same_data(server, peer, lead_ids)
    print(f"seeded {len(lead_ids)} leads; the servers return the same data", flush=True)
    statements = await statements_per_query(database_url, random.choice(lead_ids))
    for server in servers:  # warm them all: connections, caches, plans, JIT
        for scenario in OURS:
            await load(server, scenario, lead_ids, args.clients, 2.0)
    results: dict[str, dict[str, list[Measurement]]] = {
        scenario: {server.name: [] for server in servers} for scenario in OURS
    }
    for round_number in range(args.rounds):
        shift = round_number % len(servers)
        order = servers[shift:] + servers[:shift]
        for scenario in OURS:
            for server in order:
                measured = await load(server, scenario, lead_ids, args.clients, args.seconds)
                results[scenario][server.name].append(measured)
                print(
                    f"round {round_number + 1} {scenario:10} {server.name:12} "
                    f"{measured.requests / measured.seconds:7.1f} req/s  "
                    f"server {measured.server_ms():5.2f} ms CPU/request  "
                    f"postgres {measured.postgres_ms():5.2f} ms",
                    flush=True,
                )
    return results, statements


def report(
    results: dict[str, dict[str, list[Measurement]]], statements: dict[str, dict[str, int]]
) -> None:
    print(
        "\nmedians over the rounds: server CPU per request, requests/s, PostgreSQL CPU per "
        "request; ratio = ours / PostGraphile; statements = SQL statements per request"
    )
    for scenario, by_server in results.items():
        peer = by_server["postgraphile"]
        peer_ms = statistics.median(m.server_ms() for m in peer)
        print(f"{DESCRIPTIONS[scenario]}:")
        for name, measured in by_server.items():
            server_ms = statistics.median(m.server_ms() for m in measured)
            rate = statistics.median(m.requests / m.seconds for m in measured)
            postgres_ms = statistics.median(m.postgres_ms() for m in measured)
            line = (
                f"  {name:12} {server_ms:6.2f} ms {rate:7.1f} req/s  postgres {postgres_ms:5.2f} ms"
            )
            if name in OUR_PATHS:
                line += (
                    f"  ratio {server_ms / peer_ms:5.2f}x  statements {statements[name][scenario]}"
                )
            print(line)
        general = statistics.median(m.server_ms() for m in by_server["general"])
        compiled = statistics.median(m.server_ms() for m in by_server["compiled"])
        print(f"  compiled / general: {compiled / general:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000, help="leads seeded through the API")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per query, server and round")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    args = parser.parse_args()

    with ExitStack() as stack:
        if "CRM_BENCH_DATABASE_URL" in os.environ:
            os.environ["CRM_TEST_DATABASE_URL"] = os.environ["CRM_BENCH_DATABASE_URL"]
        database_url = with_database(stack.enter_context(database_for_tests()), BENCH_DATABASE)
        asyncio.run(recreate_database(database_url))
        logs = Path(tempfile.mkdtemp(prefix="crm-bench-peer-"))
        servers = []
        for path, compiled in OUR_PATHS.items():
            settings = {"CRM_EXPOSE_SQL_COUNT": "false", "CRM_COMPILED_READS": compiled}
            ours = ServerProcess(api_env(database_url, **settings), logs / f"{path}.log")
            ours.start()  # the first applies the migrations before PostGraphile reads the schema
            stack.callback(ours.stop)
            servers.append(
                Server(path, ours.pid, ours.port, bench_headers(), OURS, lambda id_: {"id": id_})
            )
        peer_pid, peer_port = stack.enter_context(peer_process(database_url, logs / "peer.log"))
        servers.append(
            Server(
                "postgraphile",
                peer_pid,
                peer_port,
                {},
                PEERS,
                lambda id_: {"id": str(relay_to_row_id(id_))},
            )
        )
        report(*uvloop.run(compare(servers, args, database_url)))


if __name__ == "__main__":
    main()
