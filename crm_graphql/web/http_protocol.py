"""uvicorn's httptools protocol with each response leaving in one send.

uvicorn writes a response's head to the socket when the application sends
`http.response.start`, and its body with `http.response.body`: two `send` system calls for
every response. On loopback each one wakes the client, and in the main flow's profile the
head's write alone took 12 % of the server's CPU and the body's 5 % (docs/benchmarks.md,
"Writes (issue 18)"). Here the writes a request's task makes during one step of the event
loop are joined and sent at the end of that step: a JSON response (head and body sent without
waiting in between) leaves in one send, and a streamed one still sends each part as soon as
the task waits for the next.

Relies on uvicorn (pinned in requirements.lock) handing `self.transport` to each request's
RequestResponseCycle and to a WebSocket upgrade's protocol; tests/unit/test_http_protocol.py
checks both.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """The socket's transport, except that writes are joined until the current callback of
    the event loop returns, then sent as one. Closing sends what is held first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if not self._held:
            return  # already sent by close()
        data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
        self._held.clear()
        if not self.transport.is_closing():  # the client left: it would be dropped anyway
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, pause_reading, get_extra_info, ...) is the socket's.
        return getattr(self.transport, name)


class OneSendHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose requests write through a CoalescingTransport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # After the addresses and flow control are read from the socket's transport.
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        # A WebSocket's protocol writes its frames itself, on the socket's transport.
        coalescing: CoalescingTransport = self.transport  # type: ignore[assignment]
        coalescing.flush()
        self.transport = coalescing.transport
        super().handle_websocket_upgrade()
