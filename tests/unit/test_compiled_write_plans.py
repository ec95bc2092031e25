"""What the write compiler leaves to the general executor, decided from the schema alone."""

from typing import Any

import pytest
import strawberry
from graphql import parse
from strawberry.permission import BasePermission

from crm_graphql.api.compiled_reads import Unsupported
from crm_graphql.api.compiled_writes import compile_plan
from crm_graphql.api.inputs import input_type

DOCUMENT = parse("mutation($input: CreateLeadInput!) { createLead(input: $input) }")


class Nobody(BasePermission):
    message = "Not for anyone."

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Query:
    ok: bool = True


@input_type
class CreateLeadInput:
    value: int


def schema_with(**mutation_options: Any) -> strawberry.Schema:
    @strawberry.type
    class Mutation:
        @strawberry.mutation(**mutation_options)
        def create_lead(self, input: CreateLeadInput) -> int:
            return input.value

    return strawberry.Schema(query=Query, mutation=Mutation)


def test_a_covered_mutation_compiles() -> None:
    plan = compile_plan(schema_with()._schema, DOCUMENT, None)
    assert plan.key == "createLead"


def test_a_mutation_with_a_permission_class_is_left_to_the_general_executor() -> None:
    """It applies permission classes and field extensions; the plan would skip them."""
    with pytest.raises(Unsupported, match="field extension"):
        compile_plan(schema_with(permission_classes=[Nobody])._schema, DOCUMENT, None)


def test_a_typename_alone_is_left_to_the_general_executor() -> None:
    with pytest.raises(Unsupported, match=r"Mutation\.__typename"):
        compile_plan(schema_with()._schema, parse("mutation { __typename }"), None)
