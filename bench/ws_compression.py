"""What compressing a subscription's `next` messages costs, per way of doing it.

    .venv/bin/python -m bench.ws_compression

For a board's message (bench/subscriptions.py's document), over many consecutive events:
bytes on the wire and CPU per message with permessage-deflate per socket as uvicorn negotiates
it (context takeover, 12-bit window, memLevel 5), compressed once per message without context
takeover (the same bytes would then do for every socket), and not compressed.
"""

import time
import zlib

import orjson
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

MESSAGES = 20_000
WINDOW_BITS = 12  # uvicorn's server_max_window_bits
MEM_LEVEL = 5  # uvicorn's compress_settings


def message(number: int) -> bytes:
    event = {
        "lead": {"id": f"TGVhZDo{number:06d}", "stage": "NEW"},
        "from": None,
        "to": "NEW",
        "at": f"2026-12-06T10:{number % 60:02d}:{number % 60:02d}.{number:06d}+00:00",
        "cursor": f"TGVhZFN0YWdlQ2hhbmdlOj{number:07d}",
    }
    payload = orjson.dumps({"data": {"leadStageChanged": event}}).decode()
    return f'{{"id":"1","type":"next","payload":{payload}}}'.encode()


def main() -> None:
    messages = [message(n) for n in range(MESSAGES)]
    per_socket = PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=WINDOW_BITS,
        local_max_window_bits=WINDOW_BITS,
        compress_settings={"memLevel": MEM_LEVEL},
    )
    started = time.perf_counter()
    socket_bytes = sum(len(per_socket.encode(Frame(Opcode.TEXT, m)).data) for m in messages)
    socket_us = (time.perf_counter() - started) / MESSAGES * 1e6

    started = time.perf_counter()
    once_bytes = 0
    for m in messages:
        compressor = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -WINDOW_BITS, MEM_LEVEL
        )
        # permessage-deflate drops the sync flush's last four bytes.
        once_bytes += len(compressor.compress(m) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
    once_us = (time.perf_counter() - started) / MESSAGES * 1e6

    raw = sum(map(len, messages)) / MESSAGES
    print(f"not compressed:             {raw:5.0f} bytes/message")
    print(
        f"deflate per socket:         {socket_bytes / MESSAGES:5.0f} bytes/message, "
        f"{socket_us:5.1f} us per socket per message"
    )
    print(
        f"compressed once per message: {once_bytes / MESSAGES:4.0f} bytes/message, "
        f"{once_us:5.1f} us per message (for all sockets)"
    )


if __name__ == "__main__":
    main()
