"""schema.graphql is the exported schema, and the contract names of DESIGN.md are all there."""

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    build_schema,
)

from crm_graphql import cli
from crm_graphql.api.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"

# DESIGN.md's contract, which clients and codegen depend on. Later issues may add to the
# schema; none may rename or remove these.
CONTRACT = """
scalar DateTime
interface Node { id: ID! }
enum LeadSource { SCANNER PARTNER MANUAL }
enum LeadStage { NEW CONTACTED QUALIFIED TRANSFERRED LOST }
enum SaleStage { NEW KYC AGREEMENT PAID LOST }
enum ScoreRecommendation { TRANSFER_TO_SALES NURTURE }
type Lead implements Node {
  id: ID!  source: LeadSource!  stage: LeadStage!
  businessDomain: String  activityCount: Int!
  score: LeadScore  sale: Sale  history: [LeadStageChange!]!
  createdAt: DateTime!  updatedAt: DateTime!
}
type LeadScore { value: Float!  recommendation: ScoreRecommendation!
                 reasons: [String!]!  scorer: String!  scoredAt: DateTime!  stale: Boolean! }
type Sale implements Node { id: ID!  lead: Lead!  stage: SaleStage!
                           history: [SaleStageChange!]!  createdAt: DateTime! }
type LeadStageChange { from: LeadStage  to: LeadStage!  at: DateTime! }
type SaleStageChange { from: SaleStage  to: SaleStage!  at: DateTime! }
type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean!
                startCursor: String endCursor: String }
type LeadEdge { node: Lead! cursor: String! }
type LeadConnection { edges: [LeadEdge!]! pageInfo: PageInfo! totalCount: Int! }
type SaleEdge { node: Sale! cursor: String! }
type SaleConnection { edges: [SaleEdge!]! pageInfo: PageInfo! totalCount: Int! }
type Query {
  node(id: ID!): Node
  lead(id: ID!): Lead
  leads(first: Int, after: String, last: Int, before: String,
        filter: LeadFilter, orderBy: LeadOrder): LeadConnection!
  sales(first: Int, after: String, filter: SaleFilter): SaleConnection!
}
type Mutation {
  createLead(input: CreateLeadInput!): CreateLeadPayload!
  updateLead(input: UpdateLeadInput!): UpdateLeadPayload!
  logActivity(input: LogActivityInput!): LogActivityPayload!
  analyzeLead(input: AnalyzeLeadInput!): AnalyzeLeadPayload!
  advanceStage(input: AdvanceStageInput!): AdvanceStagePayload!
  transferToSales(input: TransferToSalesInput!): TransferToSalesPayload!
  advanceSaleStage(input: AdvanceSaleStageInput!): AdvanceSaleStagePayload!
}
type Subscription {
  leadStageChanged(leadId: ID, after: String): LeadStageChangedEvent!
}
type LeadStageChangedEvent { lead: Lead!  from: LeadStage  to: LeadStage!  at: DateTime!
                             cursor: String! }
input LeadFilter { stage: [LeadStage!]  source: [LeadSource!]  minScore: Float
                   hasBusinessDomain: Boolean }
input LeadOrder { field: LeadOrderField! = CREATED_AT  direction: OrderDirection! = DESC }
enum LeadOrderField { CREATED_AT UPDATED_AT SCORE }
enum OrderDirection { ASC DESC }
input SaleFilter { stage: [SaleStage!] }
enum ActivityKind { CALL EMAIL MEETING NOTE }
input CreateLeadInput { source: LeadSource!  businessDomain: String }
input UpdateLeadInput { leadId: ID!  businessDomain: String }
input LogActivityInput { leadId: ID!  kind: ActivityKind!  note: String }
input AnalyzeLeadInput { leadId: ID! }
input AdvanceStageInput { leadId: ID!  to: LeadStage! }
input TransferToSalesInput { leadId: ID! }
input AdvanceSaleStageInput { saleId: ID!  to: SaleStage! }
type UserError { code: UserErrorCode! message: String! field: [String!] }
enum UserErrorCode { NOT_FOUND INVALID_INPUT INVALID_TRANSITION LEAD_LOCKED NOT_QUALIFIED
                     DOMAIN_REQUIRED SCORE_REQUIRED SCORE_TOO_LOW SCORE_STALE }
type CreateLeadPayload { lead: Lead errors: [UserError!]! }
type UpdateLeadPayload { lead: Lead errors: [UserError!]! }
type LogActivityPayload { lead: Lead errors: [UserError!]! }
type AnalyzeLeadPayload { lead: Lead errors: [UserError!]! }
type AdvanceStagePayload { lead: Lead errors: [UserError!]! }
type TransferToSalesPayload { lead: Lead sale: Sale errors: [UserError!]! }
type AdvanceSaleStagePayload { sale: Sale errors: [UserError!]! }
"""


def test_schema_file_matches_the_code():
    exported = schema.as_str() + "\n"
    committed = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    assert committed == exported, (
        "schema.graphql differs from the schema the code builds; regenerate it with "
        "`.venv/bin/crm-graphql export-schema` and commit the file."
    )


def test_export_schema_writes_and_checks_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    target = tmp_path / "schema.graphql"
    assert cli.main(["export-schema", "--check", str(target)]) == 1
    assert "crm-graphql export-schema" in capsys.readouterr().out
    assert cli.main(["export-schema", str(target)]) == 0
    assert target.read_text() == SCHEMA_FILE.read_text()
    assert cli.main(["export-schema", "--check", str(target)]) == 0


CONTRACT_SCHEMA = build_schema(CONTRACT)
ACTUAL_SCHEMA = build_schema(schema.as_str())  # both sides as plain graphql-core types
CONTRACT_TYPES = sorted(n for n in CONTRACT_SCHEMA.type_map if not n.startswith("__"))


def test_the_contract_root_types_are_the_schemas_roots():
    for operation in ("query_type", "mutation_type", "subscription_type"):
        wanted = getattr(CONTRACT_SCHEMA, operation)
        actual = getattr(ACTUAL_SCHEMA, operation)
        assert actual is not None, f"the schema has no {operation}"
        assert actual.name == wanted.name, operation


@pytest.mark.parametrize("name", CONTRACT_TYPES)
def test_contract_type_is_in_the_schema(name: str):
    wanted = CONTRACT_SCHEMA.type_map[name]
    actual = ACTUAL_SCHEMA.type_map.get(name)
    assert actual is not None, f"type {name} of the contract is missing"
    assert type(actual) is type(wanted), f"{name} is a {type(actual).__name__}"
    if isinstance(wanted, GraphQLEnumType):
        assert isinstance(actual, GraphQLEnumType)
        missing = set(wanted.values) - set(actual.values)
        assert not missing, f"{name} lost the values {missing}"
    elif isinstance(wanted, GraphQLInputObjectType):
        assert isinstance(actual, GraphQLInputObjectType)
        for field_name, field in wanted.fields.items():
            assert field_name in actual.fields, f"{name}.{field_name} is missing"
            actual_field = actual.fields[field_name]
            assert str(actual_field.type) == str(field.type), f"{name}.{field_name}"
            if field.default_value is not None:
                assert actual_field.default_value == field.default_value, f"{name}.{field_name}"
    elif isinstance(wanted, GraphQLObjectType | GraphQLInterfaceType):
        assert isinstance(actual, GraphQLObjectType | GraphQLInterfaceType)
        assert {i.name for i in wanted.interfaces} <= {i.name for i in actual.interfaces}
        for field_name, field in wanted.fields.items():
            assert field_name in actual.fields, f"{name}.{field_name} is missing"
            actual_field = actual.fields[field_name]
            assert str(actual_field.type) == str(field.type), f"{name}.{field_name}"
            for arg_name, arg in field.args.items():
                assert arg_name in actual_field.args, f"{name}.{field_name}({arg_name}) missing"
                assert str(actual_field.args[arg_name].type) == str(arg.type)
    else:
        assert isinstance(wanted, GraphQLScalarType)
