"""The ASGI application: /graphql (HTTP and WebSocket), /healthz, /readyz and, outside
production, GraphiQL's assets under /graphiql/assets."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from crm_graphql.api.schema import create_schema
from crm_graphql.db.engine import create_engine
from crm_graphql.db.statements import install_statement_counter
from crm_graphql.services.container import Services
from crm_graphql.settings import Settings, get_settings
from crm_graphql.tokens import TokenCodec
from crm_graphql.web.cors import Cors, OriginPolicy
from crm_graphql.web.frames import ExposeFrameWriter
from crm_graphql.web.graphql_http import CrmGraphQL
from crm_graphql.web.ide import asset_route, graphiql_page
from crm_graphql.web.middleware import LimitRequestBody, RequestLog
from crm_graphql.web.persisted import PersistedDocuments
from crm_graphql.web.shutdown import CloseWebSocketsOnShutdown, Shutdown

logger = logging.getLogger(__name__)


# The HTTP methods of /graphql; the fast path takes exactly these (Starlette also routes HEAD
# with GET to the endpoint, and answers 405 for the rest).
GRAPHQL_HTTP_METHODS = ["GET", "POST"]


def migrations_head() -> str | None:
    config = Config()
    config.set_main_option("script_location", "crm_graphql:migrations")
    return ScriptDirectory.from_config(config).get_current_head()


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or get_settings()
    tokens = TokenCodec.from_settings(settings)
    engine = create_engine(settings)
    services = Services.create(engine, settings)
    if settings.expose_sql_count:
        install_statement_counter(engine)
    schema = create_schema(settings)
    # Browser pages on other origins: the same policy for HTTP (CORS) and WebSocket handshakes.
    origins = OriginPolicy(settings.cors_origins, local_development=not settings.production)
    graphiql_token = settings.graphiql_token.get_secret_value() if settings.graphiql_token else None
    graphql = CrmGraphQL(
        services,
        tokens,
        origins.allows,
        PersistedDocuments.load(settings.trusted_documents, settings.apq_cache_chars),
        ide_page=None if settings.production else graphiql_page("/graphql", graphiql_token),
        schema=schema,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
    )
    head = migrations_head()
    shutdown = Shutdown()

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if shutdown.stopping.is_set():
            return JSONResponse({"status": "unavailable", "reason": "shutting down"}, 503)
        try:
            async with engine.connect() as conn:
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except Exception as error:  # any failure means: not ready
            logger.warning("readiness check failed: %r", error)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        if version != head:
            return JSONResponse({"status": "unavailable", "schema": version, "expected": head}, 503)
        # Informational: without LISTEN, events are late (caught up on reconnect), not lost.
        feed = {
            "listening": services.changes.listening,
            "subscribers": services.changes.subscriber_count,
            "audiences": services.changes.audience_count,
            "directSubscribers": services.changes.direct_subscriber_count,
            "position": services.changes.position,
        }
        body = {"status": "ok", "schema": version, "changeFeed": feed}
        if graphql.compiled is not None:
            # Queries answered by the read compiler, and why the others were not.
            body["compiledReads"] = dict(graphql.compiled.counts)
        if graphql.writes is not None:
            # Mutations answered by the write compiler, and why the others were not.
            body["compiledWrites"] = dict(graphql.writes.counts)
        return JSONResponse(body)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        shutdown.install()
        app.state.shutdown = shutdown  # subscriptions may watch shutdown.stopping
        await services.changes.start()
        await services.dispatcher.start()
        # Everything allocated so far (modules, the schema, the pool) lives as long as the
        # process; frozen, full collections stop walking it, which halved the flow's p99
        # (docs/benchmarks.md). Startup's garbage is collected first, not frozen with it.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # By now the shutdown middleware has closed every WebSocket (1001), so no
            # subscription is waiting on the feed; then the LISTEN connection, then the pool.
            await services.changes.stop()
            await services.dispatcher.stop()
            await services.close()
            await engine.dispose()

    http_middleware = [
        Middleware(RequestLog),
        Middleware(Cors, policy=origins),
        Middleware(LimitRequestBody, max_bytes=settings.max_body_bytes),
    ]
    starlette = Starlette(
        routes=[
            Route("/graphql", graphql, methods=GRAPHQL_HTTP_METHODS),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *([] if settings.production else [asset_route()]),
        ],
        middleware=[
            # First, so it sees uvicorn's own `send` (web/frames.py).
            Middleware(ExposeFrameWriter),
            *http_middleware,
            Middleware(CloseWebSocketsOnShutdown, shutdown=shutdown),
        ],
        lifespan=lifespan,
    )
    # The same endpoint behind the same HTTP middleware, without Starlette's router and its
    # two exception middlewares (3 % of the server's CPU in the flow's profile): the endpoint
    # answers its own errors, and uvicorn answers 500 (logged) for anything it lets escape.
    graphql_over_http: ASGIApp = graphql
    for cls, args, kwargs in reversed(http_middleware):  # wrapped as Starlette wraps them
        graphql_over_http = cls(graphql_over_http, *args, **kwargs)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/graphql"
            and scope["method"] in GRAPHQL_HTTP_METHODS
        ):
            await graphql_over_http(scope, receive, send)
        else:  # WebSockets, the lifespan, health checks, other paths and methods
            await starlette(scope, receive, send)

    return app
