"""A defect inside the compiled read path costs the client nothing: the general path answers,
the request is counted as fallen back, and the failure is logged with its trace."""

import logging

import httpx
import pytest

from crm_graphql.api.compiled_reads import CompiledReads
from tests.support.graphql import GraphQLClient, token_for

PAGE = "{ leads(first: 5) { edges { node { id stage } } } }"


async def test_a_failure_in_the_compiled_path_is_answered_by_the_general_path_and_logged(
    app_gql: GraphQLClient,
    app_http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await app_gql(
        "mutation($i: CreateLeadInput!) { createLead(input: $i) { lead { id } } }",
        {"i": {"source": "MANUAL"}},
    )
    headers = {"authorization": f"Bearer {token_for('manager')}"}
    expected = await app_http.post("/graphql", json={"query": PAGE}, headers=headers)

    async def broken(*_: object) -> None:
        raise KeyError("a stage the compiled path does not know")

    monkeypatch.setattr(CompiledReads, "execute", broken)
    with caplog.at_level(logging.WARNING, logger="crm_graphql.errors"):
        response = await app_http.post("/graphql", json={"query": PAGE}, headers=headers)

    assert response.status_code == 200
    assert response.content == expected.content
    (logged,) = [r for r in caplog.records if "compiled read failed" in r.getMessage()]
    assert logged.exc_info is not None
    assert logged.exc_info[0] is KeyError
    ready = (await app_http.get("/readyz")).json()
    assert ready["compiledReads"]["general: KeyError"] >= 1
