"""The original service's main flow, end to end over HTTP."""

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


async def test_partner_lead_goes_from_creation_to_sales_and_is_then_locked(gql: GraphQLClient):
    created = await gql(CREATE_LEAD, {"input": {"source": "PARTNER", "businessDomain": "fintech"}})
    assert created["createLead"]["errors"] == []
    lead = created["createLead"]["lead"]
    assert lead["stage"] == "NEW"
    assert lead["score"] is None
    assert lead["history"] == [{"from": None, "to": "NEW", "at": lead["createdAt"]}]
    lead_id = lead["id"]

    analyzed = (await gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}}))["analyzeLead"]
    assert analyzed["errors"] == []
    score = analyzed["lead"]["score"]
    assert score["value"] == 0.6
    assert score["recommendation"] == "TRANSFER_TO_SALES"
    assert score["scorer"] == "heuristic"
    assert score["stale"] is False

    for stage in ("CONTACTED", "QUALIFIED"):
        moved = await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": stage}})
        assert moved["advanceStage"]["errors"] == []
        assert moved["advanceStage"]["lead"]["stage"] == stage

    transfer = (await gql(TRANSFER, {"input": {"leadId": lead_id}}))["transferToSales"]
    assert transfer["errors"] == []
    assert transfer["lead"]["stage"] == "TRANSFERRED"
    assert transfer["sale"]["stage"] == "NEW"
    assert transfer["sale"]["lead"]["id"] == lead_id
    assert transfer["sale"]["history"][0]["from"] is None
    assert [(h["from"], h["to"]) for h in transfer["lead"]["history"]] == [
        (None, "NEW"),
        ("NEW", "CONTACTED"),
        ("CONTACTED", "QUALIFIED"),
        ("QUALIFIED", "TRANSFERRED"),
    ]
    before = (await gql(GET_LEAD, {"id": lead_id}))["lead"]
    assert before["sale"]["id"] == transfer["sale"]["id"]

    refusals = {
        "updateLead": await gql(
            UPDATE_LEAD, {"input": {"leadId": lead_id, "businessDomain": "other"}}
        ),
        "logActivity": await gql(LOG_ACTIVITY, {"input": {"leadId": lead_id, "kind": "CALL"}}),
        "analyzeLead": await gql(ANALYZE_LEAD, {"input": {"leadId": lead_id}}),
        "advanceStage": await gql(ADVANCE_STAGE, {"input": {"leadId": lead_id, "to": "LOST"}}),
        "transferToSales": await gql(TRANSFER, {"input": {"leadId": lead_id}}),
    }
    for name, data in refusals.items():
        payload = data[name]
        assert [e["code"] for e in payload["errors"]] == ["LEAD_LOCKED"], name
        assert payload["lead"] is None, name
    assert (await gql(GET_LEAD, {"id": lead_id}))["lead"] == before
