"""`crm-graphql`: serve, migrate, export-schema, token, scorer train|evaluate, import."""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.enums import LeadSource
from crm_graphql.logs import configure_logging, logging_config
from crm_graphql.settings import Settings, get_settings
from crm_graphql.tokens import TokenCodec, development_secret, parse_ttl

if TYPE_CHECKING:
    from crm_graphql.scoring.training import Report

logger = logging.getLogger("crm_graphql")

DEVELOPMENT_ACTOR = Actor(user_id="developer", name="Developer", role=Role.MANAGER)
DEVELOPMENT_TOKEN_TTL = timedelta(hours=24)


def resolve_jwt_secret(settings: Settings) -> None:
    """CRM_JWT_SECRET; with no database configured (development), the one kept in data_dir.

    Put into the environment so the server's worker processes sign and check with the same one.
    """
    if settings.jwt_secret is not None:
        return
    if settings.database_url is not None:
        raise SystemExit(
            "CRM_JWT_SECRET is not set: with an external database the server needs a token "
            "secret of at least 32 bytes (e.g. `openssl rand -base64 48`)."
        )
    os.environ["CRM_JWT_SECRET"] = development_secret(settings.data_dir)
    get_settings.cache_clear()


def resolve_database_url(settings: Settings) -> str:
    """The configured server's URL; with none configured, start the embedded one.

    The URL is put into the environment so worker processes and Alembic see the same server.
    """
    if settings.database_url:
        return settings.database_url
    from crm_graphql.db.embedded import start_embedded_postgres

    url = start_embedded_postgres(settings.data_dir)
    exit_cleanly_on_sigterm()
    os.environ["CRM_DATABASE_URL"] = url
    get_settings.cache_clear()
    print(f"Embedded PostgreSQL: data in {settings.data_dir.resolve() / 'pgdata'}", flush=True)
    return url


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM end the process through SystemExit, so atexit stops the embedded server.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again; its default
    action would kill the process before atexit runs and leave PostgreSQL running orphaned.
    """
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "crm_graphql:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


def cmd_migrate(_: argparse.Namespace) -> int:
    migrate(resolve_database_url(get_settings()))
    print("Database schema is at the latest migration.")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from crm_graphql.web.http_protocol import OneSendHttpToolsProtocol

    settings = get_settings()
    resolve_jwt_secret(settings)
    development = settings.database_url is None
    url = resolve_database_url(settings)
    if not args.no_migrate:
        migrate(url)
    host = args.host or settings.host
    port = args.port or settings.port
    # Production serves no GraphiQL (web/ide.py), so it is not announced there.
    served = "GraphQL API" if settings.production else "GraphQL API and GraphiQL"
    print(f"{served} at http://{host}:{port}/graphql", flush=True)
    if development:
        token = print_development_token(get_settings())
        # GraphiQL's Headers tab starts with it (settings.graphiql_token); the environment
        # reaches every worker process.
        os.environ["CRM_GRAPHIQL_TOKEN"] = token
        get_settings.cache_clear()
    uvicorn.run(
        "crm_graphql.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers or settings.workers,
        loop="uvloop",
        http=OneSendHttpToolsProtocol,  # uvicorn's httptools protocol, one send per response
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level, settings.log_format),
        access_log=False,  # crm_graphql.access logs each request (web/middleware.py)
        # uvicorn annotates int, but hands the value to asyncio.wait_for: seconds, any float.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]
        ws_max_size=settings.max_body_bytes,  # one WebSocket message: the same bound as a body
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )
    return 0


def print_development_token(settings: Settings) -> str:
    token = TokenCodec.from_settings(settings).issue(DEVELOPMENT_ACTOR, DEVELOPMENT_TOKEN_TTL)
    hours = int(DEVELOPMENT_TOKEN_TTL.total_seconds() // 3600)
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    print(f"Development token (role manager, valid {hours}h): {token}", flush=True)
    print(f"Headers (already in GraphiQL's Headers tab): {headers}", flush=True)
    print("Tokens for other people and roles: crm-graphql token --help", flush=True)
    return token


def cmd_token(args: argparse.Namespace) -> int:
    settings = get_settings()
    resolve_jwt_secret(settings)
    actor = Actor(user_id=args.sub, name=args.name or args.sub, role=Role(args.role))
    print(TokenCodec.from_settings(get_settings()).issue(actor, args.ttl))
    return 0


def ttl_argument(text: str) -> timedelta:
    try:
        return parse_ttl(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_export_schema(args: argparse.Namespace) -> int:
    from crm_graphql.api.schema import schema

    text = schema.as_str() + "\n"
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} differs from the code; run `crm-graphql export-schema`.")
            return 1
        return 0
    args.path.write_text(text)
    print(f"Wrote {args.path}")
    return 0


def cmd_scorer(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        print("`crm-graphql scorer` needs the learn extra: pip install 'crm-graphql[learn]'")
        return 2
    from crm_graphql.scoring import training

    settings = get_settings()
    url = resolve_database_url(settings)
    migrate(url)
    try:
        report = asyncio.run(_run_scorer_command(args, settings, url))
    except training.TrainingRefused as refusal:
        print(refusal)
        return 1
    print(training.format_report(report))
    if args.action == "evaluate":
        training.write_calibration_plot(report, args.plot)
        print(f"\nCalibration plot: {args.plot}")
    return 0


async def _run_scorer_command(args: argparse.Namespace, settings: Settings, url: str) -> "Report":
    from crm_graphql.db.engine import create_engine
    from crm_graphql.domain.scoring import HeuristicScorer
    from crm_graphql.scoring import training

    engine = create_engine(settings, url)
    heuristic = HeuristicScorer(threshold=settings.transfer_threshold)
    try:
        if args.action == "train":
            return await training.train(engine, heuristic, args.seed)
        return await training.evaluate(engine, heuristic)
    finally:
        await engine.dispose()


def lead_source(value: str) -> LeadSource:
    try:
        return LeadSource(value.upper())
    except ValueError:
        choices = ", ".join(LeadSource)
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {choices}") from None


def cmd_import(args: argparse.Namespace) -> int:
    from crm_graphql.importer import run_import

    settings = get_settings()
    url = resolve_database_url(settings)
    migrate(url)
    return run_import(
        url,
        args.path,
        source=args.source,
        dry_run=args.dry_run,
        rejected_file=args.rejected,
        batch_size=args.batch_size,
        phone_region=settings.default_phone_region,
        owner=args.owner,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-graphql", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server (migrates first)")
    serve.add_argument("--host", help="interface to bind (default: CRM_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: CRM_PORT or 8000)")
    serve.add_argument("--workers", type=int, help="processes (default: CRM_WORKERS or 1)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    serve.set_defaults(handler=cmd_serve)

    migrate_cmd = commands.add_parser("migrate", help="apply the Alembic migrations")
    migrate_cmd.set_defaults(handler=cmd_migrate)

    export = commands.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    export.add_argument("path", nargs="?", type=Path, default=Path("schema.graphql"))
    export.add_argument("--check", action="store_true", help="fail if the file is out of date")
    export.set_defaults(handler=cmd_export_schema)
    token = commands.add_parser(
        "token",
        help="print a signed bearer token",
        description="Print a token signed with CRM_JWT_SECRET (with no database configured: "
        "the development secret in the data folder).",
    )
    token.add_argument("--sub", required=True, help="the person's stable user ID")
    token.add_argument("--name", help="display name (default: the --sub value)")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument(
        "--ttl", type=ttl_argument, default=parse_ttl("8h"), help="lifetime: 30m, 8h, 7d (8h)"
    )
    token.set_defaults(handler=cmd_token)

    scorer = commands.add_parser("scorer", help="train and evaluate the learned scorer")
    actions = scorer.add_subparsers(dest="action", required=True)
    train = actions.add_parser(
        "train", help="fit a model on the closed leads, store it as the newest version"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the held-out split (default: 0)"
    )
    evaluate = actions.add_parser(
        "evaluate", help="the newest model against the heuristic on its held-out split"
    )
    evaluate.add_argument(
        "--plot", type=Path, default=Path("calibration.png"), help="PNG calibration plot to write"
    )
    scorer.set_defaults(handler=cmd_scorer)

    importing = commands.add_parser("import", help="import leads from a CSV file with a header")
    importing.add_argument("path", type=Path, help="CSV file; its first row names the columns")
    importing.add_argument("--dry-run", action="store_true", help="validate and report only")
    importing.add_argument(
        "--source",
        type=lead_source,
        default=LeadSource.SCANNER,
        help="source of rows without a source column (default: SCANNER)",
    )
    importing.add_argument(
        "--owner",
        metavar="SUB",
        help="a known user to own the new leads (default: the import's system user)",
    )
    importing.add_argument(
        "--rejected", type=Path, help="where to write rejected rows (default: NAME.rejected.csv)"
    )
    importing.add_argument("--batch-size", type=int, default=1_000, help="rows per transaction")
    importing.set_defaults(handler=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        print(f"Invalid configuration: {problems}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
