"""WebSocket text frames written straight to uvicorn's transport, for the subscription fan-out.

Through ASGI, each message to each socket takes Starlette's `send_text`, uvicorn's `send`
(which waits until the socket is writable) and websockets' framing: with 500 subscribers an
event pays that 500 times, plus a task switch per socket to get there. A `FrameWriter` writes
the frame bytes itself, from the fan-out's own loop, several messages in one write when several
are due. It applies only where it can frame exactly as uvicorn would: uvicorn's default
WebSocket protocol (websockets' sans-I/O `ServerProtocol`), the handshake done, no extension
negotiated (permessage-deflate is off by default). Anything else (another server, another
protocol implementation, a test client, deflate on) gets no writer and sends through ASGI.

Relies on uvicorn's `WebSocketsSansIOProtocol` (checked against uvicorn 0.54): the ASGI `send`
it hands the application is its bound method; its `transport`, `writable` (cleared while the
transport's buffer is over its high-water mark), `close_sent`, `disconnected`,
`handshake_complete` and `conn` (websockets' `ServerProtocol`: `extensions`); and that it
sends its close frame, or closes the transport, whenever that connection leaves OPEN. A server
frame is unmasked (RFC 6455, 5.1); tests/unit/test_frames.py checks the bytes against
websockets' own framing.
"""

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Where ExposeFrameWriter leaves the server's own `send` in a WebSocket's scope.
SERVER_SEND = "crm_graphql.server_send"
FIN_TEXT = 0x81  # FIN bit and opcode 1 (text): one whole text message per frame


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, unfragmented text frame whose payload is `length` bytes."""
    if length < 126:
        return bytes((FIN_TEXT, length))
    if length < 1 << 16:
        return struct.pack("!BBH", FIN_TEXT, 126, length)
    return struct.pack("!BBQ", FIN_TEXT, 127, length)


class FrameWriter:
    """Text messages to one WebSocket, written to its transport as uvicorn would frame them."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def open(self) -> bool:
        """Whether a message written now goes out as ASGI's would: the connection is open and
        its transport is not holding back (over its high-water mark), where uvicorn's `send`
        would wait. When not, the caller sends through ASGI, which waits or fails as it should."""
        protocol = self._protocol
        # Once its websockets connection leaves OPEN (a close frame either way, a protocol
        # error, a keepalive timeout), uvicorn has sent its close or closed the transport: the
        # connection's own state needs no check of its own.
        return (
            not (protocol.close_sent or protocol.disconnected or self._transport.is_closing())
            and protocol.writable.is_set()
        )

    def write_text(self, messages: Iterable[Sequence[bytes]]) -> None:
        """Each message (UTF-8 text, given as the parts to concatenate) as one text frame; all
        of them in one write."""
        chunks: list[bytes] = []
        for parts in messages:
            chunks.append(text_frame_header(sum(map(len, parts))))
            chunks.extend(parts)
        self._transport.write(b"".join(chunks))


def frame_writer(scope: Scope) -> FrameWriter | None:
    """A writer for this accepted WebSocket, or None where frames must go through ASGI."""
    protocol: Any = getattr(scope.get(SERVER_SEND), "__self__", None)
    if (
        type(protocol) is not WebSocketsSansIOProtocol
        or not protocol.handshake_complete
        or protocol.conn.extensions
    ):
        return None
    return FrameWriter(protocol)


class ExposeFrameWriter:
    """Keeps the server's own `send` in each WebSocket's scope (SERVER_SEND), before any
    middleware wraps it, for `frame_writer`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope = {**scope, SERVER_SEND: send}
        await self.app(scope, receive, send)
