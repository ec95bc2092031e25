"""Database faults reach the client as coded errors, not as masked internal errors.

An unreachable or restarting PostgreSQL (refused connection, connect timeout, a connection
cut mid-request, an exhausted pool) is SERVICE_UNAVAILABLE: retry later. A statement that ran
past `statement_timeout_ms` is TIMEOUT. Both roll back whatever the use case was doing.
"""

import logging
from collections.abc import Iterator

import asyncpg
from graphql import GraphQLError
from sqlalchemy import exc as sa_exc
from strawberry.extensions import SchemaExtension

logger = logging.getLogger("crm_graphql.errors")

SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
TIMEOUT = "TIMEOUT"

# Server states in which PostgreSQL refuses or drops connections: shutting down or starting up.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57P")
QUERY_CANCELED = "57014"


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and everything it wraps (SQLAlchemy's `.orig`, `__cause__`, `__context__`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def fault_code(error: BaseException) -> str | None:
    """SERVICE_UNAVAILABLE or TIMEOUT when `error` comes from the database's state, else None."""
    for cause in causes(error):
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate == QUERY_CANCELED:
            return TIMEOUT
        if isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES):
            return SERVICE_UNAVAILABLE
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return SERVICE_UNAVAILABLE
        if isinstance(
            cause,
            sa_exc.TimeoutError  # no pooled connection came free in time
            | asyncpg.exceptions.ConnectionDoesNotExistError
            | OSError  # refused, reset, unreachable
            | TimeoutError,  # connect timeout
        ):
            return SERVICE_UNAVAILABLE
    return None


MESSAGES = {
    SERVICE_UNAVAILABLE: "The database is unavailable; nothing was changed. Retry shortly.",
    TIMEOUT: "The database did not answer within the statement timeout "
    "(setting statement_timeout_ms); nothing was changed.",
}


class ReportDatabaseFaults(SchemaExtension):
    """Replaces errors caused by the database's state with coded, client-safe ones.

    Listed after MaskErrors, so it runs first when the operation ends and MaskErrors leaves
    these (no longer unexpected) errors alone."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is None or not errors:
            return
        result.errors = [coded_fault(error) for error in errors]


def coded_fault(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    code = fault_code(original) if original is not None else None
    if code is None:
        return error
    logger.warning("database fault (%s) at %s: %r", code, error.path, original)
    return GraphQLError(
        MESSAGES[code],
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": code},
    )
