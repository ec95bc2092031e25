"""mergeLeads over HTTP: what moves, what is filled, what the histories show, what is refused."""

from tests.support.auth import error_codes
from tests.support.graphql import (
    ADVANCE_STAGE,
    ANALYZE_LEAD,
    LOG_ACTIVITY,
    TRANSFER,
    GraphQLClient,
)
from tests.support.leads import all_rows

LEAD = """
  id stage activityCount businessDomain contactName companyName email phone website lostReason
  mergedInto { id } duplicateOf { id }
  history { from to note mergedFrom { id } }
  fullHistory: history(includeMerged: true) { from to note mergedFrom { id } }
"""
CREATE = f"""
mutation($input: CreateLeadInput!) {{
  createLead(input: $input) {{ lead {{ {LEAD} }} errors {{ code message field }} }}
}}"""
MERGE = f"""
mutation($keep: ID!, $merge: ID!) {{
  mergeLeads(input: {{keepId: $keep, mergeId: $merge}}) {{
    lead {{ {LEAD} }}
    merged {{ {LEAD} }}
    errors {{ code message field }}
    duplicateOf {{ id }}
  }}
}}"""
GET = f"query($id: ID!) {{ lead(id: $id) {{ {LEAD} }} }}"


async def create(gql: GraphQLClient, **fields) -> dict:
    created = (await gql(CREATE, {"input": {"source": "PARTNER", **fields}}))["createLead"]
    assert created["errors"] == [], created["errors"]
    return created["lead"]


async def merge(gql: GraphQLClient, keep: str, other: str) -> dict:
    return (await gql(MERGE, {"keep": keep, "merge": other}))["mergeLeads"]


async def test_merge_moves_activities_and_history_and_fills_empty_fields(gql: GraphQLClient, db):
    keep = await create(gql, contactName="Ann", email="ann@acme.com")
    await gql(LOG_ACTIVITY, {"input": {"leadId": keep["id"], "kind": "CALL"}})
    other = await create(
        gql,
        businessDomain="fintech",
        contactName="Ann Lee",
        companyName="Acme",
        email="ann.lee@acme.com",
        phone="+49301234567",
        website="acme.com",
    )
    await gql(ADVANCE_STAGE, {"input": {"leadId": other["id"], "to": "CONTACTED"}})
    for kind in ("EMAIL", "MEETING"):
        await gql(LOG_ACTIVITY, {"input": {"leadId": other["id"], "kind": kind}})

    result = await merge(gql, keep["id"], other["id"])
    assert result["errors"] == []
    kept, merged = result["lead"], result["merged"]

    # Empty fields filled from the duplicate; filled ones kept as they were.
    assert kept["contactName"] == "Ann"
    assert kept["email"] == "ann@acme.com"
    assert kept["companyName"] == "Acme"
    assert kept["phone"] == "+49301234567"
    assert kept["website"] == "https://acme.com"
    assert kept["businessDomain"] == "fintech"
    assert kept["stage"] == "NEW"
    assert kept["activityCount"] == 3
    assert (
        await db.fetchval(
            "SELECT count(*) FROM activities WHERE lead_id = (SELECT min(id) FROM leads)"
        )
        == 3
    )

    assert merged["stage"] == "LOST"
    assert merged["lostReason"] == "Merged into another lead as a duplicate."
    assert merged["mergedInto"] == {"id": keep["id"]}
    assert merged["activityCount"] == 0

    # The kept lead's own history stays linear, plus one entry recording the merge.
    assert [(h["from"], h["to"], h["mergedFrom"]) for h in kept["history"]] == [
        (None, "NEW", None),
        ("NEW", "NEW", None),
    ]
    assert kept["history"][1]["note"] == "A duplicate lead was merged into this one."
    # With includeMerged, the duplicate's changes are there too, marked with where they happened.
    assert [(h["from"], h["to"], h["mergedFrom"]) for h in kept["fullHistory"]] == [
        (None, "NEW", None),
        (None, "NEW", {"id": other["id"]}),
        ("NEW", "CONTACTED", {"id": other["id"]}),
        ("NEW", "NEW", None),
    ]
    # The merged lead still shows its whole own history, ending in LOST with the reason.
    assert [(h["from"], h["to"]) for h in merged["history"]] == [
        (None, "NEW"),
        ("NEW", "CONTACTED"),
        ("CONTACTED", "LOST"),
    ]
    assert merged["history"][-1]["note"] == "Merged into another lead as a duplicate."
    fetched = (await gql(GET, {"id": other["id"]}))["lead"]
    assert fetched["history"] == merged["history"]


async def test_after_a_merge_the_kept_lead_guards_the_values_it_took_over(gql: GraphQLClient):
    keep = await create(gql, contactName="Ann")
    other = await create(gql, email="ann@acme.com")
    assert (await merge(gql, keep["id"], other["id"]))["errors"] == []
    again = (await gql(CREATE, {"input": {"source": "MANUAL", "email": "ann@acme.com"}}))[
        "createLead"
    ]
    assert [e["code"] for e in again["errors"]] == ["DUPLICATE"]
    assert keep["id"] in again["errors"][0]["message"]


async def test_a_duplicate_created_with_allow_duplicate_can_absorb_its_original(
    gql: GraphQLClient,
):
    first = await create(gql, email="ann@acme.com", website="acme.com")
    second = await create(gql, email="ann@acme.com", phone="+49301234567", allowDuplicate=True)
    result = await merge(gql, second["id"], first["id"])
    assert result["errors"] == []
    assert result["lead"]["website"] == "https://acme.com"
    assert result["lead"]["duplicateOf"] is None
    # The kept lead is now under the duplicate guard itself.
    again = (await gql(CREATE, {"input": {"source": "MANUAL", "email": "ann@acme.com"}}))[
        "createLead"
    ]
    assert [(e["code"], e["field"]) for e in again["errors"]] == [("DUPLICATE", ["email"])]
    assert second["id"] in again["errors"][0]["message"]


async def test_merge_refusals_change_nothing(gql: GraphQLClient, db):
    keep = await create(gql, email="ann@acme.com")
    other = await create(gql, email="bob@acme.com")
    lost = await create(gql, email="carl@acme.com")
    await gql(ADVANCE_STAGE, {"input": {"leadId": lost["id"], "to": "LOST"}})
    transferred = await create(gql, businessDomain="fintech")
    await gql(ANALYZE_LEAD, {"input": {"leadId": transferred["id"]}})
    for stage in ("CONTACTED", "QUALIFIED"):
        await gql(ADVANCE_STAGE, {"input": {"leadId": transferred["id"], "to": stage}})
    assert (await gql(TRANSFER, {"input": {"leadId": transferred["id"]}}))["transferToSales"][
        "errors"
    ] == []
    missing = "TGVhZDo5OTk5OQ=="  # Lead:99999
    before = await db.fetch("SELECT * FROM leads ORDER BY id")
    history_before = await db.fetch("SELECT * FROM stage_changes ORDER BY id")

    cases = [
        (keep["id"], keep["id"], [("INVALID_INPUT", ["mergeId"])]),
        (keep["id"], missing, [("NOT_FOUND", ["mergeId"])]),
        (missing, other["id"], [("NOT_FOUND", ["keepId"])]),
        (keep["id"], lost["id"], [("INVALID_TRANSITION", ["mergeId"])]),
        (lost["id"], keep["id"], [("INVALID_TRANSITION", ["keepId"])]),
        (keep["id"], transferred["id"], [("LEAD_LOCKED", ["mergeId"])]),
        (transferred["id"], other["id"], [("LEAD_LOCKED", ["keepId"])]),
        (keep["id"], "not-an-id", [("INVALID_INPUT", ["mergeId"])]),
    ]
    for keep_id, merge_id, expected in cases:
        result = await merge(gql, keep_id, merge_id)
        assert result["lead"] is None
        assert [(e["code"], e["field"]) for e in result["errors"]] == expected, (keep_id, merge_id)

    assert await db.fetch("SELECT * FROM leads ORDER BY id") == before
    assert await db.fetch("SELECT * FROM stage_changes ORDER BY id") == history_before


ATTRIBUTION = """query($id: ID!) {
  lead(id: $id) { owner { id } history(includeMerged: true) { to note by { id } } } }"""


async def test_admin_merges_any_leads_a_manager_only_leads_they_own_both_of(gql: GraphQLClient, db):
    alice = gql.as_role("manager", sub="alice", name="Alice")
    bob = gql.as_role("manager", sub="bob", name="Bob")
    alice_first = await create(alice, email="first@alice.com")
    alice_second = await create(alice, email="second@alice.com")
    bobs = await create(bob, email="lead@bob.com")
    before = await all_rows(db)

    refused = [
        (bob, bobs, alice_first, "The role manager may not merge leads owned by someone else."),
        (bob, alice_first, bobs, "The role manager may not merge leads owned by someone else."),
        (bob, alice_first, alice_second, "The role manager may not merge leads owned by"),
        # Sales is refused before any lead is read, so the answer says nothing about them.
        (gql.as_role("sales"), alice_first, alice_second, "The role sales may not merge leads."),
    ]
    for client, keep, other, message in refused:
        body = await client.raw(MERGE, {"keep": keep["id"], "merge": other["id"]})
        assert error_codes(body) == ["FORBIDDEN"], body
        assert body["errors"][0]["message"].startswith(message)
        assert body["data"] is None
    assert await all_rows(db) == before

    # The owner of both merges them; the merge's history rows name who merged.
    assert (await merge(alice, alice_first["id"], alice_second["id"]))["errors"] == []
    # An admin merges leads of different owners.
    admin = gql.as_role("admin", sub="root", name="Root")
    assert (await merge(admin, alice_first["id"], bobs["id"]))["errors"] == []

    def notes_by(lead: dict) -> list[tuple[str, str, str]]:
        return [(h["to"], h["note"], h["by"]["id"]) for h in lead["history"] if h["note"]]

    kept = (await gql(ATTRIBUTION, {"id": alice_first["id"]}))["lead"]
    assert kept["owner"] == {"id": "alice"}
    assert notes_by(kept) == [
        ("NEW", "A duplicate lead was merged into this one.", "alice"),
        ("NEW", "A duplicate lead was merged into this one.", "root"),
    ]
    lost = "Merged into another lead as a duplicate."
    for merged, by in ((alice_second, "alice"), (bobs, "root")):
        history = (await gql(ATTRIBUTION, {"id": merged["id"]}))["lead"]
        assert notes_by(history) == [("LOST", lost, by)]
    assert await db.fetchval("SELECT role FROM users WHERE id = 'root'") == "admin"
