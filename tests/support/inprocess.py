"""The ASGI app in this process, reached through httpx's ASGI transport: the whole GraphQL
stack and the real PostgreSQL, without a server subprocess or a socket."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

from crm_graphql.app import create_app
from crm_graphql.settings import Settings
from tests.support.graphql import TEST_JWT_SECRET


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan around the block, as uvicorn does (httpx's transport does
    not)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@asynccontextmanager
async def app_client(database_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for a fresh app on `database_url` (already migrated); `settings`
    override the test defaults (statement counts in responses)."""
    defaults: dict[str, Any] = {"jwt_secret": TEST_JWT_SECRET, "expose_sql_count": True}
    app = create_app(Settings(CRM_DATABASE_URL=database_url, **{**defaults, **settings}))
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http
