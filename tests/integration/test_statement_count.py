"""No N+1: Lead.sale, Lead.history and Sale.lead are batched per request by DataLoaders."""

import asyncio

from tests.support.graphql import GraphQLClient
from tests.support.leads import create_lead, transferred_lead

NESTED = """
query($first: Int!) {
  leads(first: $first) {
    edges { node { id sale { stage } history { to } } }
  }
}"""
WITH_SALE_LEADS = """
query($first: Int!) {
  sales(first: $first) { edges { node { stage lead { id history { to } } } } }
}"""


async def statements(gql: GraphQLClient, query: str, first: int) -> tuple[int, list[dict]]:
    body = await gql.raw(query, {"first": first})
    assert "errors" not in body, body["errors"]
    return body["extensions"]["sqlStatements"], body


async def test_nested_reads_cost_the_same_for_5_and_50_leads(gql: GraphQLClient):
    # Newest first: every fifth lead is transferred, so each page holds some sales.
    for _ in range(10):
        await transferred_lead(gql)
        await asyncio.gather(*(create_lead(gql) for _ in range(4)))

    few, few_body = await statements(gql, NESTED, 5)
    many, many_body = await statements(gql, NESTED, 50)
    for body, size in ((few_body, 5), (many_body, 50)):
        nodes = [edge["node"] for edge in body["data"]["leads"]["edges"]]
        assert len(nodes) == size
        sales = [node["sale"] for node in nodes if node["sale"]]
        assert len(sales) == size // 5
        assert all(sale["stage"] == "NEW" for sale in sales)
        assert all(node["history"][0]["to"] == "NEW" for node in nodes)
    assert few == many
    assert many <= 4

    few_sales, _ = await statements(gql, WITH_SALE_LEADS, 2)
    many_sales, body = await statements(gql, WITH_SALE_LEADS, 10)
    assert len(body["data"]["sales"]["edges"]) == 10
    assert few_sales == many_sales <= 4
