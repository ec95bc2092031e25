"""web/frames.py against uvicorn's own WebSocket protocol: a FrameWriter must put on the wire
exactly the bytes uvicorn's ASGI `send` would, and must stand aside where it cannot."""

import asyncio
import base64

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State

from crm_graphql.web.frames import SERVER_SEND, frame_writer
from tests.support.transport import RecordingTransport

HANDSHAKE = (
    "GET /graphql HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(b'0123456789abcdef').decode()}\r\n"
    "Sec-WebSocket-Version: 13\r\n{extensions}\r\n"
)
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


async def accepted_socket(
    deflate: bool = False,
) -> tuple[WebSocketsSansIOProtocol, RecordingTransport]:
    """uvicorn's protocol past the handshake, as the application sees it after `accept`."""

    async def app(scope: object, receive: object, send: object) -> None:
        await asyncio.Event().wait()

    config = Config(app=app, ws_per_message_deflate=deflate)
    config.load()
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE.format(extensions=DEFLATE_OFFER if deflate else "").encode())
    await asyncio.sleep(0)  # the application's task starts (and waits)
    await protocol.send({"type": "websocket.accept"})
    transport.writes.clear()
    return protocol, transport


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
async def test_a_written_frame_is_byte_for_byte_what_uvicorns_send_writes(length: int):
    message = ("é" * (length // 2)).encode() if length % 2 == 0 else b"x" * length
    protocol, transport = await accepted_socket()
    await protocol.send({"type": "websocket.send", "text": message.decode()})
    through_asgi = b"".join(transport.writes)
    transport.writes.clear()

    writer = frame_writer({SERVER_SEND: protocol.send})
    assert writer is not None
    # Given in parts, as the fan-out does (prefix, payload, suffix).
    writer.write_text([(message[:3], message[3:-1], message[-1:]) if length > 4 else (message,)])
    assert transport.writes == [through_asgi]


async def test_several_messages_go_out_in_one_write_as_consecutive_frames():
    protocol, transport = await accepted_socket()
    for text in ("first", "second" * 40):
        await protocol.send({"type": "websocket.send", "text": text})
    through_asgi = b"".join(transport.writes)
    transport.writes.clear()

    writer = frame_writer({SERVER_SEND: protocol.send})
    assert writer is not None
    writer.write_text([(b"first",), (b"second" * 40,)])
    assert transport.writes == [through_asgi]


async def test_the_writer_stands_aside_when_uvicorns_send_would_wait_or_fail():
    protocol, _ = await accepted_socket()
    writer = frame_writer({SERVER_SEND: protocol.send})
    assert writer is not None
    assert writer.open()

    protocol.pause_writing()  # the transport's buffer is over its high-water mark
    assert not writer.open()
    protocol.resume_writing()
    assert writer.open()

    await protocol.send({"type": "websocket.close", "code": 1000})
    assert not writer.open()


async def test_a_lost_connection_closes_the_writer():
    protocol, _ = await accepted_socket()
    writer = frame_writer({SERVER_SEND: protocol.send})
    assert writer is not None
    protocol.connection_lost(None)
    assert not writer.open()


async def test_no_writer_where_frames_must_go_through_asgi():
    # permessage-deflate negotiated: frames are compressed, uvicorn must frame them.
    protocol, _ = await accepted_socket(deflate=True)
    assert protocol.conn.extensions
    assert frame_writer({SERVER_SEND: protocol.send}) is None

    # Another server, or a test client: its send is not uvicorn's protocol's.
    async def other_send(message: object) -> None:
        pass

    assert frame_writer({SERVER_SEND: other_send}) is None
    assert frame_writer({}) is None  # the app without ExposeFrameWriter


CLIENT_CLOSE = bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + (1000).to_bytes(2, "big")  # masked
UNMASKED_TEXT = bytes((0x81, 0x02)) + b"hi"  # a client must mask: a protocol error


@pytest.mark.parametrize("received", [CLIENT_CLOSE, UNMASKED_TEXT], ids=["close", "error"])
async def test_the_writer_closes_when_the_client_closes_or_breaks_the_protocol(received: bytes):
    # The writer relies on uvicorn closing (or sending its close) whenever websockets'
    # connection leaves OPEN, instead of checking that state itself.
    protocol, _ = await accepted_socket()
    writer = frame_writer({SERVER_SEND: protocol.send})
    assert writer is not None
    protocol.data_received(received)
    assert protocol.conn.state is not State.OPEN
    assert not writer.open()
