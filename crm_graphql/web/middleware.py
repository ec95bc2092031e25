"""ASGI middleware: the request log line and the request body limit."""

import logging
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_graphql.logs import log_fields
from crm_graphql.web.graphql_http import error_body
from crm_graphql.web.record import SAFE_REQUEST_ID, Outcome, RequestRecord, current_record
from crm_graphql.web.scope import header

access_logger = logging.getLogger("crm_graphql.access")

REQUEST_ID_HEADER = "x-request-id"


class RequestLog:
    """One line per HTTP request: request id, operation name and type, HTTP status, outcome and
    duration. Nothing the client sent beyond a well-formed request id and operation name: no
    query text, no variables, no headers. The request id (the client's X-Request-ID when it is
    well formed, else a new one) is echoed in the response's X-Request-ID header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = header(scope, REQUEST_ID_HEADER.encode()) or ""
        request_id = offered if SAFE_REQUEST_ID.fullmatch(offered) else os.urandom(16).hex()
        record = RequestRecord(request_id)
        token = current_record.set(record)
        status = 500
        logged = False
        started = time.perf_counter()

        def log() -> None:
            nonlocal logged
            logged = True
            outcome = record.outcome
            if status >= 500:
                outcome = Outcome.ERROR
            elif outcome is None:
                outcome = Outcome.REJECTED if status >= 400 else Outcome.OK
            log_fields(
                access_logger,
                logging.INFO,
                "request",
                {
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "operation_name": record.operation_name,
                    "operation_type": record.operation_type,
                    "status": status,
                    "outcome": str(outcome),
                    "read_path": record.read_path,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log()  # before the last byte leaves, so the line exists once the client has it
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_record.reset(token)
            if not logged:
                log()


class BodyTooLarge(Exception):
    pass


# A refused body is still read (and dropped) up to this size, so the client, which is still
# sending, gets to read the 413 instead of a reset connection; beyond it the connection closes.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


class LimitRequestBody:
    """413 for a request body over `max_bytes`, counted as it streams in (a client may omit
    Content-Length or send chunked), before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length") or ""
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send, await self.drain(receive, 0))
            return
        received = 0
        complete = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, complete
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body")
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                consumed = complete or await self.drain(receive, received)
                await self.reject(send, consumed)

    @staticmethod
    async def drain(receive: Receive, already: int) -> bool:
        """Read and drop the rest of the body; False when it was too large to wait for."""
        total = already
        while total <= DRAIN_LIMIT_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return True  # the client is gone
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                return True
        return False

    async def reject(self, send: Send, body_consumed: bool) -> None:
        record = current_record.get()
        if record:
            record.note_outcome(Outcome.REJECTED)
        body = error_body(
            f"The request body is larger than {self.max_bytes} bytes (setting max_body_bytes).",
            "PAYLOAD_TOO_LARGE",
        )
        headers = [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        if not body_consumed:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
