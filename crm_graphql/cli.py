"""`crm-graphql`: serve, migrate, export-schema, import."""

import argparse
import logging
import os
import sys
from pathlib import Path

from crm_graphql.domain.enums import LeadSource
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
        access_log=False,
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


def lead_source(value: str) -> LeadSource:
    try:
        return LeadSource(value.upper())
    except ValueError:
        choices = ", ".join(LeadSource)
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {choices}") from None


def cmd_import(args: argparse.Namespace) -> int:
    from crm_graphql.importer import run_import

    if args.owner:
        # INTEGRATION(issue 4): store the owner once leads.owner_id exists.
        print("--owner needs user accounts, which this build does not have yet.", file=sys.stderr)
        return 2
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

    importing = commands.add_parser("import", help="import leads from a CSV file with a header")
    importing.add_argument("path", type=Path, help="CSV file; its first row names the columns")
    importing.add_argument("--dry-run", action="store_true", help="validate and report only")
    importing.add_argument(
        "--source",
        type=lead_source,
        default=LeadSource.SCANNER,
        help="source of rows without a source column (default: SCANNER)",
    )
    importing.add_argument("--owner", metavar="SUB", help="owner of the new leads (needs users)")
    importing.add_argument(
        "--rejected", type=Path, help="where to write rejected rows (default: NAME.rejected.csv)"
    )
    importing.add_argument("--batch-size", type=int, default=1_000, help="rows per transaction")
    importing.set_defaults(handler=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
