"""The statement budget of each use case and of the benchmark's reads (issue 5): every SQL
statement a request sends must be needed. Counts come from extensions.sqlStatements, which the
test server reports; a transaction's BEGIN and COMMIT count too, since each is a round trip, so
a use case of one statement runs without them.

Raise a number here only with a reason: a new statement on the hot path costs every client."""

from typing import Any

import pytest

from tests.support.graphql import GraphQLClient
from tests.support.leads import create_lead, qualified_lead, transferred_lead


def mutation(field: str, payload: str = "lead { id }") -> str:
    """A mutation whose payload reads nothing beyond the changed row, so only the use case's
    own statements are counted."""
    input_type = field[0].upper() + field[1:] + "Input"
    return (
        f"mutation($input: {input_type}!) "
        f"{{ {field}(input: $input) {{ {payload} errors {{ code }} }} }}"
    )


async def sent(client: GraphQLClient, query: str, variables: dict[str, Any]) -> int:
    body = await client.raw(query, variables)
    assert "errors" not in body, body["errors"]
    payload = next(iter(body["data"].values()))
    assert payload.get("errors", []) == [], payload
    return body["extensions"]["sqlStatements"]


async def test_each_mutation_sends_only_the_statements_it_needs(gql: GraphQLClient):
    new_lead = (await create_lead(gql))["id"]
    qualified = await qualified_lead(gql)
    _, sale = await transferred_lead(gql)
    counts = {
        # the lead, its writer, its audit row and its notification: one statement, no
        # transaction around it
        "createLead": await sent(gql, mutation("createLead"), {"input": {"source": "MANUAL"}}),
        # with contact details the duplicate guard may refuse the insert, and then the lookup
        # of the lead it met belongs to the same transaction: BEGIN, the insert, COMMIT
        "createLead with an email": await sent(
            gql,
            mutation("createLead"),
            {"input": {"source": "MANUAL", "email": "budget@example.com"}},
        ),
        # BEGIN, lock (recording the writer), the update, COMMIT
        "updateLead": await sent(
            gql, mutation("updateLead"), {"input": {"leadId": new_lead, "businessDomain": "x"}}
        ),
        # lock, then the activity and its count in one statement
        "logActivity": await sent(
            gql, mutation("logActivity"), {"input": {"leadId": new_lead, "kind": "CALL"}}
        ),
        # a read to score without holding the row lock (a remote scorer may be slow), then
        # the score, written only if the lead is not locked, with its writer
        "analyzeLead": await sent(gql, mutation("analyzeLead"), {"input": {"leadId": new_lead}}),
        # one statement: the lock, the stage checked against the rule, the move, its writer,
        # audit row and notification
        "advanceStage": await sent(
            gql, mutation("advanceStage"), {"input": {"leadId": new_lead, "to": "CONTACTED"}}
        ),
        # the lead and its row version for the rules, then one statement: the move (if the row
        # is still at that version), the Sale with its first history row, writer, audit row,
        # notification
        "transferToSales": await sent(
            gql,
            mutation("transferToSales", "lead { id } sale { id }"),
            {"input": {"leadId": qualified}},
        ),
        # one statement, as advanceStage
        "advanceSaleStage": await sent(
            gql.as_role("sales"),
            mutation("advanceSaleStage", "sale { id }"),
            {"input": {"saleId": sale, "to": "KYC"}},
        ),
    }
    # Each multi-statement use case adds its BEGIN and COMMIT to the counts the comments give.
    assert counts == {
        "createLead": 1,
        "createLead with an email": 3,
        "updateLead": 4,
        "logActivity": 4,
        "analyzeLead": 2,
        "advanceStage": 1,
        "transferToSales": 2,
        "advanceSaleStage": 1,
    }


@pytest.mark.parametrize(
    ("query", "variables_for", "budget"),
    [
        # bench/load.py's page, compiled (api/compiled_reads.py): the page with its total,
        # sales and histories in one statement, whatever the page size
        ("LEADS_PAGE", lambda _: {}, 1),
        # bench/load.py's single lead with its sale and history, compiled: one statement
        ("ONE_LEAD", lambda lead_id: {"id": lead_id}, 1),
    ],
)
async def test_the_benchmark_reads_stay_within_their_budget(
    gql: GraphQLClient, query: str, variables_for: Any, budget: int
):
    from bench import load

    lead_id, _ = await transferred_lead(gql)
    for _ in range(3):
        await create_lead(gql)
    assert await sent(gql, getattr(load, query), variables_for(lead_id)) == budget
