"""The in-process tier: semantics through the ASGI app, services and repository, against the
real PostgreSQL, without a server subprocess (docs/testing.md)."""

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.cli import migrate
from crm_graphql.db.engine import create_engine
from crm_graphql.settings import Settings
from tests.conftest import TABLES
from tests.support.graphql import GraphQLClient, token_for
from tests.support.inprocess import app_client


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def empty(migrated: str, db: asyncpg.Connection) -> str:
    await db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return migrated


@pytest.fixture
async def app_gql(empty: str) -> AsyncIterator[GraphQLClient]:
    """An authenticated manager on the app in this process; `as_role` acts as another."""
    async with app_client(empty) as http:
        yield GraphQLClient(http, token_for("manager"))


@pytest.fixture
async def engine(empty: str) -> AsyncIterator[AsyncEngine]:
    """The app's kind of engine on the emptied test database, for services and repository."""
    engine = create_engine(Settings(), empty)
    try:
        yield engine
    finally:
        await engine.dispose()
