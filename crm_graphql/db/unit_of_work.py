"""How a use case reaches PostgreSQL: a unit of work in one of three explicit modes, and the
concurrency policies built on them, which the services pick by name (docs/data-layer.md).

The engine runs in autocommit and transactions belong to the driver (db/driver.py), so that a
use case that is one statement pays no BEGIN and COMMIT round trips. The modes:

- `single_statement()`: a pooled connection outside any transaction; each statement commits
  on its own. For a use case whose write is one statement, and for reads.
- `driver_statements()`: the same, a driver connection from the engine's own pool of them
  (db/pool.py), without SQLAlchemy's pool and `Connection` around it, for use cases whose
  statements are all sent by db/driver.py: the main flow's writes.
- `transaction()`: BEGIN ... COMMIT on the driver's connection; SQLAlchemy Core and raw
  statements share it. (`engine.begin()` is the same transaction, db/engine.py.)
- `rehearsal()`: a transaction that is always rolled back: a dry run (units of work on its
  connection are savepoints).
- `locked_lead()` / `locked_leads()`: a transaction that starts by locking the lead's row (and
  recording the writer), or several leads' rows in id order, so two of them cannot deadlock.

The policies:

- `conditional_write`: one statement that checks, under the row lock it takes, what the rules
  allow; when it finds the row otherwise, a read says which rule forbids the write.
- `retried_transaction`: a transaction tried again when it reports that what it met changed
  (createLead meeting a duplicate that closes meanwhile).
- `optimistic_then_locked`: the rules are checked on a read row, and the write lands only if
  the row is still that version; under a burst of other writes, the last attempt locks the row
  from the read to the write.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db import repository
from crm_graphql.db.driver import Connection, driver, transaction
from crm_graphql.db.engine import pooled
from crm_graphql.domain.access import Actor
from crm_graphql.domain.errors import RuleViolation, Violation
from crm_graphql.domain.lead import Lead

T = TypeVar("T")

# A conditional or versioned write finds its row otherwise than it was read only when another
# write to the same row landed in between; after this many in a row, the use case gives up.
WRITE_ATTEMPTS = 5


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine

    def single_statement(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.connect()

    def driver_statements(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return pooled(self.engine)

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self.engine)

    @asynccontextmanager
    async def rehearsal(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            outer = (await driver(conn)).transaction()
            await outer.start()
            try:
                yield conn
            finally:
                await outer.rollback()

    @asynccontextmanager
    async def locked_lead(
        self, actor: Actor, lead_id: int
    ) -> AsyncIterator[tuple[AsyncConnection, Lead | None]]:
        """A transaction holding the lead's row lock, the actor recorded as a user (one
        statement); the lead is None when there is none with this id."""
        async with self.transaction() as conn:
            yield conn, await repository.lock_lead_for(conn, actor, lead_id)

    @asynccontextmanager
    async def locked_leads(
        self, lead_ids: Sequence[int]
    ) -> AsyncIterator[tuple[AsyncConnection, dict[int, Lead]]]:
        """A transaction holding the row locks of these leads (the ones that exist), taken in
        id order."""
        async with self.transaction() as conn:
            yield conn, await repository.lock_leads(conn, lead_ids)


class _RollBack(Exception):
    """Leaves a transaction by rolling it back, to try again."""


def kept_changing(kind: str) -> RuntimeError:
    return RuntimeError(f"the {kind} changed under each of {WRITE_ATTEMPTS} conditional writes")


async def conditional_write(
    kind: str,
    write: Callable[[], Awaitable[T | None]] | None,
    why_not: Callable[[], Awaitable[Violation | None]],
) -> T:
    """A write that checks, under its row lock, the stages the rule allows (`write`, None when
    no stage allows it). When the write finds the row otherwise, `why_not` reads it and names
    the rule that forbids the write; if none does any more, the row has just changed into a
    state the rule allows, and the write is tried again."""
    for _ in range(WRITE_ATTEMPTS):
        if write is not None and (written := await write()) is not None:
            return written
        violation = await why_not()
        if violation:
            raise RuleViolation(violation)
    raise kept_changing(kind)


async def retried_transaction(
    db: Database, attempts: int, body: Callable[[AsyncConnection], Awaitable[T | None]]
) -> T:
    """`body` in a transaction; when it returns None (what it met changed meanwhile), its
    transaction is rolled back and it runs again, at most `attempts` times."""
    for _ in range(attempts):
        try:
            async with db.transaction() as conn:
                done = await body(conn)
                if done is None:
                    raise _RollBack
        except _RollBack:
            continue
        return done
    raise RuntimeError(f"what the transaction met kept changing, {attempts} times")


async def optimistic_then_locked(
    db: Database, kind: str, attempt: Callable[[Connection, bool], Awaitable[T | None]]
) -> T:
    """`attempt(conn, lock)` reads the row (locking it when `lock`), checks the rules and
    writes if the row is still the version it read, returning None if it was not, all with
    the driver's statements. The first attempts run without a transaction; the last one in a
    transaction, with the lock."""
    for _ in range(WRITE_ATTEMPTS - 1):
        async with db.driver_statements() as raw:
            done = await attempt(raw, False)
        if done is not None:
            return done
    async with db.transaction() as conn:
        done = await attempt(conn, True)
    if done is not None:
        return done
    raise kept_changing(kind)
