"""nextFollowUpAt: set by createLead, updateLead and the import, read back, and filtered by
followUpBefore (through the app in this process, on the real PostgreSQL)."""

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.importer import Importer
from tests.support.graphql import GraphQLClient

FIELDS = "errors { code message field } lead { id nextFollowUpAt }"
CREATE = f"mutation($i: CreateLeadInput!) {{ createLead(input: $i) {{ {FIELDS} }} }}"
UPDATE = f"mutation($i: UpdateLeadInput!) {{ updateLead(input: $i) {{ {FIELDS} }} }}"
DUE = """query($before: DateTime!) {
  leads(filter: {followUpBefore: $before}, orderBy: {field: CREATED_AT, direction: ASC}) {
    edges { node { contactName nextFollowUpAt } } } }"""


async def create(gql: GraphQLClient, **fields: str) -> dict:
    return (await gql(CREATE, {"i": {"source": "MANUAL", **fields}}))["createLead"]


async def test_a_follow_up_is_set_on_creation_changed_and_cleared(app_gql: GraphQLClient):
    created = await create(app_gql, nextFollowUpAt="2026-12-24T09:00:00+01:00")
    assert created == {
        "errors": [],
        "lead": {"id": created["lead"]["id"], "nextFollowUpAt": "2026-12-24T08:00:00+00:00"},
    }
    lead_id = created["lead"]["id"]
    moved = await app_gql(UPDATE, {"i": {"leadId": lead_id, "nextFollowUpAt": "2027-01-05T10:00Z"}})
    assert moved["updateLead"]["lead"]["nextFollowUpAt"] == "2027-01-05T10:00:00+00:00"
    untouched = await app_gql(UPDATE, {"i": {"leadId": lead_id, "contactName": "Ann"}})
    assert untouched["updateLead"]["lead"]["nextFollowUpAt"] == "2027-01-05T10:00:00+00:00"
    cleared = await app_gql(UPDATE, {"i": {"leadId": lead_id, "nextFollowUpAt": None}})
    assert cleared["updateLead"]["lead"]["nextFollowUpAt"] is None


async def test_a_follow_up_without_a_time_zone_is_refused_and_changes_nothing(
    app_gql: GraphQLClient,
):
    refused = await create(app_gql, nextFollowUpAt="2026-12-24T09:00:00", email="ann@acme.com")
    assert refused["lead"] is None
    assert refused["errors"] == [
        {
            "code": "INVALID_INPUT",
            "message": "nextFollowUpAt must include a time zone offset, e.g. Z or +01:00.",
            "field": ["nextFollowUpAt"],
        }
    ]
    assert (await create(app_gql, email="ann@acme.com"))["errors"] == []


async def test_follow_up_before_lists_the_leads_due_before_an_instant(app_gql: GraphQLClient):
    await create(app_gql, contactName="due", nextFollowUpAt="2026-12-01T08:00:00Z")
    await create(app_gql, contactName="later", nextFollowUpAt="2026-12-20T08:00:00Z")
    await create(app_gql, contactName="never")
    due = await app_gql(DUE, {"before": "2026-12-10T00:00:00Z"})
    assert [edge["node"]["contactName"] for edge in due["leads"]["edges"]] == ["due"]


async def test_the_import_reads_a_follow_up_column(
    app_gql: GraphQLClient, engine: AsyncEngine, tmp_path: Path
):
    rows = tmp_path / "leads.csv"
    rows.write_text(
        "Contact Name,Next Follow-Up At\nAnn,2026-12-01T08:00:00Z\nBob,tomorrow\n",
        encoding="utf-8",
    )
    with rows.open(newline="") as stream:
        report = await Importer(engine).run(stream)
    assert report.created == 1
    assert [r.reason for r in report.rejected] == [
        "nextFollowUpAt must be an ISO 8601 date and time, e.g. 2026-12-24T09:00:00Z."
    ]
    due = await app_gql(DUE, {"before": "2026-12-10T00:00:00Z"})
    assert due["leads"]["edges"] == [
        {"node": {"contactName": "Ann", "nextFollowUpAt": "2026-12-01T08:00:00+00:00"}}
    ]
