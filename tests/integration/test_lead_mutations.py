"""Every lead mutation over HTTP: its effect, its refusals, and that a refusal changes nothing."""

import asyncpg
import pytest

from crm_graphql.api.ids import encode_global_id
from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    CREATE_LEAD,
    GET_LEAD,
    LOG_ACTIVITY,
    TRANSFER,
    UPDATE_LEAD,
    GraphQLClient,
)
from tests.support.leads import (
    MISSING_LEAD_ID,
    advance,
    all_rows,
    analyze,
    codes,
    create_lead,
    ok,
    qualified_lead,
    transferred_lead,
)

LEAD_MUTATIONS = {
    "updateLead": (UPDATE_LEAD, {"businessDomain": "retail"}),
    "logActivity": (LOG_ACTIVITY, {"kind": "CALL"}),
    "analyzeLead": (ANALYZE_LEAD, {}),
    "advanceStage": (ADVANCE_STAGE, {"to": "CONTACTED"}),
    "transferToSales": (TRANSFER, {}),
}


async def run(gql: GraphQLClient, name: str, lead_id: str, **extra: object) -> dict:
    query, defaults = LEAD_MUTATIONS[name]
    data = await gql(query, {"input": {"leadId": lead_id, **defaults, **extra}})
    return data[name]


async def test_create_lead_starts_new_with_its_history(gql: GraphQLClient, db: asyncpg.Connection):
    lead = await create_lead(gql, "SCANNER", "  logistics  ")
    assert lead["source"] == "SCANNER"
    assert lead["stage"] == "NEW"
    assert lead["businessDomain"] == "logistics"
    assert lead["activityCount"] == 0
    assert lead["score"] is None
    assert lead["sale"] is None
    assert lead["history"] == [{"from": None, "to": "NEW", "at": lead["createdAt"]}]
    assert lead["createdAt"].endswith("+00:00")
    stored = await db.fetchrow("SELECT business_domain, stage FROM leads")
    assert dict(stored) == {"business_domain": "logistics", "stage": "NEW"}


async def test_create_lead_without_a_domain(gql: GraphQLClient):
    data = await gql(CREATE_LEAD, {"input": {"source": "MANUAL"}})
    assert ok(data["createLead"])["lead"]["businessDomain"] is None


@pytest.mark.parametrize("domain", ["", "   ", "x" * 121, "fin\x00tech", "fin\ud800tech"])
async def test_create_lead_refuses_a_bad_domain(
    gql: GraphQLClient, db: asyncpg.Connection, domain: str
):
    data = await gql(CREATE_LEAD, {"input": {"source": "MANUAL", "businessDomain": domain}})
    payload = data["createLead"]
    assert payload["lead"] is None
    [error] = payload["errors"]
    assert error["code"] == "INVALID_INPUT"
    assert error["field"] == ["businessDomain"]
    assert await db.fetchval("SELECT count(*) FROM leads") == 0


async def test_a_120_character_domain_is_accepted(gql: GraphQLClient):
    lead = await create_lead(gql, "MANUAL", " " + "é" * 120 + " ")
    assert lead["businessDomain"] == "é" * 120


async def test_update_lead_absent_domain_leaves_it_and_null_clears_it(gql: GraphQLClient):
    lead_id = (await create_lead(gql))["id"]
    untouched = ok((await gql(UPDATE_LEAD, {"input": {"leadId": lead_id}}))["updateLead"])
    assert untouched["lead"]["businessDomain"] == "fintech"
    changed = ok(await run(gql, "updateLead", lead_id, businessDomain="  retail "))
    assert changed["lead"]["businessDomain"] == "retail"
    cleared = ok(await run(gql, "updateLead", lead_id, businessDomain=None))
    assert cleared["lead"]["businessDomain"] is None
    assert (await gql(GET_LEAD, {"id": lead_id}))["lead"]["businessDomain"] is None


@pytest.mark.parametrize("domain", ["", "x" * 121])
async def test_update_lead_refuses_a_bad_domain_and_changes_nothing(
    gql: GraphQLClient, db: asyncpg.Connection, domain: str
):
    lead_id = (await create_lead(gql))["id"]
    before = await all_rows(db)
    payload = await run(gql, "updateLead", lead_id, businessDomain=domain)
    assert codes(payload) == ["INVALID_INPUT"]
    assert payload["errors"][0]["field"] == ["businessDomain"]
    assert await all_rows(db) == before


async def test_changing_the_domain_makes_the_score_stale_and_blocks_transfer(gql: GraphQLClient):
    lead_id = await qualified_lead(gql)
    same = ok(await run(gql, "updateLead", lead_id, businessDomain="fintech"))
    assert same["lead"]["score"]["stale"] is False
    changed = ok(await run(gql, "updateLead", lead_id, businessDomain="retail"))
    assert changed["lead"]["score"]["stale"] is True
    assert changed["lead"]["score"]["value"] == 0.6  # kept, but marked stale
    refused = await run(gql, "transferToSales", lead_id)
    assert codes(refused) == ["SCORE_STALE"]
    rescored = await analyze(gql, lead_id)
    assert rescored["score"]["stale"] is False
    ok(await run(gql, "transferToSales", lead_id))


async def test_log_activity_counts_and_makes_the_score_stale(
    gql: GraphQLClient, db: asyncpg.Connection
):
    lead_id = (await create_lead(gql))["id"]
    await analyze(gql, lead_id)
    payload = ok(await run(gql, "logActivity", lead_id, kind="MEETING", note="demo booked"))
    assert payload["lead"]["activityCount"] == 1
    assert payload["lead"]["score"]["stale"] is True
    for kind in ("CALL", "EMAIL", "NOTE"):
        ok(await run(gql, "logActivity", lead_id, kind=kind))
    rows = await db.fetch("SELECT kind, note FROM activities ORDER BY id")
    assert [(r["kind"], r["note"]) for r in rows] == [
        ("MEETING", "demo booked"),
        ("CALL", None),
        ("EMAIL", None),
        ("NOTE", None),
    ]
    rescored = await analyze(gql, lead_id)
    assert rescored["activityCount"] == 4
    assert rescored["score"]["value"] == 0.8  # partner 0.3 + domain 0.3 + more than 3: 0.2


@pytest.mark.parametrize("note", ["x" * 10_001, "a\x00b", "a\udfffb"])
async def test_log_activity_refuses_a_bad_note(
    gql: GraphQLClient, db: asyncpg.Connection, note: str
):
    lead_id = (await create_lead(gql))["id"]
    before = await all_rows(db)
    payload = await run(gql, "logActivity", lead_id, note=note)
    assert codes(payload) == ["INVALID_INPUT"]
    assert payload["errors"][0]["field"] == ["note"]
    assert await all_rows(db) == before


async def test_analyze_reports_score_reasons_and_recommendation(gql: GraphQLClient):
    lead_id = (await create_lead(gql, "SCANNER", None))["id"]
    score = (await analyze(gql, lead_id))["score"]
    assert score["value"] == 0.1
    assert score["recommendation"] == "NURTURE"
    assert score["reasons"] == ["source scanner (+0.1)", "missing business domain"]
    assert score["scorer"] == "heuristic"
    assert score["stale"] is False
    assert score["scoredAt"].endswith("+00:00")


async def test_advance_stage_writes_the_history(gql: GraphQLClient):
    lead_id = (await create_lead(gql))["id"]
    lead = await advance(gql, lead_id, "CONTACTED", "LOST")
    assert lead["stage"] == "LOST"
    assert [(h["from"], h["to"]) for h in lead["history"]] == [
        (None, "NEW"),
        ("NEW", "CONTACTED"),
        ("CONTACTED", "LOST"),
    ]


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), "QUALIFIED"),
        ((), "NEW"),
        (("CONTACTED", "QUALIFIED"), "TRANSFERRED"),
        (("LOST",), "CONTACTED"),
    ],
)
async def test_advance_stage_refuses_a_move_the_lifecycle_forbids(
    gql: GraphQLClient, db: asyncpg.Connection, path: tuple[str, ...], target: str
):
    lead_id = (await create_lead(gql))["id"]
    await advance(gql, lead_id, *path)
    before = await all_rows(db)
    payload = await run(gql, "advanceStage", lead_id, to=target)
    assert payload["lead"] is None
    assert codes(payload) == ["INVALID_TRANSITION"]
    assert payload["errors"][0]["field"] == ["to"]
    assert await all_rows(db) == before


async def test_a_refused_move_by_someone_new_leaves_no_trace(
    gql: GraphQLClient, db: asyncpg.Connection
):
    """The move is one statement that checks the stage under its row lock and records its
    writer only if it moved the lead: a refusal must not record the person either."""
    lead_id = (await create_lead(gql))["id"]
    before = await all_rows(db)
    newcomer = gql.as_role("manager", sub="newcomer")
    payload = await run(newcomer, "advanceStage", lead_id, to="QUALIFIED")
    assert codes(payload) == ["INVALID_TRANSITION"]
    assert await all_rows(db) == before
    ok(await run(newcomer, "advanceStage", lead_id, to="CONTACTED"))
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = 'newcomer'") == 1


async def test_a_lost_lead_can_still_be_edited(gql: GraphQLClient):
    lead_id = (await create_lead(gql))["id"]
    await advance(gql, lead_id, "LOST")
    ok(await run(gql, "updateLead", lead_id, businessDomain="retail"))
    ok(await run(gql, "logActivity", lead_id))
    ok(await run(gql, "analyzeLead", lead_id))


async def test_transfer_reports_every_failing_condition_and_changes_nothing(
    gql: GraphQLClient, db: asyncpg.Connection
):
    lead_id = (await create_lead(gql, "SCANNER", None))["id"]
    before = await all_rows(db)
    payload = await run(gql, "transferToSales", lead_id)
    assert payload["lead"] is None
    assert payload["sale"] is None
    assert codes(payload) == ["NOT_QUALIFIED", "DOMAIN_REQUIRED", "SCORE_REQUIRED"]
    assert all(error["message"] for error in payload["errors"])
    assert await all_rows(db) == before

    await analyze(gql, lead_id)  # 0.1: too low
    await advance(gql, lead_id, "CONTACTED", "QUALIFIED")
    await run(gql, "logActivity", lead_id)  # and now stale
    before = await all_rows(db)
    payload = await run(gql, "transferToSales", lead_id)
    assert codes(payload) == ["DOMAIN_REQUIRED", "SCORE_TOO_LOW", "SCORE_STALE"]
    assert await all_rows(db) == before


async def test_transfer_creates_the_sale_and_locks_the_lead(
    gql: GraphQLClient, db: asyncpg.Connection
):
    lead_id, sale_id = await transferred_lead(gql)
    assert await db.fetchval("SELECT count(*) FROM sales") == 1
    before = await all_rows(db)
    for name, extra in [
        ("updateLead", {"businessDomain": None}),
        ("logActivity", {}),
        ("analyzeLead", {}),
        ("advanceStage", {"to": "LOST"}),
        ("transferToSales", {}),
    ]:
        payload = await run(gql, name, lead_id, **extra)
        assert codes(payload) == ["LEAD_LOCKED"], name
    assert await all_rows(db) == before
    lead = (await gql(GET_LEAD, {"id": lead_id}))["lead"]
    assert lead["stage"] == "TRANSFERRED"
    assert lead["sale"] == {"id": sale_id, "stage": "NEW"}


@pytest.mark.parametrize("name", sorted(LEAD_MUTATIONS))
async def test_a_missing_lead_is_not_found(gql: GraphQLClient, name: str):
    payload = await run(gql, name, MISSING_LEAD_ID)
    assert codes(payload) == ["NOT_FOUND"]
    assert payload["errors"][0]["field"] == ["leadId"]


@pytest.mark.parametrize("name", sorted(LEAD_MUTATIONS))
async def test_a_malformed_or_foreign_lead_id_is_a_user_error(
    gql: GraphQLClient, db: asyncpg.Connection, name: str
):
    await transferred_lead(gql)  # a Sale 1 exists, so the foreign ID names a real object
    before = await all_rows(db)
    for bad_id in ["garbage", "TGVhZDo=", encode_global_id("Sale", 1), encode_global_id("Lead", 0)]:
        payload = await run(gql, name, bad_id)
        [error] = payload["errors"]
        assert error["code"] == "INVALID_INPUT", bad_id
        assert error["field"] == ["leadId"], bad_id
    assert await all_rows(db) == before


async def test_the_largest_possible_id_is_simply_not_found(gql: GraphQLClient):
    payload = await run(gql, "analyzeLead", encode_global_id("Lead", 2**63 - 1))
    assert codes(payload) == ["NOT_FOUND"]


async def test_each_mutation_of_a_document_sees_the_ones_before_it(gql: GraphQLClient):
    lead_id = (await create_lead(gql))["id"]
    data = await gql(
        """
        mutation($id: ID!) {
          a: advanceStage(input: {leadId: $id, to: CONTACTED}) { lead { history { to } } }
          b: advanceStage(input: {leadId: $id, to: QUALIFIED}) { lead { history { to } } }
        }""",
        {"id": lead_id},
    )
    assert [h["to"] for h in data["a"]["lead"]["history"]] == ["NEW", "CONTACTED"]
    assert [h["to"] for h in data["b"]["lead"]["history"]] == ["NEW", "CONTACTED", "QUALIFIED"]

    _, sale_id = await transferred_lead(gql)
    data = await gql.as_role("sales")(
        """
        mutation($id: ID!) {
          a: advanceSaleStage(input: {saleId: $id, to: KYC}) { sale { history { to } } }
          b: advanceSaleStage(input: {saleId: $id, to: AGREEMENT}) { sale { history { to } } }
        }""",
        {"id": sale_id},
    )
    assert [h["to"] for h in data["b"]["sale"]["history"]] == ["NEW", "KYC", "AGREEMENT"]
