"""The lead entity and the rules that guard its fields and its transfer to sales."""

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import partial
from typing import Any, Generic, Literal, Protocol, TypeVar

from crm_graphql.domain.contact import (
    Website,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_website,
)
from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage
from crm_graphql.domain.errors import (
    FIELD,
    ErrorCode,
    RuleViolation,
    Violation,
    invalid_input,
    run_checks,
)
from crm_graphql.domain.lifecycle import is_lead_locked, lead_locked_violation
from crm_graphql.domain.scoring import LeadSnapshot, Score
from crm_graphql.domain.text import unstorable_text

BUSINESS_DOMAIN_MAX_LENGTH = 120


@dataclass(frozen=True)
class Lead:
    id: int
    source: LeadSource
    stage: LeadStage
    activity_count: int
    score: Score | None
    created_at: datetime
    updated_at: datetime
    # The fields clients set (createLead, updateLead, the import), declared in LeadFields.
    fields: "LeadFields" = field(default_factory=lambda: LeadFields())
    # User ids; None only on leads created before authentication existed.
    created_by: str | None = None
    owner_id: str | None = None
    duplicate_of: int | None = None  # created with allowDuplicate next to this open lead
    merged_into: int | None = None
    lost_reason: str | None = None

    @property
    def business_domain(self) -> str | None:
        return self.fields.business_domain

    @property
    def snapshot(self) -> LeadSnapshot:
        return LeadSnapshot(self.source, self.business_domain, self.activity_count)

    @property
    def locked(self) -> bool:
        return is_lead_locked(self.stage)


@dataclass(frozen=True)
class Sale:
    id: int
    lead_id: int
    stage: SaleStage
    created_at: datetime
    updated_at: datetime
    transferred_by: str | None = None


StageT = TypeVar("StageT", LeadStage, SaleStage)


@dataclass(frozen=True)
class StageChange(Generic[StageT]):
    id: int
    from_stage: StageT | None
    to_stage: StageT
    at: datetime
    by: str | None = None
    note: str | None = None
    # Set on a change that happened on another lead and came here when that lead was merged.
    merged_from: int | None = None


@dataclass(frozen=True)
class LeadStageChanged:
    """A committed lead stage change with the lead as it was read when the event went out."""

    change: StageChange[LeadStage]
    lead: Lead


def normalize_business_domain(value: str | None) -> str | None:
    """The business domain as stored: trimmed, 1 to 120 characters, or None."""
    if value is None:
        return None
    violation = unstorable_text(value, "business_domain")
    if violation:
        raise RuleViolation(violation)
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= BUSINESS_DOMAIN_MAX_LENGTH:
        raise RuleViolation(
            Violation(
                ErrorCode.INVALID_INPUT,
                f"{FIELD} must be 1 to {BUSINESS_DOMAIN_MAX_LENGTH} characters "
                "after trimming, or null.",
                ("business_domain",),
            )
        )
    return trimmed


def normalize_instant(name: str, value: datetime | str | None) -> datetime | None:
    """A point in time with its offset: a datetime (GraphQL's DateTime) or ISO 8601 text (a CSV
    cell). Without an offset it would mean a different instant on every server."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise invalid_input(
                name, f"{FIELD} must be an ISO 8601 date and time, e.g. 2026-12-24T09:00:00Z."
            ) from None
    if value.tzinfo is None:
        raise invalid_input(name, f"{FIELD} must include a time zone offset, e.g. Z or +01:00.")
    return value


class Columns(Protocol):
    """A stored row read by column name (an asyncpg record or a SQLAlchemy row's mapping)."""

    def __getitem__(self, name: str, /) -> Any: ...


@dataclass(frozen=True)
class Storage:
    """How a field's stored form maps to columns, and what clients read and the duplicate
    guard compares of it. Without a Storage a field is one column named like it, holding the
    value as it is."""

    columns: Callable[[Any], dict[str, Any]]
    from_row: Callable[[Columns], Any]
    shown: Callable[[Any], Any]
    compared: Callable[[Any], Any]
    # The column whose value clients read, an empty one as none (shown(from_row(row)) without
    # the calls: the compiled reads read it so), when one column holds it.
    shown_column: str | None = None


# A website is stored with its domain, which the duplicate guard compares.
WEBSITE_STORAGE = Storage(
    columns=lambda website: {
        "website": website.url if website else None,
        "website_domain": website.domain if website else None,
    },
    from_row=lambda row: Website(row["website"], row["website_domain"]) if row["website"] else None,
    shown=lambda website: website.url if website else None,
    compared=lambda website: website.domain if website else None,
    shown_column="website",
)


@dataclass(frozen=True)
class FieldSpec:
    """What the layers derive a settable lead field from (docs/data-layer.md)."""

    type: type  # the value as clients give and read it (GraphQL String, DateTime, ...)
    # The given value (or None) and the server's default phone region -> the stored form;
    # RuleViolation (INVALID_INPUT, naming the field) when it breaks a rule.
    normalize: Callable[[Any, str | None], Any]
    update_description: str
    create_description: str | None = None
    storage: Storage | None = None
    # The column of the duplicate guard's unique index over open leads, if the field is a key.
    duplicate_column: str | None = None
    # The import key hashes the first fields always; fields added later join it only when a
    # row sets them, so rows imported before a field existed keep their keys.
    import_key: Literal["always", "when_set"] = "when_set"


@dataclass(frozen=True)
class LeadFields:
    """The fields a client or a CSV row sets on a lead, validated and normalised: one
    declaration per field. The column and domain attribute are its name; the GraphQL and
    input name is its camelCase; the import reads the column headed by it (any case, spaces,
    hyphens and underscores ignored)."""

    business_domain: str | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                str,
                lambda value, _: normalize_business_domain(value),
                "Trimmed, 1 to 120 characters; null clears it. Makes a score stale.",
                import_key="always",
            )
        },
    )
    contact_name: str | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                str,
                lambda value, _: normalize_name("contact_name", value),
                "Trimmed, 1 to 200 characters; null clears it.",
                import_key="always",
            )
        },
    )
    company_name: str | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                str,
                lambda value, _: normalize_name("company_name", value),
                "Trimmed, 1 to 200 characters; null clears it.",
                import_key="always",
            )
        },
    )
    email: str | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                str,
                lambda value, _: normalize_email(value),
                "Stored lower-cased; null clears it.",
                create_description="Stored lower-cased.",
                duplicate_column="email",
                import_key="always",
            )
        },
    )
    phone: str | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                str,
                normalize_phone,
                "Stored in E.164; null clears it.",
                create_description="Stored in E.164; include the +country code unless the server "
                "has a default region.",
                duplicate_column="phone",
                import_key="always",
            )
        },
    )
    website: Website | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                str,
                lambda value, _: normalize_website(value),
                "A host or URL; null clears it.",
                create_description="A host or URL; https:// is assumed when no scheme is given.",
                storage=WEBSITE_STORAGE,
                duplicate_column="website_domain",
                import_key="always",
            )
        },
    )
    next_follow_up_at: datetime | None = field(
        default=None,
        metadata={
            "spec": FieldSpec(
                datetime,
                lambda value, _: normalize_instant("next_follow_up_at", value),
                "When the owner plans the next contact; null clears it.",
                create_description="When the owner plans the next contact.",
            )
        },
    )

    def columns(self) -> dict[str, Any]:
        """Column -> value, every declared field's columns."""
        # Every write of a lead comes through here: the plain fields are copied as they are.
        columns = dict(vars(self))
        for name, storage in STORED_AS_MORE:
            columns.update(storage.columns(columns.pop(name)))
        return columns

    @classmethod
    def from_row(cls, row: Columns) -> "LeadFields":
        # Every lead read comes through here: the plain columns are read without a call.
        return cls(
            *[row[name] if storage is None else storage.from_row(row) for name, storage in _STORED]
        )

    @property
    def duplicate_keys(self) -> dict[str, str]:
        return duplicate_keys(vars(self))

    @property
    def import_key(self) -> str:
        """A fingerprint of a normalised row: the same row imported twice gets the same key."""
        parts: list[Any] = []
        for f in LEAD_FIELDS:
            shown = f.shown(getattr(self, f.name))
            if f.spec.import_key == "always":
                parts.append(shown)
            elif shown is not None:
                parts.append([f.name, shown.isoformat() if isinstance(shown, datetime) else shown])
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class LeadField:
    """A declared field of LeadFields with its name."""

    name: str
    spec: FieldSpec

    def columns(self, value: Any) -> dict[str, Any]:
        storage = self.spec.storage
        return {self.name: value} if storage is None else storage.columns(value)

    def shown(self, value: Any) -> Any:
        """The value as clients read it."""
        storage = self.spec.storage
        return value if storage is None else storage.shown(value)

    def compared(self, value: Any) -> Any:
        """The value the duplicate guard compares."""
        storage = self.spec.storage
        return value if storage is None else storage.compared(value)


LEAD_FIELDS = tuple(LeadField(f.name, f.metadata["spec"]) for f in fields(LeadFields))
LEAD_FIELDS_BY_NAME = {f.name: f for f in LEAD_FIELDS}
NORMALIZERS = {f.name: f.spec.normalize for f in LEAD_FIELDS}
_STORED = tuple((f.name, f.spec.storage) for f in LEAD_FIELDS)
# The fields with a Storage of their own (not one column holding the value as it is).
STORED_AS_MORE = tuple((name, storage) for name, storage in _STORED if storage is not None)
DUPLICATE_KEY_FIELDS = tuple(f for f in LEAD_FIELDS if f.spec.duplicate_column)
# Every column the declared fields are stored in, in declaration order.
LEAD_FIELD_COLUMNS = tuple(column for f in LEAD_FIELDS for column in f.columns(None))


def duplicate_keys(stored: Mapping[str, Any]) -> dict[str, str]:
    """The values among `stored` (field name -> stored form) that identify the same client:
    field name -> the value the duplicate guard compares."""
    keys = {f.name: f.compared(stored.get(f.name)) for f in DUPLICATE_KEY_FIELDS}
    return {name: value for name, value in keys.items() if value is not None}


def normalize_fields(given: Mapping[str, Any], default_phone_region: str | None) -> dict[str, Any]:
    """The stored forms of the given fields (name -> value as given); every violation at once."""
    return run_checks(
        {
            name: partial(NORMALIZERS[name], value, default_phone_region)
            for name, value in given.items()
        }
    )


def validate_lead_fields(given: Mapping[str, Any], default_phone_region: str | None) -> LeadFields:
    """createLead's rules, also applied to every imported row; all violations at once. A field
    not given is None."""
    return LeadFields(**normalize_fields(given, default_phone_region))


def merge_violations(keep: Lead, other: Lead) -> list[Violation]:
    """Why `other` may not be merged into `keep`; empty when it may. Both must be open."""
    violations: list[Violation] = []
    for input_field, lead in (("keep_id", keep), ("merge_id", other)):
        if lead.locked:
            violations.append(replace(lead_locked_violation(), field=(input_field,)))
        elif lead.stage is LeadStage.LOST:
            violations.append(
                Violation(
                    ErrorCode.INVALID_TRANSITION,
                    f"The lead in `{FIELD}` is LOST; only open leads can be merged.",
                    (input_field,),
                )
            )
    return violations


def merged_fields(keep: Lead, other: Lead) -> LeadFields:
    """The kept lead's fields with the empty ones filled from the other lead; never overwrites."""
    return LeadFields(
        **{
            f.name: getattr(keep.fields, f.name) or getattr(other.fields, f.name)
            for f in LEAD_FIELDS
        }
    )


def transfer_violations(lead: Lead, threshold: float) -> list[Violation]:
    """Every reason the lead may not be transferred to sales now; empty when it may."""
    if lead.locked:
        return [lead_locked_violation()]
    violations: list[Violation] = []
    if lead.stage is not LeadStage.QUALIFIED:
        violations.append(
            Violation(
                ErrorCode.NOT_QUALIFIED,
                f"Only a QUALIFIED lead can be transferred; this one is {lead.stage}.",
            )
        )
    if not lead.business_domain:
        violations.append(
            Violation(
                ErrorCode.DOMAIN_REQUIRED,
                "A lead needs a business domain before it can be transferred.",
                ("business_domain",),
            )
        )
    if lead.score is None:
        violations.append(
            Violation(
                ErrorCode.SCORE_REQUIRED,
                "The lead has not been analyzed; run analyzeLead first.",
            )
        )
    else:
        if lead.score.value < threshold:
            violations.append(
                Violation(
                    ErrorCode.SCORE_TOO_LOW,
                    f"The score {lead.score.value} is below the transfer threshold {threshold}.",
                )
            )
        if lead.score.is_stale_for(lead.snapshot):
            violations.append(
                Violation(
                    ErrorCode.SCORE_STALE,
                    "The lead changed since it was scored; run analyzeLead again.",
                )
            )
    return violations
