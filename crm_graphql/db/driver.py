"""The hot path's SQL runs straight on the asyncpg connection under SQLAlchemy's pool.

Measured on this machine, a lead row locked by id costs 233 µs through a Core statement built
per call, 96 µs through `exec_driver_sql` and 19 µs through asyncpg with its prepared-statement
cache: the mutations and the DataLoaders send fixed SQL texts through the functions here.

Transactions belong to the driver too (`transaction`, `unit_of_work`): the engine runs in
autocommit (db/engine.py), so Core statements sent on the connection run inside the driver's
transaction instead of opening one of their own, and both kinds share it.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db.sql import Sql
from crm_graphql.db.statements import count_statement

T = TypeVar("T")


class Row(asyncpg.Record):
    """A record whose columns read as attributes, like SQLAlchemy's rows."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@asynccontextmanager
async def unit_of_work(conn: AsyncConnection) -> AsyncIterator[None]:
    """A transaction on a pooled connection; inside another one it is a savepoint. Its BEGIN
    and its COMMIT (or ROLLBACK) are counted as statements: each is a round trip."""
    count_statement()
    raw = await driver(conn)
    try:
        async with raw.transaction():
            yield
    except asyncpg.InterfaceError as error:  # BEGIN, COMMIT or ROLLBACK on a lost connection
        raise_if_lost(raw, error)
        raise
    finally:
        count_statement()


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One use case's transaction: everything commits together or nothing does."""
    async with engine.connect() as conn, unit_of_work(conn):
        yield conn


# A connection the hot path's statements run on: SQLAlchemy's, or a pooled driver connection
# taken without it (`pooled`).
Connection = AsyncConnection | asyncpg.Connection


async def driver(conn: Connection) -> asyncpg.Connection:
    if isinstance(conn, asyncpg.Connection):
        return conn
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        # Checked out and valid: reading it needs no I/O, so no greenlet (a third of the
        # pool's cost per statement).
        connection = sync.connection.driver_connection
    else:
        connection = (await conn.get_raw_connection()).driver_connection
    # SQLAlchemy types the driver's connection as Any; the engine's dialect is asyncpg.
    return cast("asyncpg.Connection", connection)


class ConnectionLost(ConnectionError):
    """A statement failed because its connection is gone: closed by the server (a terminated
    backend, a restart) or by asyncpg after its protocol failed. SQLAlchemy marks such errors
    on its own statements (`connection_invalidated`); these statements bypass it."""


# What the driver and the pool raise once a connection is lost or cannot be had, by type; the
# 08 and 57P SQLSTATE classes (api/faults.py) cover what PostgreSQL itself reports.
LOST_CONNECTION = (
    sa_exc.TimeoutError  # no pooled connection came free in time
    | OSError  # refused, reset, unreachable; ConnectionLost above is one too
    | TimeoutError  # connect timeout
    # asyncpg's protocol state machine, left mid-operation by a dropped connection ("cannot
    # switch to state ...; another operation is in progress"): the connection is unusable.
    | asyncpg.exceptions.InternalClientError
)


def raise_if_lost(raw: asyncpg.Connection, error: asyncpg.InterfaceError) -> None:
    """ConnectionLost if the connection is closed by now; else the caller re-raises the error,
    a misuse of the connection: a bug. Decided by the connection's state, not the message."""
    if raw.is_closed():
        raise ConnectionLost(f"the connection was lost: {error}") from error


async def run(
    conn: Connection, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """One statement (asyncpg's `method`) on the connection, counted; ConnectionLost if the
    connection is gone by the time it fails."""
    # `driver` hands a driver connection back too, but through a coroutine: one per statement.
    raw = conn if isinstance(conn, asyncpg.Connection) else await driver(conn)
    return await run_on(raw, method, *args, **kwargs)


async def run_on(
    raw: asyncpg.Connection, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """`run` on a driver connection."""
    count_statement()
    try:
        return await method(raw, *args, **kwargs)
    except asyncpg.InterfaceError as error:
        raise_if_lost(raw, error)
        raise


async def fetchrow(conn: Connection, statement: Sql, /, **values: Any) -> Row | None:
    arguments = statement.arguments(values)
    return await run(
        conn, asyncpg.Connection.fetchrow, statement.text, *arguments, record_class=Row
    )


async def fetch(conn: Connection, statement: Sql, /, **values: Any) -> list[Row]:
    arguments = statement.arguments(values)
    return await run(conn, asyncpg.Connection.fetch, statement.text, *arguments, record_class=Row)


async def execute(conn: Connection, statement: Sql, /, **values: Any) -> None:
    await run(conn, asyncpg.Connection.execute, statement.text, *statement.arguments(values))
