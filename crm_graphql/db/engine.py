import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crm_graphql.settings import Settings

# asyncpg's own deadline for a statement: PostgreSQL's statement_timeout plus this margin, so a
# server that stopped answering altogether (a dead peer, no RST) cannot hang a request.
CLIENT_TIMEOUT_MARGIN_S = 2.0


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    database_url = url or settings.database_url
    if database_url is None:
        raise RuntimeError("No database URL: the embedded PostgreSQL must be started first.")
    return create_async_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A connection broken by a restart fails its request with SERVICE_UNAVAILABLE and
        # invalidates the pool, so the following requests connect afresh: no ping per checkout.
        pool_pre_ping=False,
        # Transactions are opened by db/driver.py on the driver's connection, so a use case's
        # raw and Core statements share one; anything else runs one statement at a time.
        isolation_level="AUTOCOMMIT",
        # Each request takes a connection only for the statements it runs.
        pool_timeout=settings.db_pool_timeout_s,
        # Every lead read decodes its score's JSONB; the standard library's decoder costs more.
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.statement_timeout_ms / 1000 + CLIENT_TIMEOUT_MARGIN_S,
            "server_settings": {"statement_timeout": str(settings.statement_timeout_ms)},
        },
    )
