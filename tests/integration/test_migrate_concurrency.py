"""Replicas that start together all run `crm-graphql migrate`: the advisory lock makes it
happen once."""

import asyncio
import os
import sys

import asyncpg

from crm_graphql.app import migrations_head
from tests.support.database import plain_dsn, recreate_database, with_database


async def migrate(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_graphql",
        "migrate",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, output.decode()


async def test_three_concurrent_migrations_on_an_empty_database_all_succeed(database_url: str):
    url = with_database(database_url, "crm_test_concurrent_migrate")
    await recreate_database(url)
    env = {**os.environ, "CRM_DATABASE_URL": url}
    results = await asyncio.gather(*(migrate(env) for _ in range(3)))
    outputs = [output for _, output in results]
    assert [code for code, _ in results] == [0, 0, 0], outputs

    conn = await asyncpg.connect(plain_dsn(url))
    try:
        versions = await conn.fetch("SELECT version_num FROM alembic_version")
        leads_tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name = 'leads'"
        )
    finally:
        await conn.close()
    assert [v["version_num"] for v in versions] == [migrations_head()]
    assert leads_tables == 1
    # Exactly one process ran the upgrade; the others found the schema at head.
    assert sum("Running upgrade" in output for output in outputs) == 1, outputs
