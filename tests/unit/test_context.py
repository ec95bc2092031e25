"""The request context hands out the caller and loaders only while the token is valid."""

from datetime import UTC, datetime, timedelta

import pytest
from graphql import GraphQLError

from crm_graphql.api.context import Context
from crm_graphql.domain.access import Actor, Role
from crm_graphql.tokens import Authentication, InvalidToken

ALICE = Actor("alice", "Alice", Role.MANAGER)


def context(authentication: Authentication | InvalidToken) -> Context:
    # Services are never reached in these checks.
    return Context(services=None, authentication=authentication)  # type: ignore[arg-type]


def test_the_caller_of_a_valid_token():
    valid = Authentication(ALICE, datetime.now(UTC) + timedelta(minutes=1))
    assert context(valid).actor == ALICE


@pytest.mark.parametrize("attribute", ["actor", "loaders"])
def test_without_a_valid_token_the_reason_comes_as_unauthenticated(attribute: str):
    refused = context(InvalidToken("The token was issued for another audience"))
    with pytest.raises(GraphQLError, match="another audience") as raised:
        getattr(refused, attribute)
    assert raised.value.extensions == {"code": "UNAUTHENTICATED"}


@pytest.mark.parametrize("attribute", ["actor", "loaders"])
def test_a_token_that_expired_after_the_connection_opened_stops_authorizing(attribute: str):
    # A WebSocket keeps its context for its whole life; the expiry is checked on every use.
    expired = context(Authentication(ALICE, datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(GraphQLError, match="expired") as raised:
        getattr(expired, attribute)
    assert raised.value.extensions == {"code": "UNAUTHENTICATED"}
