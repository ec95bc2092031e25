"""Where the main flow's CPU goes, layer by layer, in one process without HTTP.

    python -m bench.layers                       # this checkout
    python -m bench.layers --baseline /tmp/base  # and another (from 217cb2d on), interleaved

Runs the REST service's main flow (create, analyze, advance to CONTACTED and QUALIFIED,
transfer) one flow at a time, through the use cases alone (`services`) and through
`schema.execute` with the server's extensions (`graphql`), and prints the CPU time per flow
of each: their difference is what the GraphQL layer costs, and what `bench.load`'s server
figure adds on top is HTTP, middleware and logging. On CRM_BENCH_DATABASE_URL's server or a
private embedded PostgreSQL. Each figure is the median of the rounds: the machine is shared.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

LAYERS = ("services", "graphql")
ROOT = Path(__file__).resolve().parent.parent


async def cpu_per_flow(database_url: str, layer: str, flows: int, warmup: int) -> float:
    # Imported here, in a child process whose import path starts with the measured checkout.
    from bench.load import ADVANCE, ANALYZE, CREATE, TRANSFER
    from crm_graphql.api.context import Context
    from crm_graphql.api.schema import create_schema
    from crm_graphql.cli import migrate
    from crm_graphql.db.engine import create_engine
    from crm_graphql.domain.access import Actor, Role
    from crm_graphql.domain.enums import LeadSource, LeadStage
    from crm_graphql.services.container import Services
    from crm_graphql.settings import Settings
    from crm_graphql.tokens import Authentication
    from crm_graphql.web import graphql_http
    from tests.support.database import recreate_database

    await recreate_database(database_url)
    await asyncio.to_thread(migrate, database_url)
    settings = Settings()
    engine = create_engine(settings, database_url)
    services = Services.create(engine, settings)
    # Checkouts before 2026-11-27 noted the operation for the request log in an extension.
    record_operation = getattr(graphql_http, "RecordOperation", None)
    schema = (
        create_schema(settings, extra_extensions=[record_operation])
        if record_operation
        else create_schema(settings)
    )
    actor = Actor(user_id="bench-layers", name="Bench", role=Role.MANAGER)
    authentication = Authentication(actor, datetime.now(UTC) + timedelta(hours=1))

    async def execute(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        result = await schema.execute(
            query, variable_values=variables, context_value=Context(services, authentication)
        )
        assert not result.errors, result.errors
        assert result.data is not None
        return result.data

    async def through_graphql() -> None:
        created = await execute(CREATE, {"input": {"source": "PARTNER", "businessDomain": "x"}})
        lead = {"leadId": created["createLead"]["lead"]["id"]}
        await execute(ANALYZE, {"input": lead})
        await execute(ADVANCE, {"input": {**lead, "to": "CONTACTED"}})
        await execute(ADVANCE, {"input": {**lead, "to": "QUALIFIED"}})
        transferred = await execute(TRANSFER, {"input": lead})
        assert transferred["transferToSales"]["sale"], transferred

    async def through_services() -> None:
        leads = services.leads
        lead = await leads.create(actor, LeadSource.PARTNER, "x")
        await leads.analyze(actor, lead.id)
        await leads.advance_stage(actor, lead.id, LeadStage.CONTACTED)
        await leads.advance_stage(actor, lead.id, LeadStage.QUALIFIED)
        await leads.transfer_to_sales(actor, lead.id)

    flow = through_graphql if layer == "graphql" else through_services
    try:
        for _ in range(warmup):
            await flow()
        started = time.process_time()
        for _ in range(flows):
            await flow()
        return (time.process_time() - started) * 1000 / flows
    finally:
        await engine.dispose()


def measure_in_child(code: Path, database_url: str, layer: str, args: argparse.Namespace) -> float:
    """One measurement in a fresh process running the checkout in `code`."""
    command = [
        sys.executable,
        __file__,
        "--child",
        layer,
        "--database-url",
        database_url,
        "--flows",
        str(args.flows),
        "--warmup",
        str(args.warmup),
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)])}
    output = subprocess.run(
        command, cwd=code, env=environment, check=True, capture_output=True, text=True
    ).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=200, help="measured flows per round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured alternately")
    parser.add_argument("--json", type=Path, help="write the medians here")
    parser.add_argument("--child", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import uvloop

        print(uvloop.run(cpu_per_flow(args.database_url, args.child, args.flows, args.warmup)))
        return

    from tests.support.database import database_for_tests, with_database

    versions = [("this", ROOT)]
    if args.baseline:
        versions.insert(0, ("baseline", args.baseline.resolve()))
    with ExitStack() as stack:
        if "CRM_BENCH_DATABASE_URL" in os.environ:
            os.environ["CRM_TEST_DATABASE_URL"] = os.environ["CRM_BENCH_DATABASE_URL"]
        database_url = with_database(stack.enter_context(database_for_tests()), "crm_bench")
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for layer in LAYERS:
                for version, code in versions:
                    value = measure_in_child(code, database_url, layer, args)
                    samples.setdefault((version, layer), []).append(value)
    medians = {f"{v} {layer}": statistics.median(s) for (v, layer), s in samples.items()}
    for (version, layer), values in samples.items():
        print(
            f"{version:8} {layer:8} {statistics.median(values):6.2f} ms CPU per flow "
            f"(median of {len(values)}; min {min(values):.2f}, max {max(values):.2f})"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
