"""leads(filter: {search}): fragment, any case, over four fields, served by the trigram index."""

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import asyncpg

from crm_graphql.db.tables import leads
from crm_graphql.services.queries import LeadFilter
from tests.support.graphql import GraphQLClient
from tests.support.leads import transfer

CREATE = """
mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { id } errors { code } } }"""
SEARCH = """
query($search: String!) {
  leads(first: 50, filter: {search: $search}) { totalCount edges { node { contactName } } }
}"""


async def names(gql: GraphQLClient, search: str) -> set[str]:
    found = (await gql(SEARCH, {"search": search}))["leads"]
    assert found["totalCount"] == len(found["edges"])
    return {edge["node"]["contactName"] for edge in found["edges"]}


async def seed(gql: GraphQLClient) -> None:
    for contact in [
        {"contactName": "Ann Lee", "companyName": "ACME Corp", "email": "ann@example.org"},
        {"contactName": "Bob Stone", "email": "bob@acme-mail.com"},
        {"contactName": "Carl Weiss", "website": "https://shop.acmeworks.io/en"},
        {"contactName": "Dora Acmeson"},
        {"contactName": "Eve Park", "companyName": "Globex", "email": "eve@globex.com"},
        {"contactName": "Fay 100% Real", "companyName": "Under_score"},
    ]:
        created = await gql(CREATE, {"input": {"source": "MANUAL", **contact}})
        assert created["createLead"]["errors"] == []


async def test_search_matches_fragments_of_name_company_email_and_website(gql: GraphQLClient):
    await seed(gql)
    acme = {"Ann Lee", "Bob Stone", "Carl Weiss", "Dora Acmeson"}
    assert await names(gql, "acme") == acme
    assert await names(gql, "AcMe") == acme
    assert await names(gql, "cme") == acme
    assert await names(gql, "lee") == {"Ann Lee"}
    assert await names(gql, "globex.com") == {"Eve Park"}
    assert await names(gql, "shop.acmeworks") == {"Carl Weiss"}
    assert await names(gql, "nothing like it") == set()


async def test_short_terms_and_wildcard_characters_match_literally(gql: GraphQLClient):
    await seed(gql)
    assert await names(gql, "ev") == {"Eve Park"}  # under 3 characters: no trigrams, still found
    assert await names(gql, "%") == {"Fay 100% Real"}
    assert await names(gql, "_") == {"Fay 100% Real"}


async def test_search_combines_with_other_filters(gql: GraphQLClient):
    await seed(gql)
    query = """{ leads(filter: {search: "acme", stage: [LOST]}) { totalCount } }"""
    assert (await gql(query))["leads"]["totalCount"] == 0


async def test_a_sales_user_finds_only_transferred_leads(gql: GraphQLClient):
    await seed(gql)
    handed_over = await gql(
        CREATE,
        {"input": {"source": "PARTNER", "businessDomain": "fintech", "contactName": "Gus Acme"}},
    )
    await transfer(gql, handed_over["createLead"]["lead"]["id"])
    assert await names(gql.as_role("sales"), "acme") == {"Gus Acme"}
    assert await names(gql.as_role("sales"), "ann") == set()
    assert await names(gql, "acme") == {
        "Ann Lee",
        "Bob Stone",
        "Carl Weiss",
        "Dora Acmeson",
        "Gus Acme",
    }


async def test_blank_or_unstorable_search_is_refused(gql: GraphQLClient):
    for term in ("   ", "ac\x00me", "ac\ud800me"):
        body = await gql.raw(SEARCH, {"search": term})
        (error,) = body["errors"]
        assert error["extensions"] == {"code": "INVALID_INPUT", "field": ["search"]}, term


def literal_sql(statement) -> str:
    return str(statement.compile(dialect=asyncpg.dialect(), compile_kwargs={"literal_binds": True}))


async def test_the_trigram_index_serves_search_over_10000_leads(gql: GraphQLClient, db):
    await db.execute(
        """
        INSERT INTO leads (source, stage, contact_name, company_name, email, website)
        SELECT 'SCANNER', 'NEW', 'Person ' || n, 'Company ' || n,
               'person' || n || '@example' || n || '.com', 'https://site' || n || '.example.net'
        FROM generate_series(1, 10000) AS n
        """
    )
    await seed(gql)
    # VACUUM moves the fresh rows out of the GIN pending list, as autovacuum would; while they
    # sit there the planner rightly prices the index scan high.
    await db.execute("VACUUM ANALYZE leads")

    conditions = LeadFilter(search="acme").conditions()
    page = (
        select(*leads.c)
        .where(*conditions)
        .order_by(leads.c.created_at.desc(), leads.c.id.desc())
        .limit(21)
    )
    count = select(func.count()).select_from(leads).where(*conditions)
    for statement in (page, count):
        plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + literal_sql(statement)))
        assert "Bitmap Index Scan on ix_leads_search_trgm" in plan, plan
    assert len(await names(gql, "acme")) == 4
