from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any, TypeVar

import strawberry
from strawberry.relay import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryMaybe, StrawberryOptional, StrawberryType
from strawberry.types.enum import StrawberryEnumDefinition

from crm_graphql.api.types import (
    ActivityKind,
    LeadOrderField,
    LeadSource,
    LeadStage,
    OrderDirection,
    SaleStage,
    ScorerKind,
)

T = TypeVar("T")


def _arrives_converted(type_: StrawberryType | type, scalars: Mapping[object, Any]) -> bool:
    """graphql-core already hands over the Python value of a scalar or an enum (or null), so
    Strawberry's conversion returns it as it is; a GlobalID still needs decoding."""
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    if type_ is GlobalID:
        return False
    return isinstance(type_, StrawberryEnumDefinition) or is_scalar(type_, scalars)


def converted_once(cls: type[T]) -> type[T]:
    """An input built through Strawberry's `from_input` hook: the fields' GraphQL names and
    resolved types are worked out on first use and kept, where Strawberry resolves each
    field's annotation again on every request (a tenth of a mutation's CPU in the GraphQL
    layer, docs/benchmarks.md). Values that arrive converted are passed as they are; the rest
    (lists, nested inputs, GlobalIDs) go through Strawberry's own conversion."""
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    for field in definition.fields:
        # With a hook, Strawberry skips its null check for Maybe fields: none may be here.
        if isinstance(field.resolve_type(type_definition=definition), StrawberryMaybe):
            raise TypeError(f"{cls.__name__}.{field.python_name}: Maybe is not supported here")
    # As Strawberry does: a field without a default starts as None (GraphQL has already
    # checked that every required field is present).
    no_default = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    # Per schema configuration (tests build several schemas), kept with it so that an id
    # reused after a configuration is gone cannot match.
    plans: dict[int, tuple[object, list[tuple[str, str, StrawberryType | type | None]]]] = {}

    def plan_for(context: InputContext) -> list[tuple[str, str, StrawberryType | type | None]]:
        plan = []
        for field in definition.fields:
            field_type = field.resolve_type(type_definition=definition)
            converted = _arrives_converted(field_type, context.scalar_registry)
            graphql_name = context.config.name_converter.from_field(field)
            plan.append((field.python_name, graphql_name, None if converted else field_type))
        return plan

    def from_input(type_: type[T], value: Mapping[str, Any], context: InputContext) -> T:
        config, plan = plans.get(id(context.config), (None, []))
        if config is not context.config:
            plan = plan_for(context)
            plans[id(context.config)] = (context.config, plan)
        values = dict(no_default)
        for python_name, graphql_name, needs_conversion in plan:
            if graphql_name in value:
                given = value[graphql_name]
                values[python_name] = (
                    given
                    if needs_conversion is None
                    else context.convert(given, needs_conversion, graphql_name)
                )
        return type_(**values)

    definition.from_input = from_input
    return cls


def input_type(cls: type[T]) -> type[T]:
    return converted_once(strawberry.input(cls))


@input_type
class LeadFilter:
    stage: list[LeadStage] | None = None
    source: list[LeadSource] | None = None
    min_score: float | None = None
    has_business_domain: bool | None = None
    search: str | None = strawberry.field(
        default=None,
        description="A fragment of the contact name, company, email or website; any case.",
    )


@input_type
class LeadOrder:
    field: LeadOrderField = LeadOrderField.CREATED_AT
    direction: OrderDirection = OrderDirection.DESC


@input_type
class SaleFilter:
    stage: list[SaleStage] | None = None


@input_type
class CreateLeadInput:
    source: LeadSource
    business_domain: str | None = None
    contact_name: str | None = None
    company_name: str | None = None
    email: str | None = strawberry.field(default=None, description="Stored lower-cased.")
    phone: str | None = strawberry.field(
        default=None,
        description="Stored in E.164; include the +country code unless the server has a "
        "default region.",
    )
    website: str | None = strawberry.field(
        default=None, description="A host or URL; https:// is assumed when no scheme is given."
    )
    allow_duplicate: bool = strawberry.field(
        default=False,
        description="Create the lead even when its email, phone or website domain matches an "
        "open lead; it is then marked as a duplicate of that lead.",
    )


def _optional(description: str) -> Any:
    return strawberry.field(default=strawberry.UNSET, description=description)


@input_type
class UpdateLeadInput:
    lead_id: strawberry.ID
    business_domain: str | None = _optional(
        "Trimmed, 1 to 120 characters; null clears it. Makes a score stale."
    )
    contact_name: str | None = _optional("Trimmed, 1 to 200 characters; null clears it.")
    company_name: str | None = _optional("Trimmed, 1 to 200 characters; null clears it.")
    email: str | None = _optional("Stored lower-cased; null clears it.")
    phone: str | None = _optional("Stored in E.164; null clears it.")
    website: str | None = _optional("A host or URL; null clears it.")


@input_type
class MergeLeadsInput:
    keep_id: strawberry.ID = strawberry.field(description="The lead that stays.")
    merge_id: strawberry.ID = strawberry.field(description="The duplicate; it ends LOST.")


@input_type
class LogActivityInput:
    lead_id: strawberry.ID
    kind: ActivityKind
    note: str | None = None


@input_type
class AnalyzeLeadInput:
    lead_id: strawberry.ID
    scorer: ScorerKind | None = strawberry.field(
        default=None,
        description="Ask a specific scorer (admins only); the deployment's default when null.",
    )


@input_type
class AdvanceStageInput:
    lead_id: strawberry.ID
    to: LeadStage


@input_type
class TransferToSalesInput:
    lead_id: strawberry.ID


@input_type
class AdvanceSaleStageInput:
    sale_id: strawberry.ID
    to: SaleStage


@input_type
class AssignLeadInput:
    lead_id: strawberry.ID
    owner_id: strawberry.ID = strawberry.field(description="The new owner's User ID.")
