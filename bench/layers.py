"""Where the main flow's CPU goes, layer by layer, in one process.

    python -m bench.layers                       # this checkout
    python -m bench.layers --baseline /tmp/base  # and another (from 217cb2d on), interleaved
    python -m bench.layers --instructions --flows 30 --layers http --baseline /tmp/base

Runs the REST service's main flow (create, analyze, advance to CONTACTED and QUALIFIED,
transfer) one flow at a time, through the use cases alone (`services`), through
`schema.execute` (`graphql`), and through the whole ASGI application, request log, body limit
and change feed included (`http`: ASGI messages handed to the app, no sockets), and prints the
CPU time per flow of each: the differences are what the GraphQL layer and the HTTP layer cost,
and what `bench.load`'s server figure adds on top is the sockets, uvicorn and concurrency. On
CRM_BENCH_DATABASE_URL's server or a private embedded PostgreSQL. Each figure is the median of
the rounds: the machine is shared.
"""

import argparse
import asyncio
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

LAYERS = ("services", "graphql", "http")
ROOT = Path(__file__).resolve().parent.parent


async def cpu_per_flow(database_url: str, layer: str, flows: int, warmup: int) -> float:
    # Imported here, in a child process whose import path starts with the measured checkout.
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

    # The use case takes the lead's fields by name since their declaration (LeadFields); a
    # baseline from before takes the business domain alone.
    takes_fields = "given" in inspect.signature(services.leads.create).parameters
    domain: Any = {"business_domain": "x"} if takes_fields else "x"

    async def through_services() -> None:
        leads = services.leads
        lead = await leads.create(actor, LeadSource.PARTNER, domain)
        await leads.analyze(actor, lead.id)
        await leads.advance_stage(actor, lead.id, LeadStage.CONTACTED)
        await leads.advance_stage(actor, lead.id, LeadStage.QUALIFIED)
        await leads.transfer_to_sales(actor, lead.id)

    flows_by_layer = {"services": through_services, "graphql": lambda: graphql_flow(execute)}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        if layer == "http":
            post = await stack.enter_async_context(asgi_application(database_url))
            flows_by_layer["http"] = lambda: graphql_flow(post)
        flow = flows_by_layer[layer]
        for _ in range(warmup):
            await flow()
        started = time.process_time()
        for _ in range(flows):
            await flow()
        return (time.process_time() - started) * 1000 / max(flows, 1)


# Runs one operation (query, variables) and returns its `data`, having checked it has no errors.
Execute = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def graphql_flow(execute: Execute) -> None:
    from bench.load import ADVANCE, ANALYZE, CREATE, TRANSFER

    created = await execute(CREATE, {"input": {"source": "PARTNER", "businessDomain": "x"}})
    lead = {"leadId": created["createLead"]["lead"]["id"]}
    await execute(ANALYZE, {"input": lead})
    await execute(ADVANCE, {"input": {**lead, "to": "CONTACTED"}})
    await execute(ADVANCE, {"input": {**lead, "to": "QUALIFIED"}})
    transferred = await execute(TRANSFER, {"input": lead})
    assert transferred["transferToSales"]["sale"], transferred


@asynccontextmanager
async def asgi_application(database_url: str) -> AsyncIterator[Execute]:
    """The server's ASGI application, started through its lifespan as uvicorn starts it, with
    its request log written (to nowhere), and a function POSTing one operation to it."""
    from crm_graphql.app import create_app
    from crm_graphql.logs import configure_logging
    from tests.support.graphql import token_for
    from tests.support.server import api_env

    os.environ.update(api_env(database_url, CRM_EXPOSE_SQL_COUNT="false"))
    configure_logging("info", "text")
    write_logs_to_nowhere()
    app = create_app()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token_for('manager', sub='bench-layers')}".encode()),
    ]

    started, stopping = asyncio.Event(), asyncio.Event()
    lifespan_messages = [{"type": "lifespan.startup"}]

    async def lifespan_receive() -> dict[str, Any]:
        if lifespan_messages:
            return lifespan_messages.pop()
        await stopping.wait()
        return {"type": "lifespan.shutdown"}

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the application did not start: {message.get('message')}")

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive, lifespan_send)
    )
    startup = asyncio.create_task(started.wait())
    await asyncio.wait({lifespan, startup}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        startup.cancel()
        await lifespan  # raises what stopped the start
        raise RuntimeError("the application's lifespan ended before it started")

    async def post(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps({"query": query, "variables": variables})
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        request = [{"type": "http.request", "body": body, "more_body": False}]
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return request.pop() if request else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        body = orjson.loads(b"".join(chunks))
        assert "errors" not in body, body
        return body["data"]

    try:
        yield post
    finally:
        stopping.set()
        await lifespan


def write_logs_to_nowhere() -> None:
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)


def run_child(
    code: Path, database_url: str, layer: str, flows: int, warmup: int, valgrind: bool = False
) -> subprocess.CompletedProcess[str]:
    """The flows in a fresh process running the checkout in `code`; under valgrind's callgrind
    (which counts the instructions the process executes) when asked."""
    command = [
        sys.executable,
        __file__,
        "--child",
        layer,
        "--database-url",
        database_url,
        "--flows",
        str(flows),
        "--warmup",
        str(warmup),
    ]
    if valgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)])}
    if valgrind:
        # String hashes are salted per process: dict and set layouts, and so the instructions
        # counted, then differ from run to run (the same code counted 9.19 and 9.70 M per flow).
        environment["PYTHONHASHSEED"] = "0"
    return subprocess.run(
        command, cwd=code, env=environment, check=True, capture_output=True, text=True
    )


def measure_in_child(code: Path, database_url: str, layer: str, args: argparse.Namespace) -> float:
    """CPU milliseconds per flow."""
    output = run_child(code, database_url, layer, args.flows, args.warmup).stdout
    return float(output.strip().splitlines()[-1])


def instructions_in_child(
    code: Path, database_url: str, layer: str, args: argparse.Namespace
) -> float:
    """Millions of instructions per flow: the same start with and without the measured flows,
    under callgrind, and the difference divided by the flows. Counted, not timed, so the
    figure does not move with the machine's other load (only with what the flows do)."""

    def collected(flows: int) -> int:
        stderr = run_child(code, database_url, layer, flows, args.warmup, valgrind=True).stderr
        return int(stderr.rsplit("Collected :", 1)[1].split()[0])

    return (collected(args.flows) - collected(0)) / args.flows / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=200, help="measured flows per round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured alternately")
    parser.add_argument("--json", type=Path, help="write the medians here")
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per flow under valgrind instead of timing CPU (one round; "
        "use fewer flows, valgrind runs Python some fifty times slower)",
    )
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
        database_url = with_database(
            stack.enter_context(database_for_tests()),
            os.environ.get("CRM_BENCH_DATABASE", "crm_bench"),
        )
        samples: dict[tuple[str, str], list[float]] = {}
        measure = instructions_in_child if args.instructions else measure_in_child
        unit = "M instructions" if args.instructions else "ms CPU"
        for _ in range(1 if args.instructions else args.rounds):
            for layer in args.layers:
                for version, code in versions:
                    value = measure(code, database_url, layer, args)
                    samples.setdefault((version, layer), []).append(value)
    medians = {f"{v} {layer}": statistics.median(s) for (v, layer), s in samples.items()}
    for (version, layer), values in samples.items():
        print(
            f"{version:8} {layer:8} {statistics.median(values):6.2f} {unit} per flow "
            f"(median of {len(values)}; min {min(values):.2f}, max {max(values):.2f})",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
