"""The pool of driver connections that db/driver.py's statements run on.

A checkout and return through SQLAlchemy's pool costs a greenlet switch each way, an asyncio
queue and weak-reference bookkeeping: under the main flow at 16 clients that was about 15 % of
the server's CPU (docs/benchmarks.md, issue 18). Here handing out an idle connection is a list
pop. The connections are opened as SQLAlchemy's pool opens its own (its connect arguments,
codecs and connect events; db/engine.py), outside its queue; this pool has its own budget,
`size` connections kept and `overflow` more that are closed when they come back, opened as
the load needs them.
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


# Opens a connection; returns it and whatever must stay referenced while it is open.
OpenConnection = Callable[[], Awaitable[tuple[asyncpg.Connection, object]]]


class DriverPool:
    """At most `size + overflow` connections, `size` of them kept; a request that finds all
    of them lent waits for one, first come first served, at most `timeout_s`, then gets
    SQLAlchemy's pool timeout error (which api/faults.py answers as SERVICE_UNAVAILABLE, like
    an exhausted SQLAlchemy pool)."""

    def __init__(
        self, open_connection: OpenConnection, size: int, overflow: int, timeout_s: float
    ) -> None:
        self._open_connection = open_connection
        self.size = size
        self.limit = size + overflow
        self.timeout_s = timeout_s
        self._idle: list[asyncpg.Connection] = []  # the most recently returned last
        self._lent: set[asyncpg.Connection] = set()
        self._owners: dict[asyncpg.Connection, object] = {}
        # Places taken by connections being opened, or handed to a waiter that will open one.
        self._opening = 0
        # Each waiter's future gets a connection handed over, or None: a place came free,
        # open a connection in it.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        # Lent when the pool was disposed: not kept when they come back, but closed (True) or
        # left open (False: `dispose(close=False)`).
        self._retired: dict[asyncpg.Connection, bool] = {}

    @property
    def open_count(self) -> int:
        """Connections open or being opened that count against the limit."""
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
            self._forget(raw)
        if self.open_count < self.limit:
            self._opening += 1
            return await self._open()
        handed = await self._wait()
        return handed if handed is not None else await self._open()

    async def _open(self) -> asyncpg.Connection:
        """Opens a connection in a place already counted in `_opening`."""
        try:
            raw, owner = await self._open_connection()
        except BaseException:
            self._opening -= 1
            self._place_freed()
            raise
        self._opening -= 1
        self._lent.add(raw)
        self._owners[raw] = owner
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
                self._opening -= 1  # given a place just as it gave up: pass it on
                self._place_freed()
            else:
                await self._release(handed)  # likewise a connection
            if isinstance(error, TimeoutError):
                raise sa_exc.TimeoutError(
                    f"all {self.limit} pooled driver connections stayed busy for {self.timeout_s} s"
                ) from None
            raise

    async def _release(self, raw: asyncpg.Connection) -> None:
        if raw in self._retired:
            if self._retired.pop(raw):
                await self._close(raw)
            else:
                self._forget(raw)
            return
        self._lent.discard(raw)
        if raw.is_closed():
            self._forget(raw)
            self._place_freed()
            return
        if raw.is_in_transaction():  # a statement left it mid-transaction: not reusable
            raw.terminate()
            self._forget(raw)
            self._place_freed()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._lent.add(raw)
                waiter.set_result(raw)
                return
        if self.open_count >= self.size:  # an overflow connection, no one waiting: closed
            await self._close(raw)
            return
        self._idle.append(raw)

    def _place_freed(self) -> None:
        """A connection closed or failed to open: the first waiter opens one in its place,
        which is counted as taken from now on, so no one else opens one in it meanwhile."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opening += 1
                waiter.set_result(None)
                return

    def _forget(self, raw: asyncpg.Connection) -> None:
        self._owners.pop(raw, None)

    async def _close(self, raw: asyncpg.Connection) -> None:
        try:
            await raw.close(timeout=CLOSE_TIMEOUT_S)
        except Exception as error:  # already lost, or the server did not answer in time
            logger.debug("closing a pooled driver connection failed (%r)", error)
            raw.terminate()
        finally:
            self._forget(raw)

    async def dispose(self, close: bool = True) -> None:
        """Closes the idle connections and those lent as they come back (with `close` false,
        forgets them unclosed, as SQLAlchemy's `dispose(close=False)` does, for a forked
        process). The pool stays usable and opens new ones, as SQLAlchemy's engine does."""
        idle, self._idle = self._idle, []
        lent, self._lent = self._lent, set()
        self._retired.update(dict.fromkeys(lent, close))
        if not close:
            for raw in idle:
                self._forget(raw)
        while self._waiters and self.open_count < self.limit:
            self._place_freed()
        if close:
            await asyncio.gather(*(self._close(raw) for raw in idle))
