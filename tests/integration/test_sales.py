"""Sales: the pipeline through advanceSaleStage, its history, and the `sales` connection."""

import asyncpg
import pytest

from crm_graphql.api.ids import encode_global_id
from tests.support.graphql import ADVANCE_SALE, GraphQLClient
from tests.support.leads import MISSING_SALE_ID, all_rows, codes, ok, transferred_lead

SALES = """
query($first: Int, $after: String, $filter: SaleFilter) {
  sales(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id stage createdAt lead { id stage } } }
  }
}"""


async def advance_sale(gql: GraphQLClient, sale_id: str, to: str) -> dict:
    """As the sales department, whose work the sale pipeline is."""
    sales = gql.as_role("sales")
    return (await sales(ADVANCE_SALE, {"input": {"saleId": sale_id, "to": to}}))["advanceSaleStage"]


async def test_a_sale_goes_through_the_whole_pipeline(gql: GraphQLClient):
    _, sale_id = await transferred_lead(gql)
    for stage in ("KYC", "AGREEMENT", "PAID"):
        sale = ok(await advance_sale(gql, sale_id, stage))["sale"]
        assert sale["stage"] == stage
    assert [(h["from"], h["to"]) for h in sale["history"]] == [
        (None, "NEW"),
        ("NEW", "KYC"),
        ("KYC", "AGREEMENT"),
        ("AGREEMENT", "PAID"),
    ]
    times = [h["at"] for h in sale["history"]]
    assert times == sorted(times)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), "AGREEMENT"),
        ((), "PAID"),
        ((), "NEW"),
        (("KYC",), "NEW"),
        (("KYC", "AGREEMENT", "PAID"), "LOST"),
        (("LOST",), "KYC"),
    ],
)
async def test_advance_sale_stage_refuses_what_the_pipeline_forbids(
    gql: GraphQLClient, db: asyncpg.Connection, path: tuple[str, ...], target: str
):
    _, sale_id = await transferred_lead(gql)
    for stage in path:
        ok(await advance_sale(gql, sale_id, stage))
    before = await all_rows(db)
    payload = await advance_sale(gql, sale_id, target)
    assert payload["sale"] is None
    assert codes(payload) == ["INVALID_TRANSITION"]
    assert payload["errors"][0]["field"] == ["to"]
    assert await all_rows(db) == before


@pytest.mark.parametrize("stage", ["NEW", "KYC", "AGREEMENT"])
async def test_any_open_sale_can_be_lost(gql: GraphQLClient, stage: str):
    _, sale_id = await transferred_lead(gql)
    for step in ("KYC", "AGREEMENT")[: ("NEW", "KYC", "AGREEMENT").index(stage)]:
        ok(await advance_sale(gql, sale_id, step))
    assert ok(await advance_sale(gql, sale_id, "LOST"))["sale"]["stage"] == "LOST"


@pytest.mark.parametrize(
    ("sale_id", "code"),
    [
        (MISSING_SALE_ID, "NOT_FOUND"),
        ("garbage", "INVALID_INPUT"),
        (encode_global_id("Lead", 1), "INVALID_INPUT"),
    ],
)
async def test_advance_sale_stage_with_a_wrong_id(
    gql: GraphQLClient, db: asyncpg.Connection, sale_id: str, code: str
):
    await transferred_lead(gql)  # Lead 1 exists
    before = await all_rows(db)
    payload = await advance_sale(gql, sale_id, "KYC")
    assert codes(payload) == [code]
    assert payload["errors"][0]["field"] == ["saleId"]
    assert await all_rows(db) == before


async def test_sales_connection_filters_by_stage_and_pages(gql: GraphQLClient):
    transfers = [await transferred_lead(gql) for _ in range(5)]
    for _, sale_id in transfers[:2]:
        ok(await advance_sale(gql, sale_id, "KYC"))
    ok(await advance_sale(gql, transfers[2][1], "LOST"))

    everything = (await gql(SALES, {}))["sales"]
    assert everything["totalCount"] == 5
    newest_first = [sale_id for _, sale_id in reversed(transfers)]
    assert [e["node"]["id"] for e in everything["edges"]] == newest_first
    for edge, (lead_id, _) in zip(everything["edges"], reversed(transfers), strict=True):
        assert edge["node"]["lead"] == {"id": lead_id, "stage": "TRANSFERRED"}

    kyc = (await gql(SALES, {"filter": {"stage": ["KYC"]}}))["sales"]
    assert kyc["totalCount"] == 2
    assert {e["node"]["id"] for e in kyc["edges"]} == {s for _, s in transfers[:2]}
    open_ = (await gql(SALES, {"filter": {"stage": ["NEW", "KYC"]}}))["sales"]
    assert open_["totalCount"] == 4

    first = (await gql(SALES, {"first": 2}))["sales"]
    rest = (await gql(SALES, {"first": 10, "after": first["pageInfo"]["endCursor"]}))["sales"]
    assert [e["node"]["id"] for e in first["edges"] + rest["edges"]] == newest_first
    assert first["pageInfo"]["hasNextPage"] is True
    assert rest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "endCursor": rest["edges"][-1]["cursor"],
    }


async def test_sales_connection_refuses_a_big_page(gql: GraphQLClient):
    body = await gql.raw(SALES, {"first": 101})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert "100" in error["message"]
