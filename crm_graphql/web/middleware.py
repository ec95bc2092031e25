"""ASGI middleware: the request log line and the request body limit."""

import logging
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_graphql.web.graphql_http import error_body
from crm_graphql.web.record import SAFE_REQUEST_ID, Outcome, RequestRecord, current_record

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
        offered = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = offered if SAFE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
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
            access_logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "operation_name": record.operation_name,
                    "operation_type": record.operation_type,
                    "status": status,
                    "outcome": str(outcome),
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
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
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
                await self.reject(send)

    async def reject(self, send: Send) -> None:
        record = current_record.get()
        if record:
            record.note_outcome(Outcome.REJECTED)
        body = error_body(
            f"The request body is larger than {self.max_bytes} bytes (setting max_body_bytes).",
            "PAYLOAD_TOO_LARGE",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
