"""Who is calling: the bearer token of an HTTP request, or of a WebSocket's connection_init."""

from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage

from crm_graphql.api.audiences import current_operation
from crm_graphql.api.context import Context
from crm_graphql.tokens import Authentication, InvalidToken, TokenCodec, bearer_token

# graphql-transport-ws: the close code for a connection_init without valid credentials.
WS_UNAUTHORIZED = 4401
WS_CLOSE_REASON_MAX_BYTES = 123  # the WebSocket protocol's limit


class ConnectionUnauthenticated(Exception):
    """The connection_init payload carried no acceptable token."""


class AuthenticatingTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        # Strawberry closes a rejected connection with 4403; the protocol says 4401 when the
        # credentials are what is wrong. No connection_ack is sent, so nothing can be subscribed.
        try:
            await super().handle_connection_init(message)
        except ConnectionUnauthenticated as error:
            reason = f"Unauthorized: {error}".encode()[:WS_CLOSE_REASON_MAX_BYTES]
            await self.websocket.close(WS_UNAUTHORIZED, reason.decode(errors="ignore"))

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # The operation's own task: its resolvers can tell which operation they serve.
        current_operation.set(operation)
        await super().run_operation(operation)


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
