"""Contact fields and the duplicate guard, over HTTP against PostgreSQL."""

import asyncio
import base64

from tests.support.graphql import GraphQLClient
from tests.support.leads import transfer

CONTACT_FIELDS = """
  id source stage businessDomain contactName companyName email phone website
  lostReason duplicateOf { id }
"""
CREATE = f"""
mutation($input: CreateLeadInput!) {{
  createLead(input: $input) {{
    lead {{ {CONTACT_FIELDS} }}
    errors {{ code message field }}
    duplicateOf {{ id email }}
  }}
}}"""
UPDATE = f"""
mutation($input: UpdateLeadInput!) {{
  updateLead(input: $input) {{
    lead {{ {CONTACT_FIELDS} }}
    errors {{ code message field }}
    duplicateOf {{ id }}
  }}
}}"""
ADVANCE = """
mutation($id: ID!, $to: LeadStage!) {
  advanceStage(input: {leadId: $id, to: $to}) { errors { code } }
}"""


async def create(gql: GraphQLClient, **fields) -> dict:
    return (await gql(CREATE, {"input": {"source": "MANUAL", **fields}}))["createLead"]


async def test_a_new_lead_with_contacts_is_created_and_owned_by_its_creator(gql: GraphQLClient):
    alice = gql.as_role("manager", sub="alice", name="Alice")
    created = await create(alice, email="ann@acme.com", contactName="Ann")
    query = """query($id: ID!) {
      lead(id: $id) { createdBy { id } owner { id } history { to by { id } } } }"""
    lead = (await gql(query, {"id": created["lead"]["id"]}))["lead"]
    assert lead == {
        "createdBy": {"id": "alice"},
        "owner": {"id": "alice"},
        "history": [{"to": "NEW", "by": {"id": "alice"}}],
    }


async def test_contact_fields_are_validated_normalised_and_returned(gql: GraphQLClient):
    created = await create(
        gql,
        contactName="  Ann Lee ",
        companyName="Acme GmbH",
        email=" Ann.Lee@ACME.com",
        phone="+49 (30) 123 4567",
        website="WWW.Acme.com/contact",
    )
    assert created["errors"] == []
    lead = created["lead"]
    assert lead["contactName"] == "Ann Lee"
    assert lead["companyName"] == "Acme GmbH"
    assert lead["email"] == "ann.lee@acme.com"
    assert lead["phone"] == "+49301234567"
    assert lead["website"] == "https://www.acme.com/contact"
    assert lead["duplicateOf"] is None
    assert created["duplicateOf"] is None


async def test_the_original_flow_without_contacts_still_works(gql: GraphQLClient):
    created = await create(gql, businessDomain="fintech")
    assert created["errors"] == []
    assert created["lead"]["email"] is None
    # Two leads with the same business domain and no contacts are not duplicates.
    assert (await create(gql, businessDomain="fintech"))["errors"] == []


async def test_invalid_contacts_are_refused_with_field_paths_and_nothing_is_created(
    gql: GraphQLClient, db
):
    created = await create(gql, email="ann@", phone="030 1234567", website="ftp://acme.com")
    assert created["lead"] is None
    assert [(e["code"], e["field"]) for e in created["errors"]] == [
        ("INVALID_INPUT", ["email"]),
        ("INVALID_INPUT", ["phone"]),
        ("INVALID_INPUT", ["website"]),
    ]
    assert await db.fetchval("SELECT count(*) FROM leads") == 0


async def test_update_sets_normalises_and_clears_contact_fields(gql: GraphQLClient):
    lead_id = (await create(gql, email="ann@acme.com", contactName="Ann"))["lead"]["id"]
    updated = (
        await gql(
            UPDATE,
            {"input": {"leadId": lead_id, "phone": "+1 415 555 2671", "contactName": None}},
        )
    )["updateLead"]
    assert updated["errors"] == []
    assert updated["lead"]["phone"] == "+14155552671"
    assert updated["lead"]["contactName"] is None
    assert updated["lead"]["email"] == "ann@acme.com"  # not in the input: unchanged

    refused = (await gql(UPDATE, {"input": {"leadId": lead_id, "phone": "12"}}))["updateLead"]
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("INVALID_INPUT", ["phone"])]


async def test_a_lead_matching_an_open_lead_is_refused_as_duplicate_naming_it(
    gql: GraphQLClient,
):
    first = (await create(gql, email="ann@acme.com", phone="+49301234567", website="acme.com"))[
        "lead"
    ]
    for fields, field in [
        ({"email": "ANN@acme.com"}, "email"),
        ({"phone": "+49 30 1234567"}, "phone"),
        ({"website": "https://www.acme.com/jobs"}, "website"),
    ]:
        refused = await create(gql, **fields)
        assert refused["lead"] is None
        (error,) = refused["errors"]
        assert (error["code"], error["field"]) == ("DUPLICATE", [field])
        assert first["id"] in error["message"]
        assert refused["duplicateOf"] == {"id": first["id"], "email": "ann@acme.com"}


async def test_allow_duplicate_creates_the_lead_marked_as_duplicate(gql: GraphQLClient, db):
    first = (await create(gql, email="ann@acme.com"))["lead"]
    second = await create(gql, email="ann@acme.com", allowDuplicate=True)
    assert second["errors"] == []
    assert second["lead"]["duplicateOf"] == {"id": first["id"]}
    # The guard still refuses a third one without the flag, naming the original lead.
    third = await create(gql, email="ann@acme.com")
    assert third["errors"][0]["code"] == "DUPLICATE"
    assert third["duplicateOf"]["id"] == first["id"]
    assert await db.fetchval("SELECT count(*) FROM leads") == 2
    # allowDuplicate without an actual duplicate creates an ordinary, guarded lead.
    plain = await create(gql, email="bob@acme.com", allowDuplicate=True)
    assert plain["lead"]["duplicateOf"] is None


async def test_duplicate_of_does_not_show_a_sales_user_a_lead_they_may_not_read(
    gql: GraphQLClient,
):
    original = (await create(gql, email="ann@acme.com"))["lead"]
    duplicate = (
        await create(
            gql,
            source="PARTNER",
            businessDomain="fintech",
            email="ann@acme.com",
            allowDuplicate=True,
        )
    )["lead"]
    await transfer(gql, duplicate["id"])
    query = "query($id: ID!) { lead(id: $id) { id duplicateOf { id } } }"

    as_manager = await gql(query, {"id": duplicate["id"]})
    assert as_manager["lead"]["duplicateOf"] == {"id": original["id"]}
    as_sales = await gql.as_role("sales")(query, {"id": duplicate["id"]})
    # The transferred lead is visible, the open original it duplicates is not.
    assert as_sales["lead"] == {"id": duplicate["id"], "duplicateOf": None}
    assert (await gql.as_role("sales")(query, {"id": original["id"]}))["lead"] is None


async def test_a_lost_lead_does_not_block_a_new_one(gql: GraphQLClient):
    lost = (await create(gql, email="ann@acme.com"))["lead"]
    await gql(ADVANCE, {"id": lost["id"], "to": "LOST"})
    again = await create(gql, email="ann@acme.com")
    assert again["errors"] == []


async def test_update_to_an_open_leads_email_is_refused_as_duplicate(gql: GraphQLClient):
    ann = (await create(gql, email="ann@acme.com"))["lead"]
    bob = (await create(gql, email="bob@acme.com"))["lead"]
    refused = (await gql(UPDATE, {"input": {"leadId": bob["id"], "email": "Ann@acme.com"}}))[
        "updateLead"
    ]
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("DUPLICATE", ["email"])]
    assert refused["duplicateOf"] == {"id": ann["id"]}
    # Setting a lead's own value again is not a duplicate of itself.
    same = await gql(UPDATE, {"input": {"leadId": ann["id"], "email": "ann@acme.com"}})
    assert same["updateLead"]["errors"] == []


async def test_concurrent_creates_of_one_email_leave_exactly_one_lead(gql: GraphQLClient, db):
    results = await asyncio.gather(
        *(create(gql, email="race@acme.com", contactName=f"Caller {n}") for n in range(20))
    )
    created = [r["lead"] for r in results if r["lead"]]
    assert len(created) == 1
    winner = created[0]["id"]
    refused = [r for r in results if r["errors"]]
    assert len(refused) == 19
    for result in refused:
        assert [e["code"] for e in result["errors"]] == ["DUPLICATE"]
        assert winner in result["errors"][0]["message"]
        assert result["duplicateOf"]["id"] == winner
    pk = int(base64.b64decode(winner).decode().split(":")[1])
    assert await db.fetch("SELECT id FROM leads WHERE email = 'race@acme.com'") == [(pk,)]
