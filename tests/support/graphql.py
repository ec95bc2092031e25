import json
from datetime import timedelta
from typing import Any

import httpx

from crm_graphql.domain.access import Actor, Role
from crm_graphql.tokens import TokenCodec

# The test server's token settings (tests/conftest.py starts it with them).
TEST_JWT_SECRET = "test-only-secret-0123456789-abcdefghijklmnop"
TEST_TOKENS = TokenCodec(TEST_JWT_SECRET, issuer="crm-graphql", audience="crm-graphql")


def token_for(role: str, sub: str | None = None, name: str | None = None) -> str:
    """A valid token for a person with this role; `sub` defaults to test-<role>."""
    actor = Actor(
        user_id=sub or f"test-{role}", name=name or f"Test {role.title()}", role=Role(role)
    )
    return TEST_TOKENS.issue(actor, timedelta(hours=1))


class GraphQLClient:
    """Posts operations to /graphql over real HTTP, with `Authorization: Bearer <token>` when
    it has a token. The `gql` fixture is an authenticated manager; `as_role` acts as another."""

    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self.http = http
        self.token = token

    def as_role(
        self, role: str, sub: str | None = None, name: str | None = None
    ) -> "GraphQLClient":
        return GraphQLClient(self.http, token_for(role, sub, name))

    def with_token(self, token: str | None) -> "GraphQLClient":
        """A client sending this token (None: no Authorization header at all)."""
        return GraphQLClient(self.http, token)

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"content-type": "application/json", **self.auth_headers}
        # json.dumps escapes non-ASCII, so even a lone surrogate reaches the server as sent.
        body = json.dumps({"query": query, "variables": variables or {}})
        response = await self.http.post("/graphql", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def __call__(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The data of an operation that must not fail as a whole."""
        body = await self.raw(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


LEAD_FIELDS = """
  id source stage businessDomain activityCount createdAt updatedAt
  score {
    value recommendation reasons scorer scorerVersion scoredAt stale
    factors { name contribution explanation }
  }
  sale { id stage }
  history { from to at }
"""

CREATE_LEAD = f"""
mutation($input: CreateLeadInput!) {{
  createLead(input: $input) {{ lead {{ {LEAD_FIELDS} }} errors {{ code message field }} }}
}}"""
UPDATE_LEAD = f"""
mutation($input: UpdateLeadInput!) {{
  updateLead(input: $input) {{ lead {{ {LEAD_FIELDS} }} errors {{ code message field }} }}
}}"""
LOG_ACTIVITY = f"""
mutation($input: LogActivityInput!) {{
  logActivity(input: $input) {{ lead {{ {LEAD_FIELDS} }} errors {{ code message field }} }}
}}"""
ANALYZE_LEAD = f"""
mutation($input: AnalyzeLeadInput!) {{
  analyzeLead(input: $input) {{ lead {{ {LEAD_FIELDS} }} errors {{ code message field }} }}
}}"""
ADVANCE_STAGE = f"""
mutation($input: AdvanceStageInput!) {{
  advanceStage(input: $input) {{ lead {{ {LEAD_FIELDS} }} errors {{ code message field }} }}
}}"""
TRANSFER = f"""
mutation($input: TransferToSalesInput!) {{
  transferToSales(input: $input) {{
    lead {{ {LEAD_FIELDS} }}
    sale {{ id stage createdAt lead {{ id }} history {{ from to at }} }}
    errors {{ code message field }}
  }}
}}"""
ADVANCE_SALE = """
mutation($input: AdvanceSaleStageInput!) {
  advanceSaleStage(input: $input) {
    sale { id stage history { from to at } }
    errors { code message field }
  }
}"""
GET_LEAD = f"query($id: ID!) {{ lead(id: $id) {{ {LEAD_FIELDS} }} }}"
ASSIGN_LEAD = """
mutation($input: AssignLeadInput!) {
  assignLead(input: $input) {
    lead { id owner { id name role } createdBy { id name } }
    errors { code message field }
  }
}"""


async def analyze_score(client: GraphQLClient, lead_id: str, scorer: str | None = None) -> dict:
    """The score analyzeLead stores; naming a scorer is an admin's right, so it asks as one."""
    if scorer is not None:
        client = client.as_role("admin", sub="test-admin", name="Test Admin")
    data = await client(ANALYZE_LEAD, {"input": {"leadId": lead_id, "scorer": scorer}})
    assert data["analyzeLead"]["errors"] == []
    return data["analyzeLead"]["lead"]["score"]
