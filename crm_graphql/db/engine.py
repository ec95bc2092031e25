from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, NoReturn, cast

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn

from crm_graphql.db.driver import unit_of_work
from crm_graphql.db.pool import DriverPool
from crm_graphql.settings import Settings

# asyncpg's own deadline for a statement: PostgreSQL's statement_timeout plus this margin, so a
# server that stopped answering altogether (a dead peer, no RST) cannot hang a request.
CLIENT_TIMEOUT_MARGIN_S = 2.0


class _Connection(AsyncConnection):
    """SQLAlchemy's own transaction would not be one here: the engine is in autocommit, so
    every statement inside it would commit on its own. It refuses instead of failing silently."""

    def begin(self) -> NoReturn:
        raise TypeError(
            "connection.begin() is not atomic on this engine (autocommit): use "
            "db.driver.unit_of_work(conn), or engine.begin(), which is"
        )

    begin_nested = begin


class Engine(AsyncEngine):
    """The app's engine: `engine.begin()` is one transaction, the driver's (as
    db.driver.transaction), so a Core or raw statement inside it commits with the others. The
    driver's statements outside a transaction take their connections from `driver_pool`."""

    _connection_cls = _Connection
    driver_pool: DriverPool

    async def dispose(self, close: bool = True) -> None:
        await self.driver_pool.dispose(close)
        await super().dispose(close)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.connect() as conn, unit_of_work(conn):
            yield conn


def create_engine(settings: Settings, url: str | None = None) -> Engine:
    database_url = url or settings.database_url
    if database_url is None:
        raise RuntimeError("No database URL: the embedded PostgreSQL must be started first.")
    engine = create_async_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A connection that breaks during a request fails it with SERVICE_UNAVAILABLE; one the
        # server closed while it sat in the pool is replaced at checkout (`_replace_if_closed`),
        # which needs no round trip, unlike a ping.
        pool_pre_ping=False,
        # Transactions are opened by db/driver.py on the driver's connection, so a use case's
        # raw and Core statements share one; anything else runs one statement at a time.
        isolation_level="AUTOCOMMIT",
        # Each request takes a connection only for the statements it runs.
        pool_timeout=settings.db_pool_timeout_s,
        # Every lead read decodes its score's JSONB; the standard library's decoder costs more.
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.statement_timeout_ms / 1000 + CLIENT_TIMEOUT_MARGIN_S,
            "server_settings": {"statement_timeout": str(settings.statement_timeout_ms)},
        },
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    app_engine = Engine(engine.sync_engine)
    app_engine.driver_pool = DriverPool(
        partial(unqueued_connection, engine),
        settings.db_pool_size,
        settings.db_max_overflow,
        settings.db_pool_timeout_s,
    )
    return app_engine


async def unqueued_connection(engine: AsyncEngine) -> tuple[asyncpg.Connection, object]:
    """A new driver connection opened as the engine's pool opens its own (its creator, connect
    arguments, codecs and connect events), without taking a place in that pool: a record of
    its own, which is returned too, to be kept referenced while the connection is open.

    Relies on: `Pool._create_connection` (SQLAlchemy 2.x), which makes a connection record
    outside the pool's queue."""
    pool = engine.sync_engine.pool
    record = await greenlet_spawn(pool._create_connection)
    return cast("asyncpg.Connection", record.driver_connection), record


def pooled(engine: AsyncEngine) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A pooled driver connection, for statements that need nothing of SQLAlchemy's."""
    if not isinstance(engine, Engine):
        raise TypeError("driver statements need the engine create_engine() makes")
    return engine.driver_pool.connection()


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """asyncpg notices at once, without I/O, when the server closes a connection (a restart,
    pg_terminate_backend, an idle timeout). The hot path's statements go straight to asyncpg
    (db/driver.py), past SQLAlchemy's disconnect handling, so without this check a closed
    connection would go back to the pool and fail every request that drew it. The pool
    reconnects a connection whose checkout raises DisconnectionError."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")
