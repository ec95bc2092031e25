"""A raw graphql-transport-ws client (the protocol of the `graphql-ws` JavaScript client)."""

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.graphql import token_for
from tests.support.server import ServerProcess

SUBPROTOCOL = "graphql-transport-ws"
TIMEOUT = 30.0  # generous: the machine is shared; nothing here measures time

LEAD_STAGE_CHANGED = """
subscription($leadId: ID, $after: String) {
  leadStageChanged(leadId: $leadId, after: $after) {
    lead { id stage history { from to by { id } } }
    from to at cursor
  }
}"""


class GraphQLWebSocket:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.ids = (str(n) for n in itertools.count(1))

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.connection.recv()
                # JavaScript clients (graphql-ws) parse text frames only.
                assert isinstance(frame, str), f"a binary frame: {frame!r}"
                message = json.loads(frame)
                if message["type"] == "ping":
                    await self.send({"type": "pong"})
                    continue
                return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        operation_id = next(self.ids)
        await self.send(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )
        return operation_id

    async def next_data(self, operation_id: str) -> dict[str, Any]:
        """The data of the operation's next result, which must have no errors."""
        message = await self.receive()
        assert message.get("id") == operation_id, message
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message["payload"]
        return message["payload"]["data"]

    async def next_change(self, operation_id: str = "1") -> dict[str, Any]:
        return (await self.next_data(operation_id))["leadStageChanged"]

    async def changes(self, count: int, operation_id: str = "1") -> list[dict[str, Any]]:
        return [await self.next_change(operation_id) for _ in range(count)]

    async def complete(self, operation_id: str) -> None:
        await self.send({"id": operation_id, "type": "complete"})

    async def closed(self) -> tuple[int | None, str | None, int]:
        """Read until the server closes: (close code, reason, messages read before it)."""
        messages = 0
        async with asyncio.timeout(TIMEOUT):
            try:
                while True:
                    await self.connection.recv()
                    messages += 1
            except ConnectionClosed as closed:
                received = closed.rcvd
                if received is None:
                    return None, None, messages
                return received.code, received.reason, messages


def small_receive_buffer_socket(http_url: str, size: int) -> socket.socket:
    """A connected socket whose receive window stays small, so a client that stops reading
    pushes back on the server after little data."""
    parts = urlsplit(http_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # before connect: sets the window
    sock.connect((parts.hostname, parts.port))
    return sock


def connection_init(token: str | None) -> dict[str, Any]:
    """The first message, carrying the token as an HTTP header would (None: no token)."""
    payload = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return {"type": "connection_init", "payload": payload}


@asynccontextmanager
async def open_websocket(
    http_url: str, *, slow_reader: bool = False, origin: str | None = None
) -> AsyncIterator[GraphQLWebSocket]:
    """A connection before connection_init. A slow reader buffers as little as possible (no
    compression, one queued message, a small TCP window). `origin`: the Origin header a
    browser page on that origin sends."""
    options: dict[str, Any] = {"origin": origin}
    if slow_reader:
        options |= {
            "sock": small_receive_buffer_socket(http_url, 4096),
            "max_queue": 1,
            "compression": None,
        }
    uri = http_url.replace("http://", "ws://", 1) + "/graphql"
    async with connect(uri, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT, **options) as ws:
        yield GraphQLWebSocket(ws)


@asynccontextmanager
async def graphql_websocket(
    http_url: str, *, token: str | None = None, slow_reader: bool = False
) -> AsyncIterator[GraphQLWebSocket]:
    """A connection past connection_init/connection_ack, authenticated with `token` (by
    default a manager's)."""
    async with open_websocket(http_url, slow_reader=slow_reader) as client:
        await client.send(connection_init(token or token_for("manager")))
        assert (await client.receive())["type"] == "connection_ack"
        yield client


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll until `check` holds. It waits for a state (a subscription registered, LISTEN back,
    a writer blocked); it measures nothing."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def feed_state(replica: ServerProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=replica.url, timeout=TIMEOUT) as http:
        return (await http.get("/readyz")).json()["changeFeed"]


async def wait_for_feed(replica: ServerProcess, **expected: Any) -> None:
    """Until replica's change feed reports `expected` in /readyz (tests count subscribers to
    know theirs are registered before they make the change it should see)."""

    async def reached() -> bool:
        state = await feed_state(replica)
        return all(state[key] == value for key, value in expected.items())

    await eventually(reached)
