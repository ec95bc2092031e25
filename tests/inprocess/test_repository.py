"""db/repository.py against the real PostgreSQL, without a server."""

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository
from crm_graphql.db.driver import driver
from crm_graphql.db.tables import DUPLICATE_GUARD_PREFIX
from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.lead import validate_lead_fields

ACTOR = Actor(user_id="ann", name="Ann", role=Role.MANAGER)
COPY_EMAIL = "UPDATE leads SET email = 'ann@acme.com' WHERE id = 2"


async def test_a_duplicate_is_recognised_by_its_constraint_on_either_path(engine: AsyncEngine):
    fields = validate_lead_fields({"email": "ann@acme.com"}, None)
    async with engine.connect() as conn:
        await repository.create_lead(conn, ACTOR, LeadSource.MANUAL, fields)
        await repository.create_lead(conn, ACTOR, LeadSource.MANUAL, validate_lead_fields({}, None))
        with pytest.raises(IntegrityError) as through_sqlalchemy:
            await conn.execute(text(COPY_EMAIL))
        with pytest.raises(asyncpg.UniqueViolationError) as straight:
            await (await driver(conn)).execute(COPY_EMAIL)
    for caught in (through_sqlalchemy.value, straight.value):
        assert repository.is_unique_violation(caught, DUPLICATE_GUARD_PREFIX)
        assert not repository.is_unique_violation(caught, "uq_sales_lead_id")
    assert not repository.is_unique_violation(RuntimeError("unique constraint"), "uq_")
