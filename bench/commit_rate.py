"""How many transactions per second PostgreSQL commits here, plain, with a pg_notify, and with
the advisory lock that orders lead audit ids: the ceiling the write path could meet.

    .venv/bin/python -m bench.commit_rate postgresql://postgres@127.0.0.1:5432/postgres
"""

import asyncio
import sys
import time

import asyncpg

CONNECTIONS = 16
SECONDS = 5.0
PROBES = {
    "insert": ["INSERT INTO commit_probe VALUES (1)"],
    "insert + pg_notify": ["INSERT INTO commit_probe VALUES (1)", "SELECT pg_notify('probe', 'x')"],
    "advisory lock + insert": [
        "SELECT pg_advisory_xact_lock(42)",
        "INSERT INTO commit_probe VALUES (1)",
    ],
}


async def rate(pool: asyncpg.Pool, statements: list[str]) -> float:
    deadline = time.perf_counter() + SECONDS
    committed = 0

    async def client() -> None:
        nonlocal committed
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                async with conn.transaction():
                    for statement in statements:
                        await conn.execute(statement)
                committed += 1

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return committed / SECONDS


async def main(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=CONNECTIONS, max_size=CONNECTIONS)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS commit_probe (x int)")
        for name, statements in PROBES.items():
            print(f"{name:24} {await rate(pool, statements):8.0f} transactions/s", flush=True)
    finally:
        await pool.execute("DROP TABLE IF EXISTS commit_probe")
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
