"""The in-process tier: semantics through the ASGI app, services and repository, against the
real PostgreSQL, without a server subprocess (docs/testing.md)."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
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


@pytest.fixture(scope="session")
async def app_http(migrated: str) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the session, as one server process serves tests/integration."""
    async with app_client(migrated) as http:
        yield http


@pytest.fixture
async def app_gql(app_http: httpx.AsyncClient, empty: str) -> GraphQLClient:
    """An authenticated manager on the app in this process; `as_role` acts as another."""
    return GraphQLClient(app_http, token_for("manager"))


@pytest.fixture
async def engine(empty: str) -> AsyncIterator[AsyncEngine]:
    """The app's kind of engine on the emptied test database, for services and repository."""
    engine = create_engine(Settings(), empty)
    try:
        yield engine
    finally:
        await engine.dispose()
