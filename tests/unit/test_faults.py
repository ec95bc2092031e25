"""Which failures reach the client as database faults (SERVICE_UNAVAILABLE, TIMEOUT) and which
stay unexpected (masked and logged)."""

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from crm_graphql.api.faults import SERVICE_UNAVAILABLE, TIMEOUT, fault_code


def wrapped(error: BaseException) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, error)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (asyncpg.InterfaceError("connection is closed"), SERVICE_UNAVAILABLE),
        (
            asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"),
            SERVICE_UNAVAILABLE,
        ),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), TIMEOUT),
        (asyncpg.AdminShutdownError("terminating connection"), SERVICE_UNAVAILABLE),
        (ConnectionRefusedError(111, "refused"), SERVICE_UNAVAILABLE),
        (TimeoutError(), SERVICE_UNAVAILABLE),
        (sa_exc.TimeoutError("QueuePool limit reached"), SERVICE_UNAVAILABLE),
        # misuse of a connection is a bug, not the database's state
        (asyncpg.InterfaceError("another operation is in progress"), None),
        (asyncpg.DataError("invalid input for query argument $1: 'connection is closed'"), None),
        (asyncpg.UniqueViolationError("duplicate key"), None),
        (ValueError("bad"), None),
    ],
)
def test_fault_codes(error: BaseException, code: str | None):
    assert fault_code(error) == code
    assert fault_code(wrapped(error)) == code
