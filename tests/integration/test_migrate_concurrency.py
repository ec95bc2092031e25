"""Replicas that start together all run `crm-graphql migrate`: the advisory lock makes it
happen once."""

import os
import subprocess
import sys

import asyncpg

from tests.support.database import plain_dsn, recreate_database, with_database


async def test_three_concurrent_migrations_on_an_empty_database_all_succeed(database_url: str):
    url = with_database(database_url, "crm_test_concurrent_migrate")
    await recreate_database(url)
    env = {**os.environ, "CRM_DATABASE_URL": url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "crm_graphql", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs

    conn = await asyncpg.connect(plain_dsn(url))
    try:
        versions = await conn.fetch("SELECT version_num FROM alembic_version")
        tables = await conn.fetch(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name = 'leads'"
        )
    finally:
        await conn.close()
    heads = subprocess.run(
        [sys.executable, "-m", "alembic", "heads"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert [v["version_num"] for v in versions] == [heads]
    assert tables[0]["n"] == 1
    # Exactly one process ran the upgrade; the others found the schema at head.
    assert sum("Running upgrade" in output for output in outputs) == 1, outputs
