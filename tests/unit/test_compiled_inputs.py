"""A compiled write's input, coerced by closures made once for its type
(api/compiled_inputs.py), against graphql-core's own coercion of the same variables: for
generated values of every covered mutation's input type, valid and not, the plan's arguments
equal `get_argument_values(field, node, get_variable_values(...))`, and where graphql-core
reports errors the plan refuses (the request then takes the general path, which reports
them). The resolver's arguments built from them (`ResolverCall`) equal what Strawberry's
`get_arguments` gives."""

from typing import Any, cast

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    parse,
)
from graphql.execution.values import get_argument_values, get_variable_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.schema.schema_converter import get_arguments

from crm_graphql.api.compiled_reads import Unsupported
from crm_graphql.api.compiled_writes import (
    COVERED,
    ContextInfo,
    Plan,
    compile_plan,
    strawberry_field,
)
from crm_graphql.api.context import Context
from crm_graphql.api.schema import create_schema
from crm_graphql.settings import Settings

CRM_SCHEMA = create_schema(Settings())
SCHEMA = CRM_SCHEMA._schema
assert SCHEMA.mutation_type is not None
COVERED_FIELDS = sorted(
    name
    for name, field in SCHEMA.mutation_type.fields.items()
    if strawberry_field(field).python_name in COVERED
)

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)


def values_of(type_: GraphQLInputType) -> st.SearchStrategy[Any]:
    """Mostly values of the type, some not (a wrong kind, a null, an unknown field)."""
    if isinstance(type_, GraphQLNonNull):
        return values_of(type_.of_type)
    if isinstance(type_, GraphQLList):
        item = values_of(type_.of_type)
        return st.lists(item, max_size=3) | item | JSON_LEAVES
    if isinstance(type_, GraphQLInputObjectType):
        fields = {name: values_of(field.type) for name, field in type_.fields.items()}
        known = st.fixed_dictionaries({}, optional=fields)
        unknown = st.dictionaries(st.sampled_from(["nope", "leadID"]), JSON_LEAVES, max_size=1)
        return known | st.builds(lambda a, b: {**a, **b}, known, unknown) | JSON_LEAVES
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(sorted(type_.values)) | st.text(max_size=8) | JSON_LEAVES
    assert isinstance(type_, GraphQLScalarType)
    typical = {
        "ID": st.sampled_from(["TGVhZDox", "U2FsZToy", "x"]) | st.integers(),
        "Int": st.integers(min_value=-(2**33), max_value=2**33),
        "Boolean": st.booleans(),
    }.get(type_.name, st.text(max_size=20))
    return typical | JSON_LEAVES


def plan_for(field_name: str) -> Plan:
    field = SCHEMA.mutation_type.fields[field_name]  # type: ignore[union-attr]
    [(argument_name, argument)] = field.args.items()
    document = parse(
        f"mutation($v: {argument.type}) {{ {field_name}({argument_name}: $v) {{ __typename }} }}"
    )
    return compile_plan(SCHEMA, document, None)


@pytest.mark.parametrize("field_name", COVERED_FIELDS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_plans_arguments_are_graphql_cores(field_name: str, data: st.DataObject) -> None:
    plan = plan_for(field_name)
    [argument] = plan.definition.args.values()
    variables = {"v": data.draw(st.none() | values_of(argument.type), label="v")}
    if data.draw(st.booleans(), label="missing"):
        variables = {}

    expected = get_variable_values(SCHEMA, plan.operation.variable_definitions or (), variables)
    if isinstance(expected, list):  # errors: the general path reports them
        with pytest.raises(Unsupported, match="variables"):
            plan.arguments(variables)
    else:
        coerced = plan.arguments(variables)
        assert coerced == get_argument_values(plan.definition, plan.node, expected)
        # And the resolver's arguments, as Strawberry's get_arguments converts them.
        info = ContextInfo(cast(Context, None))
        assert plan.call.arguments(coerced, info, CRM_SCHEMA) == get_arguments(
            field=plan.field,
            source=None,
            info=info,  # type: ignore[arg-type]
            kwargs=coerced,
            config=CRM_SCHEMA.config,
            scalar_registry=CRM_SCHEMA.schema_converter.scalar_registry,
        )


def test_every_covered_mutation_is_compared() -> None:
    assert len(COVERED_FIELDS) == len(COVERED)


def test_an_operation_declaring_a_second_variable_is_left_to_the_general_executor() -> None:
    document = parse(
        "mutation($v: AdvanceStageInput!, $w: String) { advanceStage(input: $v) { __typename } }"
    )
    with pytest.raises(Unsupported, match="variables"):
        compile_plan(SCHEMA, document, None)
