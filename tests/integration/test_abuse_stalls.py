"""Abuse that used to stall the server or reach a 500 (issue 17): each class is answered with
its documented code, fast, while another client's `{ __typename }` is still answered."""

from typing import Any

import httpx
import pytest

from tests.support.abuse import answered_while
from tests.support.server import ServerProcess

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def refused_request(url: str, body: object) -> list[dict[str, Any]]:
    """The errors of a request refused before execution (400 in the new media type)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.post("/graphql", json=body, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 400, response.text
    assert "data" not in response.json()
    return response.json()["errors"]


def doubled_fragments(levels: int, leaf: str, spread: str = "...F{}") -> str:
    """Fragments that each spread the previous one twice: 2**levels leaves once expanded, in
    a document of a few hundred bytes."""
    fragments = [f"fragment F0 on Query {{ {leaf} }}"]
    for level in range(1, levels + 1):
        twice = " ".join([spread.format(level - 1)] * 2)
        fragments.append(f"fragment F{level} on Query {{ {twice} }}")
    return f"query Doubled {{ ...F{levels} }} " + " ".join(fragments)


@pytest.mark.parametrize(
    ("leaf", "spread", "code"),
    [
        ("__typename", "...F{}", "FIELD_LIMIT_EXCEEDED"),  # introspection fields cost nothing
        ("a: __typename", "...F{}", "ALIAS_LIMIT_EXCEEDED"),
        ("leads { totalCount }", "...F{}", "COST_LIMIT_EXCEEDED"),
        ("__typename", "... on Query {{ ...F{} }}", "FIELD_LIMIT_EXCEEDED"),
    ],
)
@pytest.mark.parametrize("levels", [20, 30])
async def test_fragments_spread_twice_per_level_are_refused_fast(
    server: ServerProcess, levels: int, leaf: str, spread: str, code: str
):
    document = doubled_fragments(levels, leaf, spread)
    assert len(document) < 2500
    errors = await answered_while(server.url, refused_request(server.url, {"query": document}))
    assert code in [error["extensions"]["code"] for error in errors], errors
    assert all(error["message"].startswith("Operation Doubled") for error in errors)


async def test_the_expanded_field_count_is_limited(server: ServerProcess):
    """Below the limit a document with fragments runs; one level more is refused."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        ten = await http.post("/graphql", json={"query": doubled_fragments(10, "__typename")})
        assert ten.json()["data"] == {"__typename": "Query"}
    [error] = await refused_request(server.url, {"query": doubled_fragments(11, "__typename")})
    assert error["extensions"]["code"] == "FIELD_LIMIT_EXCEEDED"
    assert error["message"] == (
        "Operation Doubled selects 2048 fields once its fragments are expanded; the limit is "
        "2000 (setting max_query_fields)."
    )
