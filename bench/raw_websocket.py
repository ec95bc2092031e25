"""A graphql-transport-ws subscriber for benchmarks that costs the client little CPU.

The benchmark's subscribers share the machine's cores with the server they measure: a full
WebSocket client (websockets' framing, a task and a JSON decode per message) spent more CPU per
delivery than the server did. This one is an asyncio Protocol: it reads the server's frames
straight from the bytes received (unmasked, unfragmented, as a server sends them), answers
pings, and hands each `next` message's bytes, with the time they arrived, to a callback that
picks out what it needs. permessage-deflate is offered when asked for, and inflated.
"""

import asyncio
import base64
import os
import struct
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson

OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = 0x0, 0x1, 0x2
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692, 7.2.2: removed by the sender, added back here

# The messages of one received chunk, all with the same arrival time.
OnMessages = Callable[[list[bytes]], None]


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (RFC 6455, 5.3: every client frame is masked)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


class RawSubscriber(asyncio.Protocol):
    def __init__(self, on_messages: OnMessages) -> None:
        self.on_messages = on_messages
        self.inflater: zlib._Decompress | None = None
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake_done = asyncio.get_running_loop().create_future()
        self.first_message: asyncio.Future[bytes] | None = None
        self.closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    # --- set-up -------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, http_url: str, token: str, query: str, on_messages: OnMessages, deflate: bool
    ) -> "RawSubscriber":
        """A subscriber past connection_ack with `query` subscribed as operation "1"."""
        parts = urlsplit(http_url)
        loop = asyncio.get_running_loop()
        _, self = await loop.create_connection(lambda: cls(on_messages), parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        extensions = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if deflate
            else ""
        )
        assert self.transport is not None
        self.transport.write(
            (
                f"GET /graphql HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n"
                f"{extensions}\r\n"
            ).encode()
        )
        await self.handshake_done
        self.first_message = loop.create_future()
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        self.send(init)
        ack = orjson.loads(await self.first_message)
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        self.first_message = None
        self.send({"id": "1", "type": "subscribe", "payload": {"query": query}})
        return self

    def send(self, message: object) -> None:
        assert self.transport is not None
        self.transport.write(masked_frame(OPCODE_TEXT, orjson.dumps(message)))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result((1006, str(exc or "")))
        if not self.handshake_done.done():
            self.handshake_done.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshake_done.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            if not head.startswith("HTTP/1.1 101"):
                self.handshake_done.set_exception(RuntimeError(f"handshake refused: {head}"))
                return
            if "permessage-deflate" in head.lower():
                self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            self.handshake_done.set_result(None)
        messages = self.frames()
        if not messages:
            return
        if self.first_message is not None and not self.first_message.done():
            self.first_message.set_result(messages.pop(0))
        if messages:
            self.on_messages(messages)

    def frames(self) -> list[bytes]:
        """The whole data messages in the buffer; control frames are answered here."""
        messages: list[bytes] = []
        buffer = self.buffer
        start = 0
        while len(buffer) - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            length, offset = second & 0x7F, start + 2
            if length == 126:
                if len(buffer) - offset < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset)
                offset += 2
            elif length == 127:
                if len(buffer) - offset < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset)
                offset += 8
            if len(buffer) - offset < length:
                break
            payload = bytes(buffer[offset : offset + length])
            start = offset + length
            opcode = first & 0x0F
            if opcode in (OPCODE_TEXT, OPCODE_BINARY):
                if first & 0x40 and self.inflater is not None:  # RSV1: compressed
                    payload = self.inflater.decompress(payload + DEFLATE_TAIL)
                messages.append(payload)
            elif opcode == OPCODE_PING:
                assert self.transport is not None
                self.transport.write(masked_frame(OPCODE_PONG, payload))
            elif opcode == OPCODE_CLOSE:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result((code, payload[2:].decode(errors="replace")))
            elif opcode == OPCODE_CONTINUATION:
                raise RuntimeError("a fragmented message: servers here send whole ones")
        del buffer[:start]
        return messages
