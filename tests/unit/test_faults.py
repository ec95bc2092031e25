"""Which failures reach the client as database faults (SERVICE_UNAVAILABLE, TIMEOUT) and which
stay unexpected (masked and logged)."""

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from crm_graphql.api.faults import SERVICE_UNAVAILABLE, TIMEOUT, fault_code
from crm_graphql.db.driver import ConnectionLost


def wrapped(error: BaseException) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, error)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConnectionLost("the connection was lost: connection is closed"), SERVICE_UNAVAILABLE),
        # what asyncpg's protocol says once the server dropped the connection mid-operation
        (
            asyncpg.exceptions.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            ),
            SERVICE_UNAVAILABLE,
        ),
        (asyncpg.exceptions.ProtocolError("unexpected message"), SERVICE_UNAVAILABLE),
        (asyncpg.PostgresConnectionError("connection failure"), SERVICE_UNAVAILABLE),
        (asyncpg.CannotConnectNowError("the database system is starting up"), SERVICE_UNAVAILABLE),
        (asyncpg.exceptions.ConnectionFailureError("lost"), SERVICE_UNAVAILABLE),
        (ConnectionResetError(104, "reset by peer"), SERVICE_UNAVAILABLE),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), SERVICE_UNAVAILABLE),
        # a bare InterfaceError is a misuse unless its connection is closed (db/driver.py)
        (asyncpg.InterfaceError("connection is closed"), None),
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


def test_a_statement_sqlalchemy_found_on_an_invalidated_connection_is_unavailable():
    error = sa_exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True)
    assert fault_code(error) == SERVICE_UNAVAILABLE
