"""Graceful shutdown: on SIGTERM (or SIGINT) open WebSockets are closed with 1001 (going away)
before uvicorn begins its own shutdown, which stops accepting connections, lets in-flight HTTP
requests finish (up to `shutdown_timeout_s`) and then runs the lifespan shutdown.

Without this, uvicorn would close every WebSocket with 1012 (service restart) itself.
`Shutdown.stopping` is the hook for subscription code: it is set as soon as the signal arrives.
"""

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

GOING_AWAY = 1001
# How long uvicorn's shutdown waits for the sockets to say goodbye; a close frame takes
# a fraction of a millisecond, this only bounds a stuck one.
CLOSE_GRACE_S = 2.0

SignalHandler = Callable[[int, FrameType | None], Any]


class Shutdown:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.open_sockets = 0
        self.sockets_closed = asyncio.Event()
        self.sockets_closed.set()

    def install(self) -> None:
        """Run our part first whenever uvicorn would handle SIGTERM/SIGINT. Only possible in
        the main thread (a server process); elsewhere (in-process tests) nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if callable(previous):

                def handler(
                    sig: int, frame: FrameType | None, previous: SignalHandler = previous
                ) -> None:
                    loop.call_soon_threadsafe(self.begin, previous, sig, frame)

                signal.signal(signum, handler)

    def begin(self, previous: SignalHandler, sig: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():  # a second signal: no more waiting
            previous(sig, frame)
            return
        logger.info("shutting down: closing %d WebSocket(s) with 1001", self.open_sockets)
        self.stopping.set()
        asyncio.get_running_loop().create_task(self.hand_over(previous, sig, frame))

    async def hand_over(self, previous: SignalHandler, sig: int, frame: FrameType | None) -> None:
        try:
            await asyncio.wait_for(self.sockets_closed.wait(), CLOSE_GRACE_S)
        except TimeoutError:
            logger.warning("%d WebSocket(s) still open; shutting down anyway", self.open_sockets)
        previous(sig, frame)

    def socket_opened(self) -> None:
        self.open_sockets += 1
        self.sockets_closed.clear()

    def socket_done(self) -> None:
        self.open_sockets -= 1
        if self.open_sockets == 0:
            self.sockets_closed.set()


class CloseWebSocketsOnShutdown:
    """When `shutdown.stopping` is set, sends each accepted WebSocket a 1001 close frame and
    tells the application the client went away, so its handlers end their subscriptions."""

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app = app
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        shutdown = self.shutdown
        accepted = False
        closed = False

        async def guarded_send(message: Message) -> None:
            nonlocal accepted, closed
            if closed:
                return  # we already said goodbye for the application
            if message["type"] == "websocket.accept":
                accepted = True
            elif message["type"] == "websocket.close":
                closed = True
            await send(message)

        async def receive_until_stopping() -> Message:
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": GOING_AWAY}
            receiving = asyncio.ensure_future(receive())
            stopping = asyncio.ensure_future(shutdown.stopping.wait())
            try:
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if receiving.done() or not accepted:
                return await receiving
            receiving.cancel()
            closed = True
            await send({"type": "websocket.close", "code": GOING_AWAY, "reason": "shutting down"})
            return {"type": "websocket.disconnect", "code": GOING_AWAY}

        shutdown.socket_opened()
        try:
            await self.app(scope, receive_until_stopping, guarded_send)
        finally:
            shutdown.socket_done()
