"""The driver pool's bookkeeping (db/pool.py): its budget, its queue of waiters, connections it
must not hand out again, and disposal. Its connections here are stand-ins that record how they
were closed; tests/integration runs the pool against PostgreSQL (terminated backends among
them)."""

import asyncio
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from crm_graphql.db.pool import DriverPool


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.in_transaction = False
        self.ended_by: str | None = None

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def terminate(self) -> None:
        self.closed, self.ended_by = True, "terminate"

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 (asyncpg's signature)
        self.closed, self.ended_by = True, "close"


class Opener:
    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []
        self.fail_next = False

    async def __call__(self) -> tuple[asyncpg.Connection, object]:
        await asyncio.sleep(0)  # opening is I/O
        if self.fail_next:
            self.fail_next = False
            raise OSError("connection refused")
        connection = FakeConnection(len(self.opened) + 1)
        self.opened.append(connection)
        return cast(asyncpg.Connection, connection), f"owner of {connection.number}"

    def open_now(self) -> list[int]:
        return [connection.number for connection in self.opened if not connection.closed]


def pool_of(size: int, timeout_s: float = 5.0, overflow: int = 0) -> tuple[DriverPool, Opener]:
    opener = Opener()
    return DriverPool(opener, size, overflow, timeout_s), opener


def number(raw: Any) -> int:
    return cast(FakeConnection, raw).number


async def test_a_returned_connection_is_handed_out_again_without_opening_another() -> None:
    pool, opener = pool_of(4)
    for _ in range(3):
        async with pool.connection() as raw:
            assert number(raw) == 1
    assert len(opener.opened) == 1


async def test_concurrent_requests_open_up_to_the_budget_and_the_rest_wait_in_order() -> None:
    pool, opener = pool_of(2)
    release = asyncio.Event()
    served: list[tuple[str, int]] = []

    async def request(name: str) -> None:
        async with pool.connection() as raw:
            served.append((name, number(raw)))
            await release.wait()

    tasks = [asyncio.create_task(request(name)) for name in "abcd"]
    await asyncio.sleep(0.01)
    assert served == [("a", 1), ("b", 2)]
    assert pool.open_count == 2
    release.set()
    await asyncio.gather(*tasks)
    # c and d got the connections a and b gave back, in the order they asked.
    assert [name for name, _ in served] == ["a", "b", "c", "d"]
    assert {connection for _, connection in served[2:]} == {1, 2}
    assert len(opener.opened) == 2


async def test_a_request_that_waits_too_long_gets_the_pools_timeout_error() -> None:
    pool, _ = pool_of(1, timeout_s=0.05)
    async with pool.connection():
        with pytest.raises(sa_exc.TimeoutError, match="stayed busy"):
            async with pool.connection():
                pass
    # The waiter that gave up is not handed the connection later.
    async with pool.connection() as raw:
        assert number(raw) == 1


async def test_a_connection_the_server_closed_is_replaced() -> None:
    pool, _ = pool_of(1)
    async with pool.connection() as raw:
        pass
    cast(FakeConnection, raw).closed = True  # closed while idle (pg_terminate_backend)
    async with pool.connection() as raw:
        assert number(raw) == 2
    async with pool.connection() as raw:
        cast(FakeConnection, raw).closed = True  # lost while lent
    async with pool.connection() as raw:
        assert number(raw) == 3
    assert pool.open_count == 1


async def test_a_connection_lost_while_others_wait_gives_its_place_to_the_first_waiter() -> None:
    pool, opener = pool_of(1)
    lost = asyncio.Event()

    async def loses_its_connection() -> None:
        async with pool.connection() as raw:
            await lost.wait()
            cast(FakeConnection, raw).closed = True

    first = asyncio.create_task(loses_its_connection())
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(pool.connection().__aenter__())
    await asyncio.sleep(0.01)
    lost.set()
    await first
    raw = await waiting
    assert number(raw) == 2
    assert len(opener.opened) == 2


async def test_a_failed_open_frees_its_place() -> None:
    pool, opener = pool_of(1)
    opener.fail_next = True
    with pytest.raises(OSError, match="refused"):
        async with pool.connection():
            pass
    assert pool.open_count == 0
    async with pool.connection() as raw:
        assert number(raw) == 1


async def test_a_connection_left_in_a_transaction_is_not_handed_out_again() -> None:
    pool, _ = pool_of(2)
    async with pool.connection() as raw:
        cast(FakeConnection, raw).in_transaction = True
    assert cast(FakeConnection, raw).ended_by == "terminate"
    async with pool.connection() as raw:
        assert number(raw) == 2
    assert pool.open_count == 1


async def test_dispose_closes_idle_connections_now_and_lent_ones_when_they_come_back() -> None:
    pool, _ = pool_of(2)
    async with pool.connection() as lent:
        async with pool.connection() as idle:
            pass  # idle from here
        await pool.dispose()
        assert cast(FakeConnection, idle).ended_by == "close"
        assert not cast(FakeConnection, lent).closed
    assert cast(FakeConnection, lent).ended_by == "close"
    # Still usable, with new connections, as SQLAlchemy's engine is after dispose().
    async with pool.connection() as raw:
        assert number(raw) == 3
    assert pool.open_count == 1


async def test_dispose_lets_a_waiter_open_a_connection_in_the_place_it_freed() -> None:
    pool, _ = pool_of(1)
    async with pool.connection():
        waiting = asyncio.create_task(pool.connection().__aenter__())
        await asyncio.sleep(0.01)
        await pool.dispose()
        raw = await asyncio.wait_for(waiting, 1)
        assert number(raw) == 2


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    pool, _ = pool_of(1)
    async with pool.connection():
        waiting = asyncio.create_task(pool.connection().__aenter__())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    # The connection went back to the pool, not to the cancelled waiter.
    async with pool.connection() as raw:
        assert number(raw) == 1


async def test_a_place_freed_for_a_waiter_is_not_taken_by_a_newcomer() -> None:
    """A connection lost while others wait frees its place for the first waiter; a request
    that asks before that waiter runs must wait too, or the pool would open one more than
    its budget and keep it."""
    pool, opener = pool_of(1)
    most_open = 0

    async def loses_then_asks_again() -> None:
        async with pool.connection() as raw:
            await asyncio.sleep(0.01)
            cast(FakeConnection, raw).closed = True  # lost while lent
        async with pool.connection():
            await asyncio.sleep(0.01)

    async def waits() -> None:
        await asyncio.sleep(0.001)
        async with pool.connection():
            await asyncio.sleep(0.01)

    async def watch() -> None:
        nonlocal most_open
        for _ in range(60):
            most_open = max(most_open, len(opener.open_now()), pool.open_count)
            await asyncio.sleep(0.001)

    await asyncio.gather(loses_then_asks_again(), waits(), watch())
    assert most_open == 1
    assert pool.open_count == 1


async def test_overflow_connections_are_closed_when_they_come_back() -> None:
    pool, opener = pool_of(1, overflow=1)
    async with pool.connection() as first, pool.connection() as second:
        assert (number(first), number(second)) == (1, 2)
    # The second came back with one already kept: closed; the first is kept.
    assert opener.open_now() == [1]
    assert pool.open_count == 1


async def test_a_connections_owner_is_kept_while_it_is_open() -> None:
    pool, _ = pool_of(1)
    async with pool.connection() as raw:
        pass
    assert pool._owners == {raw: "owner of 1"}
    cast(FakeConnection, raw).closed = True
    async with pool.connection():
        pass
    assert list(pool._owners.values()) == ["owner of 2"]


async def test_dispose_without_closing_forgets_the_connections_and_leaves_them_open() -> None:
    """As SQLAlchemy's dispose(close=False), for a forked process: the parent's connections
    are not the child's to close."""
    pool, opener = pool_of(2)
    async with pool.connection() as lent:
        async with pool.connection():
            pass
        await pool.dispose(close=False)
    assert opener.open_now() == [1, 2]
    assert pool.open_count == 0
    async with pool.connection() as raw:
        assert raw is not lent
