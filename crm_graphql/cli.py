"""`crm-graphql`: serve, migrate, export-schema."""

import argparse
import logging
import os
import sys
from pathlib import Path

from crm_graphql.logs import configure_logging, logging_config
from crm_graphql.settings import Settings, get_settings

logger = logging.getLogger("crm_graphql")


def resolve_database_url(settings: Settings) -> str:
    """The configured server's URL; with none configured, start the embedded one.

    The URL is put into the environment so worker processes and Alembic see the same server.
    """
    if settings.database_url:
        return settings.database_url
    from crm_graphql.db.embedded import start_embedded_postgres

    url = start_embedded_postgres(settings.data_dir)
    os.environ["CRM_DATABASE_URL"] = url
    get_settings.cache_clear()
    print(f"Embedded PostgreSQL: data in {settings.data_dir.resolve() / 'pgdata'}", flush=True)
    return url


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

    settings = get_settings()
    url = resolve_database_url(settings)
    if not args.no_migrate:
        migrate(url)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"GraphQL API and GraphiQL at http://{host}:{port}/graphql", flush=True)
    uvicorn.run(
        "crm_graphql.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers or settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level, settings.log_format),
        access_log=False,  # crm_graphql.access logs each request (web/middleware.py)
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        ws_max_size=settings.max_body_bytes,  # one WebSocket message: the same bound as a body
    )
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
