"""Counts the SQL statements one GraphQL operation sends (for tests and benchmarks)."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class StatementCounter:
    def __init__(self) -> None:
        self.count = 0


_current: ContextVar[StatementCounter | None] = ContextVar("statement_counter", default=None)


def count_statement(*_: Any) -> None:
    """One more statement for the operation running in this context, if it counts them."""
    counter = _current.get()
    if counter is not None:
        counter.count += 1


def install_statement_counter(engine: AsyncEngine) -> None:
    """Counts what goes through SQLAlchemy; db/driver.py counts what goes straight to asyncpg."""
    event.listen(engine.sync_engine, "before_cursor_execute", count_statement)


@contextmanager
def counting_statements(enabled: bool) -> Iterator[StatementCounter]:
    """Counts the statements sent inside the block when `enabled` (the counter stays at 0
    otherwise). Tasks spawned inside (DataLoader batches) copy the context and so share the
    counter."""
    counter = StatementCounter()
    if not enabled:
        yield counter
        return
    token = _current.set(counter)
    try:
        yield counter
    finally:
        _current.reset(token)
