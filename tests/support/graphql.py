import json
from typing import Any

import httpx


class GraphQLClient:
    """Posts operations to /graphql over real HTTP."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        # json.dumps escapes non-ASCII, so even a lone surrogate reaches the server as sent.
        body = json.dumps({"query": query, "variables": variables or {}})
        response = await self.http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def __call__(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The data of an operation that must not fail as a whole."""
        body = await self.raw(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


LEAD_FIELDS = """
  id source stage businessDomain activityCount createdAt updatedAt
  score { value recommendation reasons scorer scoredAt stale }
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
