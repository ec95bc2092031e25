"""Each abuse limit refuses the request before it runs, with an error naming the limit."""

import base64
import json
from typing import Any

import pytest

from tests.support.graphql import CREATE_LEAD, LOG_ACTIVITY, GraphQLClient

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def refused(gql: GraphQLClient, query: str, variables: dict | None = None) -> dict[str, Any]:
    """The one error of a request refused before execution (400 in the new media type)."""
    response = await gql.http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body
    assert len(body["errors"]) == 1, body["errors"]
    return body["errors"][0]


def nested_lead_query(hops: int) -> str:
    """leads > edges > node, then `hops` times sale > lead."""
    inner = "id"
    for _ in range(hops):
        inner = f"sale {{ lead {{ {inner} }} }}"
    return f"{{ leads(first: 1) {{ edges {{ node {{ {inner} }} }} }} }}"


async def test_query_depth(gql: GraphQLClient):
    assert "errors" not in await gql.raw(nested_lead_query(3))  # depth 10: the limit
    error = await refused(gql, nested_lead_query(4))
    assert error["extensions"]["code"] == "DEPTH_LIMIT_EXCEEDED"
    assert "12 levels deep; the limit is 10 (setting max_query_depth)" in error["message"]


async def test_aliases(gql: GraphQLClient):
    fields = " ".join(f"a{i}: __typename" for i in range(16))
    error = await refused(gql, f"query Many {{ {fields} }}")
    assert error["extensions"]["code"] == "ALIAS_LIMIT_EXCEEDED"
    assert error["message"].startswith("Operation Many uses 16 aliases; the limit is 15")
    assert "max_aliases" in error["message"]


async def test_tokens(gql: GraphQLClient):
    error = await refused(gql, "{ " + "__typename " * 2500 + "}")
    assert error["extensions"]["code"] == "TOKEN_LIMIT_EXCEEDED"
    assert "more than 2000 tokens" in error["message"]


async def test_cost_multiplies_a_page_by_its_selection(gql: GraphQLClient):
    lead = "id source stage score { value reasons } sale { id stage } history { from to at }"
    one_page = f"leads(first: 100) {{ edges {{ node {{ {lead} }} }} }}"
    assert "errors" not in await gql.raw(f"{{ {one_page} }}")

    four_pages = " ".join(f"p{i}: {one_page}" for i in range(4))
    error = await refused(gql, f"{{ {four_pages} }}")
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert "the limit is 5000 (setting max_query_cost)" in error["message"]

    # A page size given by a variable counts as the largest page, whatever the variable says.
    by_variable = " ".join(
        f"p{i}: leads(first: $n) {{ edges {{ node {{ {lead} }} }} }}" for i in range(4)
    )
    error = await refused(gql, f"query($n: Int) {{ {by_variable} }}", {"n": 1})
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"


async def test_page_size(gql: GraphQLClient):
    body = await gql.raw("{ leads(first: 101) { totalCount } }")
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["message"] == "`first` must be between 0 and 100; got 101."


# --- bad input: each answered with a specific error, nothing stored --------------------------


async def test_nul_bytes_are_refused(gql: GraphQLClient, db):
    created = await gql(CREATE_LEAD, {"input": {"source": "MANUAL", "businessDomain": "a\x00b"}})
    errors = created["createLead"]["errors"]
    assert errors == [
        {
            "code": "INVALID_INPUT",
            "message": "businessDomain must not contain NUL characters.",
            "field": ["businessDomain"],
        }
    ]
    assert await db.fetchval("SELECT count(*) FROM leads") == 0


async def escaped(gql: GraphQLClient, query: str, variables: dict) -> dict[str, Any]:
    """Sends the variables with JSON \\u escapes, the one way a lone surrogate can arrive."""
    response = await gql.http.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": variables}),  # ensure_ascii
        headers={"content-type": "application/json", **gql.auth_headers},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_lone_surrogates_are_refused(gql: GraphQLClient, db):
    created = await escaped(
        gql, CREATE_LEAD, {"input": {"source": "MANUAL", "businessDomain": "a\ud800"}}
    )
    assert created["createLead"]["errors"] == [
        {
            "code": "INVALID_INPUT",
            "message": "businessDomain must be valid Unicode text (it contains a lone surrogate).",
            "field": ["businessDomain"],
        }
    ]
    lead_id = (await gql(CREATE_LEAD, {"input": {"source": "MANUAL"}}))["createLead"]["lead"]["id"]
    for note in ("x\udc00", "x\x00"):
        logged = await escaped(
            gql, LOG_ACTIVITY, {"input": {"leadId": lead_id, "kind": "NOTE", "note": note}}
        )
        assert [e["code"] for e in logged["logActivity"]["errors"]] == ["INVALID_INPUT"]
        assert logged["logActivity"]["errors"][0]["field"] == ["note"]
    assert await db.fetchval("SELECT count(*) FROM leads") == 1
    assert await db.fetchval("SELECT count(*) FROM activities") == 0


async def test_long_strings_are_refused_by_the_field_or_the_body_limit(gql: GraphQLClient, db):
    created = await gql(CREATE_LEAD, {"input": {"source": "MANUAL", "businessDomain": "x" * 200}})
    assert [e["code"] for e in created["createLead"]["errors"]] == ["INVALID_INPUT"]
    assert "1 to 120 characters" in created["createLead"]["errors"][0]["message"]

    megabyte = await gql.http.post(
        "/graphql",
        json={
            "query": CREATE_LEAD,
            "variables": {"input": {"source": "MANUAL", "businessDomain": "x" * 1_000_000}},
        },
    )
    assert megabyte.status_code == 413
    assert megabyte.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await db.fetchval("SELECT count(*) FROM leads") == 0


async def test_deep_nesting_is_refused(gql: GraphQLClient):
    nested_list = "[" * 200 + "NEW" + "]" * 200
    error = await refused(gql, f"{{ leads(filter: {{stage: {nested_list}}}) {{ totalCount }} }}")
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "nested too deeply" in error["message"]

    error = await refused(gql, nested_lead_query(100))
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize("size", [2**31, 2**63, 10**40])
async def test_huge_integers_are_refused(gql: GraphQLClient, size):
    literal = await refused(gql, f"{{ leads(first: {size}) {{ totalCount }} }}")
    assert literal["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "non 32-bit signed integer" in literal["message"]

    variable = await refused(gql, "query($n: Int) { leads(first: $n) { totalCount } }", {"n": size})
    assert variable["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "non 32-bit signed integer" in variable["message"]


@pytest.mark.parametrize("pk", [2**63, 10**40, -1, 0])
async def test_ids_with_out_of_range_keys_are_refused(gql: GraphQLClient, pk):
    lead_id = base64.b64encode(f"Lead:{pk}".encode()).decode()
    body = await gql.raw("query($id: ID!) { lead(id: $id) { id } }", {"id": lead_id})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    assert body["errors"][0]["message"] == "`id` is not a valid ID."


async def test_wrong_enum_values_are_refused(gql: GraphQLClient, db):
    literal = await refused(gql, "mutation { createLead(input: {source: FAX}) { lead { id } } }")
    assert literal["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "FAX" in literal["message"]
    assert "LeadSource" in literal["message"]

    variable = await refused(gql, CREATE_LEAD, {"input": {"source": "partner"}})
    assert variable["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "'partner'" in variable["message"]
    assert "LeadSource" in variable["message"]
    assert await db.fetchval("SELECT count(*) FROM leads") == 0


def forged_cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("order", "cursor"),
    [
        ("CREATED_AT", forged_cursor("CREATED_AT", "2026-01-01T00:00:00+00:00", 10**30)),
        ("CREATED_AT", forged_cursor("CREATED_AT", "2026-01-01T00:00:00+00:00", True)),
        ("CREATED_AT", forged_cursor("CREATED_AT", "2026-01-01T00:00:00", 1)),  # no time zone
        ("CREATED_AT", forged_cursor("CREATED_AT", "0001-01-01T00:00:00+14:00", 1)),
        ("CREATED_AT", forged_cursor("CREATED_AT", "9999-12-31T23:59:59-14:00", 1)),
        ("SCORE", forged_cursor("SCORE", "nan", 1)),
        ("SCORE", "\x00"),
    ],
)
async def test_forged_cursors_are_refused(gql: GraphQLClient, order, cursor):
    body = await gql.raw(
        "query($a: String, $o: LeadOrderField!) { leads(after: $a, orderBy: {field: $o}) "
        "{ totalCount } }",
        {"a": cursor, "o": order},
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["message"] == "`after` is not a cursor this API issued."
