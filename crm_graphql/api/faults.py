"""Database faults reach the client as coded errors, not as masked internal errors.

An unreachable or restarting PostgreSQL (refused connection, connect timeout, a connection
cut mid-request, an exhausted pool) is SERVICE_UNAVAILABLE: retry later. A statement that ran
past `statement_timeout_ms` is TIMEOUT. Both roll back whatever the use case was doing.
"""

import logging
from collections.abc import Callable, Iterator

from graphql import GraphQLError
from sqlalchemy import exc as sa_exc
from strawberry.extensions import MaskErrors

from crm_graphql.db.driver import LOST_CONNECTION

logger = logging.getLogger("crm_graphql.errors")

SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
TIMEOUT = "TIMEOUT"

# Server states in which PostgreSQL refuses or drops connections: connection exceptions (08),
# shutting down or starting up (57P), out of resources (53: too many clients, disk full).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57P", "53")
QUERY_CANCELED = "57014"


MESSAGES = {
    SERVICE_UNAVAILABLE: "The database is unavailable; nothing was changed. Retry shortly.",
    TIMEOUT: "The database did not answer within the statement timeout "
    "(setting statement_timeout_ms); nothing was changed.",
}


def is_database_fault(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and fault_code(original) is not None


class ClientSafeErrors(MaskErrors):
    """Errors the client did not cause, made safe to show: a database fault becomes a coded
    error the client can act on (SERVICE_UNAVAILABLE, TIMEOUT), anything else unexpected is
    masked. One extension for both: each extension costs every request."""

    def __init__(self, is_unexpected: Callable[[GraphQLError], bool], error_message: str) -> None:
        super().__init__(
            should_mask_error=lambda error: is_database_fault(error) or is_unexpected(error),
            error_message=error_message,
        )

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if is_database_fault(error):
            return coded_fault(error)
        return super().anonymise_error(error)


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
        if isinstance(cause, LOST_CONNECTION):
            return SERVICE_UNAVAILABLE
    return None
