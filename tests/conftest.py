import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.database import database_for_tests, plain_dsn, recreate_database
from tests.support.graphql import GraphQLClient, token_for
from tests.support.server import ServerProcess, api_server

TABLES = (
    "activities, stage_changes, sales, leads, users, scoring_models, "
    "webhook_endpoints, webhook_deliveries"
)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A freshly created, empty test database (SQLAlchemy URL)."""
    with database_for_tests() as url:
        asyncio.run(recreate_database(url))
        yield url


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`crm-graphql serve` on the test database; it applies the migrations itself."""
    with api_server(database_url, tmp_path_factory.mktemp("server")) as process:
        yield process


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, to look behind the API."""
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def clean(server: ServerProcess, db: asyncpg.Connection) -> None:
    await db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture
async def gql(server: ServerProcess, clean: None) -> AsyncIterator[GraphQLClient]:
    """An authenticated manager (sub test-manager); `gql.as_role("admin")` acts as another."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield GraphQLClient(http, token_for("manager"))


@pytest.fixture
def server_log(server: ServerProcess) -> Path:
    return server.log_path
