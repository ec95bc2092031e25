"""Who is calling: the bearer token of an HTTP request, or of a WebSocket's connection_init."""

from typing import Any

from crm_graphql.strawberry_overrides import ConnectionUnauthenticated
from crm_graphql.tokens import Authentication, InvalidToken, TokenCodec, bearer_token


def authenticate_connection(tokens: TokenCodec, payload: dict[str, Any] | None) -> Authentication:
    """The caller a connection_init payload names; ConnectionUnauthenticated if none."""
    try:
        return tokens.verify(connection_init_token(payload))
    except InvalidToken as error:
        raise ConnectionUnauthenticated(str(error)) from None


def connection_init_token(payload: dict[str, Any] | None) -> str:
    """The token of a connection_init payload: {"Authorization": "Bearer <token>"} as in HTTP
    headers (what GraphiQL sends), or {"token": "<token>"}."""
    payload = payload or {}
    token = payload.get("token")
    if isinstance(token, str) and token:
        return token
    header = payload.get("Authorization", payload.get("authorization"))
    return bearer_token(header if isinstance(header, str) else None)


def authenticate_header(tokens: TokenCodec, header: str | None) -> Authentication | InvalidToken:
    """The caller an `Authorization` header names, or why it names nobody."""
    try:
        return tokens.verify(bearer_token(header))
    except InvalidToken as error:
        return error
