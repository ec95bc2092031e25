"""Browser pages on other origins: which may call the API (CORS) and open its WebSocket.

One policy answers both (setting `cors_origins`): the exact origins listed, and in
development any page served from this machine (`http://localhost:*`, `http://127.0.0.1:*`).
A listed origin gets its preflight answered (204) and CORS headers on every response; an
unlisted one gets no CORS headers, so its browser hands the page nothing, and its WebSocket
handshake is refused (403) before it completes. Requests without `Origin` (servers, scripts,
same-origin navigation) are not browsers acting for a page and pass unchanged.
"""

import re
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_graphql.web.graphql_http import PREFLIGHT_HEADERS, error_body
from crm_graphql.web.scope import header

# Pages a developer serves on this machine, on any port (Vite, webpack, Next.js dev servers).
LOCAL_DEVELOPMENT_ORIGIN = re.compile(r"http://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?")

ALLOWED_METHODS = "GET, POST"
# Always allowed; a preflight's other requested headers (tracing headers, say) are allowed
# too, since the origin is trusted: a fixed list would break clients that add their own.
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    *PREFLIGHT_HEADERS,
)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# How long a browser may reuse a preflight's answer: Chromium's ceiling (two hours).
PREFLIGHT_MAX_AGE_S = 7200
EXPOSED_HEADERS = "x-request-id"


class OriginPolicy:
    def __init__(self, listed: Iterable[str], local_development: bool) -> None:
        self.listed = frozenset(listed)
        self.local_development = local_development

    def allows(self, origin: str) -> bool:
        """`origin` exactly as a browser sends it: lower-case, no default port, no slash."""
        return origin in self.listed or (
            self.local_development and LOCAL_DEVELOPMENT_ORIGIN.fullmatch(origin) is not None
        )


class Cors:
    """Answers preflights and adds CORS headers to responses, for the origins `policy` allows."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Most requests (servers, same-origin pages) carry no Origin.
        origin = header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.policy.allows(origin)
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self.preflight(send, origin, allowed, headers)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers.add_vary_header("Origin")
                if allowed:
                    response_headers["access-control-allow-origin"] = origin
                    response_headers["access-control-expose-headers"] = EXPOSED_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def preflight(send: Send, origin: str, allowed: bool, headers: Headers) -> None:
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if not allowed:
            body = error_body(
                f"Pages on {origin} may not call this API: the origin is not in the setting "
                "cors_origins (CRM_CORS_ORIGINS).",
                "ORIGIN_NOT_ALLOWED",
            )
            answer = [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", vary.encode()),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": answer})
            await send({"type": "http.response.body", "body": body})
            return
        requested = headers.get("access-control-request-headers", "")
        allowed_headers = dict.fromkeys(ALLOWED_HEADERS)
        for name in requested.lower().split(","):
            if HEADER_NAME.fullmatch(name.strip()):
                allowed_headers[name.strip()] = None
        answer = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", ", ".join(allowed_headers).encode()),
            (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode()),
            (b"vary", vary.encode()),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})
