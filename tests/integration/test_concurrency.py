"""Races over real HTTP against the real server: row locks, conditional writes and the unique
constraint hold."""

import asyncio
import itertools
from datetime import datetime

import asyncpg

from tests.support.database import wait_until_blocked
from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    TRANSFER,
    UPDATE_LEAD,
    GraphQLClient,
)
from tests.support.leads import codes, create_lead, qualified_lead

RACERS = 20
LEAD_MOVES = {
    ("NEW", "CONTACTED"),
    ("NEW", "LOST"),
    ("CONTACTED", "QUALIFIED"),
    ("CONTACTED", "LOST"),
    ("QUALIFIED", "LOST"),
}


async def test_concurrent_transfers_create_exactly_one_sale(
    gql: GraphQLClient, db: asyncpg.Connection
):
    lead_id = await qualified_lead(gql)
    results = await asyncio.gather(
        *(gql(TRANSFER, {"input": {"leadId": lead_id}}) for _ in range(RACERS))
    )
    payloads = [r["transferToSales"] for r in results]
    winners = [p for p in payloads if not p["errors"]]
    assert len(winners) == 1
    assert winners[0]["sale"]["stage"] == "NEW"
    assert sorted(codes(p) for p in payloads if p["errors"]) == [["LEAD_LOCKED"]] * (RACERS - 1)
    assert await db.fetchval("SELECT count(*) FROM sales") == 1
    transfers = await db.fetchval(
        "SELECT count(*) FROM stage_changes WHERE to_stage = 'TRANSFERRED'"
    )
    assert transfers == 1


async def lead_history(db: asyncpg.Connection) -> list[tuple[str | None, str]]:
    rows = await db.fetch(
        "SELECT from_stage, to_stage FROM stage_changes WHERE lead_id IS NOT NULL ORDER BY id"
    )
    return [(row["from_stage"], row["to_stage"]) for row in rows]


def assert_linear(history: list[tuple[str | None, str]]) -> None:
    assert history[0] == (None, "NEW")
    for previous, change in itertools.pairwise(history):
        assert change[0] == previous[1], history
        assert change in LEAD_MOVES, history


async def test_concurrent_identical_moves_happen_once(gql: GraphQLClient, db: asyncpg.Connection):
    lead_id = (await create_lead(gql))["id"]
    results = await asyncio.gather(
        *(
            gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "CONTACTED"}})
            for _ in range(RACERS)
        )
    )
    payloads = [r["advanceStage"] for r in results]
    assert sum(not p["errors"] for p in payloads) == 1
    assert sorted(codes(p) for p in payloads if p["errors"]) == [["INVALID_TRANSITION"]] * (
        RACERS - 1
    )
    assert await lead_history(db) == [(None, "NEW"), ("NEW", "CONTACTED")]


async def test_a_mixed_race_leaves_a_linear_history(gql: GraphQLClient, db: asyncpg.Connection):
    lead_id = (await create_lead(gql))["id"]
    targets = [
        ["CONTACTED", "QUALIFIED", "LOST", "CONTACTED", "QUALIFIED"][i % 5] for i in range(RACERS)
    ]
    results = await asyncio.gather(
        *(gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": to}}) for to in targets)
    )
    payloads = [r["advanceStage"] for r in results]
    for payload, target in zip(payloads, targets, strict=True):
        if payload["errors"]:
            assert codes(payload) == ["INVALID_TRANSITION"]
        else:
            assert payload["lead"]["stage"] == target
    history = await lead_history(db)
    assert_linear(history)
    successes = [t for p, t in zip(payloads, targets, strict=True) if not p["errors"]]
    assert len(history) - 1 == len(successes) >= 1
    assert sorted(to for _, to in history[1:]) == sorted(successes)
    stage = await db.fetchval("SELECT stage FROM leads")
    assert stage == history[-1][1]


async def test_a_transfer_never_goes_through_on_rules_checked_against_an_older_row(
    gql: GraphQLClient, db: asyncpg.Connection
):
    """The transfer checks its rules on the row it read and writes only if the row is still
    that version: a domain change landing in between makes the score stale, and then the
    transfer must be refused, not made on the old domain."""
    for _ in range(8):
        lead_id = await qualified_lead(gql)
        transfer, update = await asyncio.gather(
            gql(TRANSFER, {"input": {"leadId": lead_id}}),
            gql(UPDATE_LEAD, {"input": {"leadId": lead_id, "businessDomain": "changed"}}),
        )
        transferred = not transfer["transferToSales"]["errors"]
        updated = not update["updateLead"]["errors"]
        assert transferred != updated, (transfer, update)
        if transferred:
            assert codes(update["updateLead"]) == ["LEAD_LOCKED"]
        else:
            assert "SCORE_STALE" in codes(transfer["transferToSales"])
    sales = await db.fetch("SELECT l.business_domain FROM sales s JOIN leads l ON l.id = s.lead_id")
    assert all(row["business_domain"] != "changed" for row in sales)


async def test_scores_racing_a_transfer_never_land_on_the_transferred_lead(
    gql: GraphQLClient, db: asyncpg.Connection
):
    """A burst of analyzeLead while the transfer runs: the transfer still goes through (each
    score changes the row it read, so it retries, and finally locks), and no score lands after
    it: the lead keeps the score the transfer was decided on."""
    lead_id = await qualified_lead(gql)
    transfer, *analyses = await asyncio.gather(
        gql(TRANSFER, {"input": {"leadId": lead_id}}),
        *(gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}}) for _ in range(RACERS)),
    )
    payload = transfer["transferToSales"]
    assert payload["errors"] == []
    for analysis in analyses:
        assert analysis["analyzeLead"]["errors"] == [] or codes(analysis["analyzeLead"]) == [
            "LEAD_LOCKED"
        ]
    stored = await db.fetchval("SELECT score->>'scored_at' FROM leads")
    decided_on = payload["lead"]["score"]["scoredAt"]
    assert datetime.fromisoformat(stored) == datetime.fromisoformat(decided_on)


async def test_a_transfer_whose_lead_changes_before_its_write_checks_the_rules_again(
    gql: GraphQLClient, db: asyncpg.Connection
):
    """Deterministic form of the race above: the transfer has checked its rules and waits for
    the row; the domain changes meanwhile. The write must miss, and the rules, checked again,
    refuse it."""
    lead_id = await qualified_lead(gql)
    row_id = await db.fetchval("SELECT max(id) FROM leads")
    async with db.transaction():
        await db.execute("SELECT 1 FROM leads WHERE id = $1 FOR UPDATE", row_id)
        transfer = asyncio.create_task(gql(TRANSFER, {"input": {"leadId": lead_id}}))
        await wait_until_blocked(db, "WITH lead AS")
        await db.execute("UPDATE leads SET business_domain = 'changed' WHERE id = $1", row_id)
    payload = (await transfer)["transferToSales"]
    assert "SCORE_STALE" in codes(payload)
    assert await db.fetchval("SELECT count(*) FROM sales") == 0
    assert await db.fetchval("SELECT stage FROM leads WHERE id = $1", row_id) == "QUALIFIED"


async def test_a_move_whose_lead_changes_stage_before_its_write_is_refused_without_a_trace(
    gql: GraphQLClient, db: asyncpg.Connection
):
    """The move checks the stage it finds under the row lock: a lead that went LOST while the
    move waited is not moved, gets no audit row, and the mover is not recorded."""
    lead_id = (await create_lead(gql))["id"]
    row_id = await db.fetchval("SELECT max(id) FROM leads")
    newcomer = gql.as_role("manager", sub="newcomer")
    async with db.transaction():
        await db.execute("SELECT 1 FROM leads WHERE id = $1 FOR UPDATE", row_id)
        move = asyncio.create_task(
            newcomer(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "CONTACTED"}})
        )
        await wait_until_blocked(db, "WITH old AS")
        await db.execute("UPDATE leads SET stage = 'LOST' WHERE id = $1", row_id)
    payload = (await move)["advanceStage"]
    assert codes(payload) == ["INVALID_TRANSITION"]
    assert await lead_history(db) == [(None, "NEW")]
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = 'newcomer'") == 0


async def test_a_move_waiting_for_its_writer_holds_up_no_other_writer(
    gql: GraphQLClient, db: asyncpg.Connection
):
    """A move takes the lock that orders audit ids only after its writer is recorded: while
    another transaction is updating that person's users row, their move waits, and everyone
    else's audited writes go on (taking the global lock first would stall them all). The
    move comes under a new name, so the server records its writer again (a writer it recorded
    lately under the same name and role is not recorded by each write)."""
    mine = (await create_lead(gql))["id"]
    renamed = gql.as_role("manager", name="Test Manager, renamed")
    someone_else = gql.as_role("manager", sub="someone-else")
    theirs = (await create_lead(someone_else))["id"]
    async with db.transaction():
        await db.execute("UPDATE users SET last_seen = last_seen WHERE id = 'test-manager'")
        waiting = asyncio.create_task(
            renamed(ADVANCE_STAGE, {"input": {"leadId": mine, "to": "CONTACTED"}})
        )
        await wait_until_blocked(db, "WITH old AS")
        other = await someone_else(ADVANCE_STAGE, {"input": {"leadId": theirs, "to": "LOST"}})
        assert other["advanceStage"]["errors"] == []
        assert not waiting.done()
    assert (await waiting)["advanceStage"]["errors"] == []
