"""The pool of driver connections that db/driver.py's statements run on.

A checkout and return through SQLAlchemy's pool costs a greenlet switch each way, an asyncio
queue and weak-reference bookkeeping: under the main flow at 16 clients that was about 15 % of
the server's CPU (docs/benchmarks.md, issue 18). Here handing out an idle connection is a list
pop. The connections are opened through the engine (its connect arguments, its codecs and its
events), then detached from SQLAlchemy's pool, so they are the same connections as its own;
this pool has its own budget, `size` connections, opened as the load needs them.
"""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import asyncpg
from sqlalchemy import exc as sa_exc

logger = logging.getLogger(__name__)

# How long a graceful close of a pooled connection may take before it is cut.
CLOSE_TIMEOUT_S = 2.0


class DriverPool:
    """At most `size` connections; a request that finds all of them lent waits for one, first
    come first served, at most `timeout_s`, then gets SQLAlchemy's pool timeout error (which
    api/faults.py answers as SERVICE_UNAVAILABLE, like an exhausted SQLAlchemy pool)."""

    def __init__(
        self,
        open_connection: Callable[[], Awaitable[asyncpg.Connection]],
        size: int,
        timeout_s: float,
    ) -> None:
        self._open_connection = open_connection
        self.size = size
        self.timeout_s = timeout_s
        self._idle: list[asyncpg.Connection] = []  # the most recently returned last
        self._lent: set[asyncpg.Connection] = set()
        self._opening = 0
        # Each waiter's future gets a connection handed over, or None: a place came free,
        # open a connection in it.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        # Lent when the pool was disposed: closed when they come back, not kept.
        self._retired: set[asyncpg.Connection] = set()

    @property
    def open_count(self) -> int:
        """Connections open or being opened that count against `size`."""
        return len(self._idle) + len(self._lent) + self._opening

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        raw = await self._acquire()
        try:
            yield raw
        finally:
            await self._release(raw)

    async def _acquire(self) -> asyncpg.Connection:
        while self._idle:
            raw = self._idle.pop()
            if not raw.is_closed():  # the server may have closed it while it sat here
                self._lent.add(raw)
                return raw
        if self.open_count < self.size:
            return await self._open()
        handed = await self._wait()
        return handed if handed is not None else await self._open()

    async def _open(self) -> asyncpg.Connection:
        self._opening += 1
        try:
            raw = await self._open_connection()
        except BaseException:
            self._opening -= 1
            self._place_freed()
            raise
        self._opening -= 1
        self._lent.add(raw)
        return raw

    async def _wait(self) -> asyncpg.Connection | None:
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await waiter
        except BaseException as error:  # timed out or cancelled
            if waiter.cancelled():
                with suppress(ValueError):  # a release may have dropped it already
                    self._waiters.remove(waiter)
            elif (handed := waiter.result()) is None:
                self._place_freed()  # given a place just as it gave up: pass it on
            else:
                await self._release(handed)  # likewise a connection
            if isinstance(error, TimeoutError):
                raise sa_exc.TimeoutError(
                    f"all {self.size} pooled driver connections stayed busy for {self.timeout_s} s"
                ) from None
            raise

    async def _release(self, raw: asyncpg.Connection) -> None:
        if raw in self._retired:
            self._retired.discard(raw)
            await _close(raw)
            return
        self._lent.discard(raw)
        if raw.is_closed():
            self._place_freed()
            return
        if raw.is_in_transaction():  # a statement left it mid-transaction: not reusable
            raw.terminate()
            self._place_freed()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._lent.add(raw)
                waiter.set_result(raw)
                return
        self._idle.append(raw)

    def _place_freed(self) -> None:
        """A connection closed or failed to open: the first waiter opens one instead."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def dispose(self) -> None:
        """Closes the idle connections; those lent are closed as they come back. The pool stays
        usable and opens new ones, as SQLAlchemy's engine does after `dispose()`."""
        idle, self._idle = self._idle, []
        self._retired |= self._lent
        self._lent = set()
        for _ in range(self.size - self.open_count):
            self._place_freed()
        await asyncio.gather(*(_close(raw) for raw in idle))


async def _close(raw: asyncpg.Connection) -> None:
    try:
        await raw.close(timeout=CLOSE_TIMEOUT_S)
    except Exception as error:  # already lost, or the server did not answer in time
        logger.debug("closing a pooled driver connection failed (%r)", error)
        raw.terminate()
