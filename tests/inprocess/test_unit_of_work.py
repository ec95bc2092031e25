"""The unit of work (db/unit_of_work.py, db/engine.py) against the real PostgreSQL: the engine
in autocommit cannot hand out a transaction that is not one (engine.begin() is atomic, a
connection's own begin() refuses), and each mode and concurrency policy does what its name
says."""

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db import repository
from crm_graphql.db.driver import driver, transaction
from crm_graphql.db.unit_of_work import (
    WRITE_ATTEMPTS,
    Database,
    conditional_write,
    optimistic_then_locked,
    retried_transaction,
)
from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation
from crm_graphql.domain.lead import LeadFields

INSERT_USER = text("INSERT INTO users (id, name, role) VALUES (:id, 'Ann', 'manager')")


async def insert_twice(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(INSERT_USER, {"id": "ann"})
        await conn.execute(INSERT_USER, {"id": "ann"})


async def insert_then_fail(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        await conn.execute(INSERT_USER, {"id": "ann"})
        raise RuntimeError("the use case fails after its first write")


async def test_engine_begin_commits_all_or_nothing(engine: AsyncEngine, db: asyncpg.Connection):
    with pytest.raises(IntegrityError):
        await insert_twice(engine)
    assert await db.fetchval("SELECT count(*) FROM users") == 0
    async with engine.begin() as conn:
        await conn.execute(INSERT_USER, {"id": "ann"})
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_core_statements_run_in_the_driver_transaction(
    engine: AsyncEngine, db: asyncpg.Connection
):
    with pytest.raises(RuntimeError):
        await insert_then_fail(engine)
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_a_connection_refuses_a_begin_that_would_not_be_atomic(engine: AsyncEngine):
    async with engine.connect() as conn:
        with pytest.raises(TypeError, match="not atomic"):
            conn.begin()
        with pytest.raises(TypeError, match="not atomic"):
            conn.begin_nested()


# --- the modes and policies of db/unit_of_work.py ------------------------------------------

ACTOR = Actor(user_id="ann", name="Ann", role=Role.MANAGER)


async def new_lead(db: Database) -> int:
    async with db.single_statement() as conn:
        lead = await repository.create_lead(conn, ACTOR, LeadSource.MANUAL, LeadFields())
    assert lead is not None
    return lead.id


async def is_locked(db: asyncpg.Connection, lead_id: int) -> bool:
    try:
        async with db.transaction():
            await db.execute("SELECT 1 FROM leads WHERE id = $1 FOR UPDATE NOWAIT", lead_id)
    except asyncpg.LockNotAvailableError:
        return True
    return False


async def in_transaction(conn: AsyncConnection) -> bool:
    return (await driver(conn)).is_in_transaction()


async def test_a_single_statement_runs_outside_any_transaction(engine: AsyncEngine):
    async with Database(engine).single_statement() as conn:
        assert not await in_transaction(conn)


async def test_a_locked_lead_is_locked_until_its_transaction_ends(
    engine: AsyncEngine, db: asyncpg.Connection
):
    database = Database(engine)
    lead_id = await new_lead(database)
    async with database.locked_lead(ACTOR, lead_id) as (conn, lead):
        assert lead is not None
        assert lead.id == lead_id
        assert await in_transaction(conn)
        assert await is_locked(db, lead_id)
    assert not await is_locked(db, lead_id)
    async with database.locked_lead(ACTOR, lead_id + 100) as (_, missing):
        assert missing is None


async def test_locked_leads_lock_every_lead_that_exists(
    engine: AsyncEngine, db: asyncpg.Connection
):
    database = Database(engine)
    first, second = await new_lead(database), await new_lead(database)
    async with database.locked_leads((second, first, second + 100)) as (_, locked):
        assert sorted(locked) == [first, second]
        assert await is_locked(db, first)
        assert await is_locked(db, second)


async def test_conditional_write_retries_while_no_rule_forbids_then_gives_up():
    outcomes: list[str | None] = [None, "written"]

    async def write() -> str | None:
        return outcomes.pop(0)

    async def no_rule_forbids() -> None:
        return None

    assert await conditional_write("lead", write, no_rule_forbids) == "written"

    async def forbidden() -> Violation:
        return Violation(ErrorCode.INVALID_TRANSITION, "no")

    with pytest.raises(RuleViolation):
        await conditional_write("lead", None, forbidden)

    async def never() -> None:
        return None

    with pytest.raises(RuntimeError, match=f"each of {WRITE_ATTEMPTS}"):
        await conditional_write("lead", never, no_rule_forbids)


async def test_a_retried_transaction_rolls_back_each_attempt_it_gives_up(
    engine: AsyncEngine, db: asyncpg.Connection
):
    attempts: list[int] = []

    async def body(conn: AsyncConnection) -> int | None:
        attempts.append(len(attempts))
        await conn.execute(INSERT_USER, {"id": f"user-{len(attempts)}"})
        return None if len(attempts) < 3 else len(attempts)

    assert await retried_transaction(Database(engine), 3, body) == 3
    assert await db.fetchval("SELECT array_agg(id) FROM users") == ["user-3"]

    async def gives_up(conn: AsyncConnection) -> None:
        return None

    with pytest.raises(RuntimeError, match="kept changing, 2 times"):
        await retried_transaction(Database(engine), 2, gives_up)


async def test_optimistic_then_locked_takes_the_lock_only_on_its_last_attempt(
    engine: AsyncEngine,
):
    seen: list[tuple[bool, bool]] = []

    async def attempt(conn: AsyncConnection, lock: bool) -> str | None:
        seen.append((lock, await in_transaction(conn)))
        return "written" if lock else None

    assert await optimistic_then_locked(Database(engine), "lead", attempt) == "written"
    assert seen == [(False, False)] * (WRITE_ATTEMPTS - 1) + [(True, True)]
