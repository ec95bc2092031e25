"""Unexpected failures are logged with their traceback and reach the client masked; the
client's own mistakes (syntax, validation) are reported as they are."""

import asyncio
import uuid
from pathlib import Path

import asyncpg

from tests.support.graphql import UPDATE_LEAD, GraphQLClient
from tests.support.leads import create_lead


async def test_an_unexpected_failure_is_masked_and_logged(
    gql: GraphQLClient, db: asyncpg.Connection, server_log: Path
):
    lead_id = (await create_lead(gql))["id"]
    marker = f"injected fault {uuid.uuid4().hex}"
    await db.execute(
        f"""
        CREATE FUNCTION test_fail_lead_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{marker}'; END $$;
        CREATE TRIGGER test_fail_lead_update BEFORE UPDATE ON leads
        FOR EACH ROW EXECUTE FUNCTION test_fail_lead_update();
        """
    )
    try:
        response = await gql.http.post(
            "/graphql",
            json={
                "query": UPDATE_LEAD,
                "variables": {"input": {"leadId": lead_id, "businessDomain": "retail"}},
            },
            headers=gql.auth_headers,
        )
    finally:
        await db.execute(
            "DROP TRIGGER test_fail_lead_update ON leads; DROP FUNCTION test_fail_lead_update();"
        )
    assert response.status_code == 200
    body = response.json()
    [error] = body["errors"]
    assert error["message"] == "Internal server error."
    assert "extensions" not in error or "exception" not in error["extensions"]
    for internal in (marker, "UPDATE", "leads", "asyncpg", "Traceback", "sqlalchemy"):
        assert internal not in response.text
    assert body["data"] is None

    log = await asyncio.to_thread(server_log.read_text, errors="replace")
    assert marker in log
    entry = log[log.rindex("unexpected error") :]
    assert "Traceback (most recent call last)" in entry
    assert marker in entry
    assert "updateLead" in entry


async def test_syntax_errors_are_not_masked(gql: GraphQLClient):
    body = await gql.raw("{ leads { totalCount }")
    [error] = body["errors"]
    assert error["message"].startswith("Syntax Error")


async def test_validation_errors_are_not_masked(gql: GraphQLClient):
    body = await gql.raw("{ leads { totalCount nope } }")
    [error] = body["errors"]
    assert "Cannot query field 'nope' on type 'LeadConnection'" in error["message"]

    body = await gql.raw("mutation { createLead(input: {source: ROBOT}) { errors { code } } }")
    [error] = body["errors"]
    assert "ROBOT" in error["message"]
    assert "LeadSource" in error["message"]
