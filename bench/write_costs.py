"""Where PostgreSQL's CPU goes in the main flow's writes: the flow's seven statements, as a
server sends them for a writer it recorded lately, straight from asyncpg (no server), then with
one part taken out at a time, on a scratch database of their own.

    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.write_costs --seconds 8 --rounds 3

Each variant runs 16 connections (`--connections`) through create, the analysis's read and
its score, two moves, the transfer's read and the transfer, for `--seconds`, with a LISTEN
connection on the changes' channel as a server keeps one, and reports the CPU the database's
backends spent per flow (from /proc: that database's backends only) and flows per second. A
variant removes what it names, so the difference to `as sent` is what that part costs; the
parts changed for a variant (a constraint, a trigger, an index) are put back before the next.
Rounds alternate the variants; the figure is the median.
"""

import argparse
import asyncio
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.cpu import cpu_seconds
from crm_graphql.db import repository as repo
from crm_graphql.db.sql import Sql
from crm_graphql.domain.enums import LeadSource, LeadStage
from crm_graphql.domain.lead import LeadFields
from crm_graphql.domain.lifecycle import lead_stages_that_may_move_to
from crm_graphql.domain.scoring import HeuristicScorer
from tests.support.database import database_for_tests, plain_dsn, recreate_database

WRITER = {
    "writer_id": "bench-writes",
    "writer_name": "Bench",
    "writer_role": "manager",
    "last_seen_resolution": timedelta(minutes=1),
}
SCORER = HeuristicScorer(threshold=0.5)
FIELDS = LeadFields(business_domain="fintech")
AUDIT = {"by": "bench-writes", "note": None, "channel": repo.LEAD_STAGE_CHANNEL}

_NOTIFY = re.compile(r"pg_notify\((\$\d+), json_build_object\([^)]*\)::text\)")
_LOCK = re.compile(r"pg_advisory_xact_lock\((hashtextextended\(\$\d+, 0\))\)")
# The writer CTEs: `due`, `refreshed` and `writer` recording a writer, or `writer` alone.
_WRITER_CTES = re.compile(r"(?:due AS \(.*?)?writer AS \(.*?RETURNING id\n\)", re.DOTALL)


def without_notify(text: str) -> str:
    return _NOTIFY.sub(r"(\1::text IS NULL)", text)


def without_lock(text: str) -> str:
    return _LOCK.sub(r"\1", text)


def without_writer(text: str) -> str:
    """The writer CTEs replaced by one that reads their parameters and touches no table (the
    bench's user exists already)."""

    def stub(match: re.Match[str]) -> str:
        casts: dict[str, str] = {}
        for name, cast in re.findall(r"(\$\d+)(::\w+)?", match.group(0)):
            casts[name] = casts.get(name) or cast
        reads = " AND ".join(
            f"{name}{cast or '::text'} IS NOT NULL" for name, cast in casts.items()
        )
        return f"writer AS (SELECT 1 AS id WHERE {reads})"

    return _WRITER_CTES.sub(stub, text)


@dataclass(frozen=True)
class Variant:
    name: str
    rewrite: Callable[[str], str] = lambda text: text
    ddl: tuple[str, str] | None = None  # (take out, put back)
    # The writes' texts that record their writer (what each write sent before issue 18), not
    # the ones a server sends for a writer it recorded lately (repository.write_as).
    recording: bool = False

    def statement(self, statement: Sql | repo.WriterStatement) -> Sql:
        if isinstance(statement, repo.WriterStatement):
            return statement.recording if self.recording else statement.recorded
        return statement


WEBHOOK_TRIGGER = (
    "DROP TRIGGER stage_changes_webhooks ON stage_changes",
    "CREATE TRIGGER stage_changes_webhooks AFTER INSERT ON stage_changes REFERENCING NEW "
    "TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION webhook_enqueue()",
)
USER_KEYS = (
    "ALTER TABLE stage_changes DROP CONSTRAINT fk_stage_changes_by_users; "
    "ALTER TABLE leads DROP CONSTRAINT fk_leads_created_by_users; "
    "ALTER TABLE leads DROP CONSTRAINT fk_leads_owner_id_users; "
    "ALTER TABLE sales DROP CONSTRAINT fk_sales_transferred_by_users",
    "ALTER TABLE stage_changes ADD CONSTRAINT fk_stage_changes_by_users "
    "FOREIGN KEY (by) REFERENCES users(id); "
    "ALTER TABLE leads ADD CONSTRAINT fk_leads_created_by_users "
    "FOREIGN KEY (created_by) REFERENCES users(id); "
    "ALTER TABLE leads ADD CONSTRAINT fk_leads_owner_id_users "
    "FOREIGN KEY (owner_id) REFERENCES users(id); "
    "ALTER TABLE sales ADD CONSTRAINT fk_sales_transferred_by_users "
    "FOREIGN KEY (transferred_by) REFERENCES users(id)",
)
SEARCH_INDEX = (
    "CREATE TABLE saved_index AS SELECT pg_get_indexdef('ix_leads_search_trgm'::regclass) AS d;"
    " DROP INDEX ix_leads_search_trgm",
    "DO $$ BEGIN EXECUTE (SELECT d FROM saved_index); END $$; DROP TABLE saved_index",
)

VARIANTS = (
    Variant("as sent (a writer recorded lately)"),
    Variant("recording the writer each time (before)", recording=True),
    Variant("without pg_notify", without_notify),
    Variant("without the audit-order lock", without_lock),
    Variant("without the writer CTE (users row)", without_writer),
    Variant(
        "without notify, lock and writer CTE",
        lambda t: without_writer(without_lock(without_notify(t))),
    ),
    Variant("without the foreign keys to users", ddl=USER_KEYS),
    Variant("without the webhook trigger", ddl=WEBHOOK_TRIGGER),
    Variant("without the trigram search index", ddl=SEARCH_INDEX),
)


async def run_flows(pool: asyncpg.Pool, variant: Variant, seconds: float, connections: int) -> int:
    def text(statement: Sql | repo.WriterStatement) -> str:
        return variant.rewrite(variant.statement(statement).text)

    create, read = text(repo._CREATE_LEAD), text(repo._LEAD_BY_ID)
    score, move = text(repo._SAVE_SCORE), text(repo._MOVE_LEAD)
    versioned, transfer = text(repo._LEAD_WITH_VERSION_READ), text(repo._TRANSFER_LEAD)
    deadline = time.perf_counter() + seconds
    flows = 0

    def args(statement: Sql | repo.WriterStatement, **values: Any) -> list[Any]:
        sent = variant.statement(statement)
        return sent.arguments({name: values[name] for name in sent.names})

    async def client() -> None:
        nonlocal flows
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                created = await conn.fetchrow(
                    create,
                    *args(
                        repo._CREATE_LEAD,
                        **WRITER,
                        **AUDIT,
                        **repo.new_lead_values(LeadSource.PARTNER, FIELDS),
                        duplicate_of=None,
                    ),
                )
                lead_id = created["id"]
                row = await conn.fetchrow(read, lead_id)
                lead = repo.lead_from_row(row)
                value = SCORER.score_now(lead.snapshot, datetime.now(UTC))
                await conn.fetchrow(
                    score,
                    *args(
                        repo._SAVE_SCORE,
                        **WRITER,
                        lead_id=lead_id,
                        score_value=value.value,
                        score=repo.json_text(repo.score_to_json(value)),
                        allowed_in=["NEW", "CONTACTED", "QUALIFIED"],
                    ),
                )
                for to in (LeadStage.CONTACTED, LeadStage.QUALIFIED):
                    await conn.fetchrow(
                        move,
                        *args(
                            repo._MOVE_LEAD,
                            **WRITER,
                            **AUDIT,
                            lead_id=lead_id,
                            to_stage=to.value,
                            allowed_from=[s.value for s in lead_stages_that_may_move_to(to)],
                        ),
                    )
                found = await conn.fetchrow(versioned, lead_id)
                await conn.fetchrow(
                    transfer,
                    *args(
                        repo._TRANSFER_LEAD,
                        **WRITER,
                        **AUDIT,
                        lead_id=lead_id,
                        to_stage="TRANSFERRED",
                        version=found["version"],
                        sale_stage="NEW",
                        from_stage="QUALIFIED",
                    ),
                )
                flows += 1

    await asyncio.gather(*(client() for _ in range(connections)))
    return flows


async def measure(
    url: str, database: str, variant: Variant, seconds: float, connections: int
) -> tuple[float, float]:
    """(CPU ms of the database's backends per flow, flows per second)."""
    dsn = plain_dsn(url)
    admin = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(dsn)
    await listener.add_listener(repo.LEAD_STAGE_CHANNEL, lambda *_: None)
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    try:
        if variant.ddl:
            await admin.execute(variant.ddl[0])
        await run_flows(pool, variant, 1.0, connections)  # warm: statements prepared
        before = cpu_seconds(os.getpid(), database)["postgres_backends"]
        flows = await run_flows(pool, variant, seconds, connections)
        after = cpu_seconds(os.getpid(), database)["postgres_backends"]
    finally:
        await pool.close()
        await listener.close()
        if variant.ddl:
            await admin.execute(variant.ddl[1])
        await admin.close()
    return (after - before) * 1000 / max(flows, 1), flows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--connections", type=int, default=16, help="1: each part's own cost, no contention"
    )
    args = parser.parse_args()

    from crm_graphql.cli import migrate
    from tests.support.database import with_database

    if "CRM_BENCH_DATABASE_URL" in os.environ:
        os.environ["CRM_TEST_DATABASE_URL"] = os.environ["CRM_BENCH_DATABASE_URL"]
    database = os.environ.get("CRM_BENCH_DATABASE", "crm_bench") + "_writes"
    with database_for_tests() as server_url:
        url = with_database(server_url, database)
        asyncio.run(recreate_database(url))
        migrate(url)
        asyncio.run(seed_writer(url))
        samples: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                sample = asyncio.run(
                    measure(url, database, variant, args.seconds, args.connections)
                )
                samples.setdefault(variant.name, []).append(sample)
    base = statistics.median(cpu for cpu, _ in samples[VARIANTS[0].name])
    for name, values in samples.items():
        cpu = statistics.median(c for c, _ in values)
        rate = statistics.median(r for _, r in values)
        print(
            f"{name:40} {cpu:5.2f} ms per flow ({cpu - base:+5.2f}), {rate:6.1f} flows/s "
            f"(median of {len(values)}: {', '.join(f'{c:.2f}' for c, _ in values)})",
            flush=True,
        )


async def seed_writer(url: str) -> None:
    """The bench's users row, as its first write would record it."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await conn.execute(repo._RECORD_USER.text, *repo._RECORD_USER.arguments(WRITER))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
