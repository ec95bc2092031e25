from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

from crm_graphql.api.types import (
    ActivityKind,
    LeadSource,
    LeadStage,
    SaleStage,
    ScorerKind,
)
from crm_graphql.domain.lead import LEAD_FIELDS, LeadField
from crm_graphql.services import queries
from crm_graphql.strawberry_overrides import converted_once

T = TypeVar("T")


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
