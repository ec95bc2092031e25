"""The server's HTTP protocol (web/http_protocol.py): a response leaves in one send; a
streamed one still sends each part while the application waits for the next."""

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from crm_graphql.web.http_protocol import OneSendHttpToolsProtocol
from tests.support.transport import RecordingTransport

REQUEST = b"POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}"


def protocol_for(app: Any) -> OneSendHttpToolsProtocol:
    config = Config(app=app, http=OneSendHttpToolsProtocol, lifespan="off", log_level="error")
    config.load()
    return OneSendHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )


async def serve_one_request(app: Any, socket: RecordingTransport) -> None:
    protocol = protocol_for(app)
    protocol.connection_made(socket)
    protocol.data_received(REQUEST)
    for _ in range(20):  # the request's task, then the send at the end of its step
        await asyncio.sleep(0)
    protocol.connection_lost(None)


async def test_a_response_head_and_body_leave_in_one_send():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"data":{}}'})

    socket = RecordingTransport()
    await serve_one_request(app, socket)

    assert len(socket.writes) == 1
    assert socket.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert socket.writes[0].endswith(b'\r\n\r\n{"data":{}}')


async def test_a_streamed_response_sends_what_it_has_before_waiting_for_more():
    socket = RecordingTransport()
    sent_before_the_rest: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0)  # waits, as a stream does for its next part
        sent_before_the_rest.extend(socket.writes)
        await send({"type": "http.response.body", "body": b"last"})

    await serve_one_request(app, socket)

    assert len(sent_before_the_rest) == 1
    assert sent_before_the_rest[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"first" in sent_before_the_rest[0]
    assert b"".join(socket.writes).endswith(b"last\r\n0\r\n\r\n")


async def test_a_websocket_upgrade_hands_the_socket_itself_to_the_websocket_protocol():
    protocol = protocol_for(app=None)
    socket = RecordingTransport()
    handed: list[object] = []
    socket.set_protocol = lambda ws_protocol: handed.append(ws_protocol.transport)  # type: ignore[method-assign]
    protocol.connection_made(socket)
    protocol.data_received(
        b"GET /graphql HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    assert handed == [socket]
