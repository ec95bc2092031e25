"""Alembic environment: async engine, URL from the settings, one migrator at a time."""

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from crm_graphql.db.tables import metadata
from crm_graphql.settings import get_settings

# Any constant works; it only has to be the same for every replica that migrates at start.
MIGRATION_LOCK_KEY = 7_262_611_001


def database_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise SystemExit(
            "No database configured: set CRM_DATABASE_URL, or use `crm-graphql migrate`, "
            "which starts the embedded PostgreSQL."
        )
    return url


def run_migrations(connection: Connection) -> None:
    # Replicas starting together all run `migrate`; the lock makes them take turns, and
    # the ones that come after find the schema at head and do nothing.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()  # a session-level lock outlives this transaction
    try:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
