"""The ASGI application: /graphql (HTTP and WebSocket), /healthz and /readyz."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from crm_graphql.api.context import Context
from crm_graphql.api.schema import create_schema
from crm_graphql.db.engine import create_engine
from crm_graphql.db.statements import ReportStatementCount, install_statement_counter
from crm_graphql.services.container import Services
from crm_graphql.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def migrations_head() -> str | None:
    config = Config()
    config.set_main_option("script_location", "crm_graphql:migrations")
    return ScriptDirectory.from_config(config).get_current_head()


class CrmGraphQL(GraphQL[Context, None]):
    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = services

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(services=self.services, request=request, response=response)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    engine = create_engine(settings)
    services = Services.create(engine, settings)
    extensions = []
    if settings.expose_sql_count:
        install_statement_counter(engine)
        extensions.append(ReportStatementCount)
    schema = create_schema(extra_extensions=extensions)
    graphql = CrmGraphQL(
        services,
        schema=schema,
        graphql_ide="graphiql",
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
    )
    head = migrations_head()

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            async with engine.connect() as conn:
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except Exception as error:  # any failure means: not ready
            logger.warning("readiness check failed: %s", error)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        if version != head:
            return JSONResponse({"status": "unavailable", "schema": version, "expected": head}, 503)
        # Informational: without LISTEN, events are late (caught up on reconnect), not lost.
        feed = {
            "listening": services.changes.listening,
            "subscribers": services.changes.subscriber_count,
        }
        return JSONResponse({"status": "ok", "schema": version, "changeFeed": feed})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await services.changes.start()
        try:
            yield
        finally:
            await services.changes.stop()
            await engine.dispose()

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )
