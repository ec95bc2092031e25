from collections.abc import Callable, Mapping
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
    LeadSource,
    LeadStage,
    SaleStage,
    ScorerKind,
)
from crm_graphql.domain.lead import LEAD_FIELDS, LeadField
from crm_graphql.services import queries

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
class LeadFilter(queries.LeadFilter):
    search: str | None = strawberry.field(
        default=None,
        description="A fragment of the contact name, company, email or website; any case.",
    )


@input_type
class LeadOrder(queries.LeadOrder):
    pass


@input_type
class SaleFilter:
    stage: list[SaleStage] | None = None


def with_lead_fields(for_update: bool) -> Callable[[type[T]], type[T]]:
    """Give an input class the fields LeadFields declares, after its own required fields and
    before its optional ones. In an update an absent field is UNSET (left as it is); null
    clears it. Their values reach the use cases through `given_lead_fields`."""

    def declared(f: LeadField) -> Any:
        description = f.spec.update_description if for_update else f.spec.create_description
        default = strawberry.UNSET if for_update else None
        return strawberry.field(default=default, description=description)

    def add(cls: type[T]) -> type[T]:
        own = cls.__annotations__
        required = {name: kind for name, kind in own.items() if not hasattr(cls, name)}
        annotations = {
            **required,
            **{f.name: f.spec.type | None for f in LEAD_FIELDS},
            **{name: kind for name, kind in own.items() if name not in required},
        }
        namespace = {
            **{k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")},
            **{f.name: declared(f) for f in LEAD_FIELDS},
            "__annotations__": annotations,
        }
        return input_type(type(cls.__name__, cls.__bases__, namespace))

    return add


@with_lead_fields(for_update=False)
class CreateLeadInput:
    source: LeadSource
    allow_duplicate: bool = strawberry.field(
        default=False,
        description="Create the lead even when its email, phone or website domain matches an "
        "open lead; it is then marked as a duplicate of that lead.",
    )


@with_lead_fields(for_update=True)
class UpdateLeadInput:
    lead_id: strawberry.ID


def given_lead_fields(input: object) -> dict[str, Any]:
    """The LeadFields an input of createLead or updateLead gives: name -> value; an update's
    absent (UNSET) fields are left out."""
    return {
        f.name: value
        for f in LEAD_FIELDS
        if (value := getattr(input, f.name)) is not strawberry.UNSET
    }


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
