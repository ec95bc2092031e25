"""Counts the SQL statements one GraphQL operation sends (for tests and benchmarks)."""

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.extensions import SchemaExtension


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


class ReportStatementCount(SchemaExtension):
    """Adds `extensions.sqlStatements` to each response. Tasks spawned while the operation
    runs (DataLoader batches) copy the context and so share the same counter."""

    def on_operation(self) -> Iterator[None]:
        self.counter = StatementCounter()
        token = _current.set(self.counter)
        try:
            yield
        finally:
            _current.reset(token)

    def get_results(self) -> dict[str, Any]:
        return {"sqlStatements": self.counter.count}
