"""Inputs built through `converted_once` come out exactly as Strawberry's own conversion
builds them, for every input type of the schema and the shapes clients send."""

from typing import Any

import pytest
from graphql import GraphQLInputObjectType, coerce_input_value
from strawberry.types.arguments import convert_argument

from crm_graphql.api import inputs
from crm_graphql.api.schema import create_schema
from crm_graphql.settings import Settings

SCHEMA = create_schema(Settings())

# GraphQL input values as clients send them (variables), per input type.
SENT: dict[type, list[dict[str, Any]]] = {
    inputs.LeadFilter: [
        {},
        {"stage": ["NEW", "QUALIFIED"], "source": None, "minScore": 0.5},
        {"hasBusinessDomain": False, "search": "acme"},
    ],
    inputs.LeadOrder: [{}, {"field": "SCORE", "direction": "ASC"}],
    inputs.SaleFilter: [{}, {"stage": ["NEW"]}, {"stage": None}],
    inputs.CreateLeadInput: [
        {"source": "PARTNER"},
        {"source": "MANUAL", "businessDomain": None, "email": "A@B.C", "allowDuplicate": True},
    ],
    inputs.UpdateLeadInput: [
        {"leadId": "TGVhZDox"},
        {"leadId": "TGVhZDox", "businessDomain": None, "phone": "+4930123"},
    ],
    inputs.MergeLeadsInput: [{"keepId": "TGVhZDox", "mergeId": "TGVhZDoy"}],
    inputs.LogActivityInput: [
        {"leadId": "TGVhZDox", "kind": "CALL"},
        {"leadId": "TGVhZDox", "kind": "NOTE", "note": "x"},
    ],
    inputs.AnalyzeLeadInput: [{"leadId": "TGVhZDox"}, {"leadId": "TGVhZDox", "scorer": "LLM"}],
    inputs.AdvanceStageInput: [{"leadId": "TGVhZDox", "to": "CONTACTED"}],
    inputs.TransferToSalesInput: [{"leadId": "TGVhZDox"}],
    inputs.AdvanceSaleStageInput: [{"saleId": "U2FsZTox", "to": "KYC"}],
    inputs.AssignLeadInput: [{"leadId": "TGVhZDox", "ownerId": "VXNlcjp1"}],
}


def convert(input_class: type, sent: dict[str, Any], through_hook: bool) -> Any:
    definition = input_class.__strawberry_definition__  # type: ignore[attr-defined]
    graphql_type = SCHEMA._schema.get_type(definition.name)
    assert isinstance(graphql_type, GraphQLInputObjectType)
    coerced = coerce_input_value(sent, graphql_type)  # what graphql-core hands to Strawberry
    assert isinstance(coerced, dict), f"{sent} is not a valid {definition.name}"
    hook = definition.from_input
    if not through_hook:
        definition.from_input = None  # Strawberry's generic conversion
    try:
        return convert_argument(
            coerced, input_class, SCHEMA.schema_converter.scalar_registry, SCHEMA.config
        )
    finally:
        definition.from_input = hook


def test_every_input_type_of_the_schema_is_covered():
    converted = {
        name
        for name, value in vars(inputs).items()
        if getattr(getattr(value, "__strawberry_definition__", None), "is_input", False)
    }
    assert converted == {cls.__name__ for cls in SENT}


@pytest.mark.parametrize(
    ("input_class", "sent"),
    [(cls, sent) for cls, values in SENT.items() for sent in values],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_an_input_is_built_as_strawberry_builds_it(input_class: type, sent: dict[str, Any]):
    ours = convert(input_class, sent, through_hook=True)
    strawberrys = convert(input_class, sent, through_hook=False)
    assert ours == strawberrys
    assert vars(ours) == vars(strawberrys)
    for name, value in vars(ours).items():
        assert type(value) is type(vars(strawberrys)[name])
