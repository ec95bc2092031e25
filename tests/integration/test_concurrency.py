"""Races over real HTTP against the real server: row locks and the unique constraint hold."""

import asyncio
import itertools

import asyncpg

from tests.support.graphql import ADVANCE_STAGE, TRANSFER, GraphQLClient
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
