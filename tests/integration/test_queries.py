"""node(id:), lead(id:) and GraphQL over HTTP GET."""

import pytest

from crm_graphql.api.ids import encode_global_id
from tests.support.graphql import GET_LEAD, GraphQLClient
from tests.support.leads import MISSING_LEAD_ID, create_lead, transferred_lead

NODE = """
query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Lead { leadStage: stage businessDomain sale { id } }
    ... on Sale { saleStage: stage lead { id stage } history { from to } }
  }
}"""


async def test_node_fetches_a_lead_and_a_sale(gql: GraphQLClient):
    lead_id, sale_id = await transferred_lead(gql)
    lead = (await gql(NODE, {"id": lead_id}))["node"]
    assert lead == {
        "__typename": "Lead",
        "id": lead_id,
        "leadStage": "TRANSFERRED",
        "businessDomain": "fintech",
        "sale": {"id": sale_id},
    }
    sale = (await gql(NODE, {"id": sale_id}))["node"]
    assert sale == {
        "__typename": "Sale",
        "id": sale_id,
        "saleStage": "NEW",
        "lead": {"id": lead_id, "stage": "TRANSFERRED"},
        "history": [{"from": None, "to": "NEW"}],
    }


@pytest.mark.parametrize(
    "global_id",
    [MISSING_LEAD_ID, encode_global_id("Sale", 5), encode_global_id("Contract", 1)],
)
async def test_node_is_null_for_an_id_naming_nothing(gql: GraphQLClient, global_id: str):
    assert (await gql(NODE, {"id": global_id}))["node"] is None


def assert_invalid_id_error(body: dict, field: str) -> None:
    assert body["data"] is None or all(v is None for v in body["data"].values())
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["extensions"]["field"] == [field]
    assert "Internal server error" not in error["message"]


@pytest.mark.parametrize("global_id", ["garbage", encode_global_id("Lead", -3), ""])
async def test_node_with_a_malformed_id_is_a_clear_error(gql: GraphQLClient, global_id: str):
    body = await gql.raw(NODE, {"id": global_id})
    assert_invalid_id_error(body, "id")
    assert "not a valid ID" in body["errors"][0]["message"]


async def test_lead_by_id(gql: GraphQLClient):
    created = await create_lead(gql)
    assert (await gql(GET_LEAD, {"id": created["id"]}))["lead"] == created
    assert (await gql(GET_LEAD, {"id": MISSING_LEAD_ID}))["lead"] is None


async def test_lead_with_a_malformed_id_is_a_clear_error(gql: GraphQLClient):
    body = await gql.raw(GET_LEAD, {"id": "not-an-id"})
    assert_invalid_id_error(body, "id")
    assert "not a valid ID" in body["errors"][0]["message"]


async def test_lead_with_a_sale_id_names_both_types(gql: GraphQLClient):
    _, sale_id = await transferred_lead(gql)
    body = await gql.raw(GET_LEAD, {"id": sale_id})
    assert_invalid_id_error(body, "id")
    message = body["errors"][0]["message"]
    assert "Lead" in message
    assert "Sale" in message


async def test_queries_work_over_get_and_mutations_do_not(gql: GraphQLClient):
    created = await create_lead(gql)
    response = await gql.http.get(
        "/graphql",
        params={
            "query": "query($id: ID!) { lead(id: $id) { stage } }",
            "variables": f'{{"id": "{created["id"]}"}}',
        },
        headers={**gql.auth_headers, "X-CRM-CSRF": "1"},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"lead": {"stage": "NEW"}}
    response = await gql.http.get(
        "/graphql",
        params={"query": "mutation { createLead(input: {source: MANUAL}) { errors { code } } }"},
        headers={**gql.auth_headers, "X-CRM-CSRF": "1"},
    )
    assert response.status_code == 405
    assert "GET" in response.text
    assert (await gql("{ leads { totalCount } }"))["leads"]["totalCount"] == 1
