"""The Alembic round trip CI runs, on a new empty database next to the test database."""

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from crm_graphql.db.tables import metadata
from tests.support.database import plain_dsn, recreate_database, with_database

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = [sys.executable, "-m", "alembic"]
CORE_TABLES = {"leads", "sales", "stage_changes", "activities"}


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    name = urlsplit(database_url).path.lstrip("/") + "_migrations"
    url = with_database(database_url, name)
    await recreate_database(url)
    yield url
    admin = await asyncpg.connect(plain_dsn(with_database(database_url, "postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await conn.close()


def alembic(url: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    result = subprocess.run(
        [*ALEMBIC, *args],
        cwd=ROOT,
        env={**env, "CRM_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_upgrade_downgrade_upgrade(empty_database: str):
    declared = set(metadata.tables)
    assert declared >= CORE_TABLES
    assert await tables(empty_database) == set()

    alembic(empty_database, "upgrade", "head")
    assert await tables(empty_database) == declared | {"alembic_version"}
    alembic(empty_database, "check")  # the migrations build exactly what tables.py declares

    alembic(empty_database, "downgrade", "base")
    assert await tables(empty_database) == {"alembic_version"}

    alembic(empty_database, "upgrade", "head")
    assert await tables(empty_database) == declared | {"alembic_version"}
