from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crm_graphql.settings import Settings


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    database_url = url or settings.database_url
    if database_url is None:
        raise RuntimeError("No database URL: the embedded PostgreSQL must be started first.")
    return create_async_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        # Each request takes a connection only for the statements it runs.
        pool_timeout=10,
    )
