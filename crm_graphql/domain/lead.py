"""The lead entity and the rules that guard its fields and its transfer to sales."""

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Generic, TypeVar

from crm_graphql.domain.contact import ContactDetails, ContactInput, import_key, validate_contact
from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation, run_checks
from crm_graphql.domain.lifecycle import is_lead_locked, lead_locked_violation
from crm_graphql.domain.scoring import LeadSnapshot, Score
from crm_graphql.domain.text import unstorable_text

BUSINESS_DOMAIN_MAX_LENGTH = 120


@dataclass(frozen=True)
class Lead:
    id: int
    source: LeadSource
    stage: LeadStage
    business_domain: str | None
    activity_count: int
    score: Score | None
    created_at: datetime
    updated_at: datetime
    # User ids; None only on leads created before authentication existed.
    created_by: str | None = None
    owner_id: str | None = None
    contact: ContactDetails = field(default_factory=ContactDetails)
    duplicate_of: int | None = None  # created with allowDuplicate next to this open lead
    merged_into: int | None = None
    lost_reason: str | None = None

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
    violation = unstorable_text(value, "businessDomain")
    if violation:
        raise RuleViolation(violation)
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= BUSINESS_DOMAIN_MAX_LENGTH:
        raise RuleViolation(
            Violation(
                ErrorCode.INVALID_INPUT,
                f"businessDomain must be 1 to {BUSINESS_DOMAIN_MAX_LENGTH} characters "
                "after trimming, or null.",
                ("businessDomain",),
            )
        )
    return trimmed


@dataclass(frozen=True)
class LeadFields:
    """The fields a client or a CSV row sets on a new lead, validated and normalised."""

    business_domain: str | None
    contact: ContactDetails

    @property
    def import_key(self) -> str:
        return import_key(self.business_domain, self.contact)


def validate_lead_fields(
    business_domain: str | None, contact: ContactInput, default_phone_region: str | None
) -> LeadFields:
    """createLead's rules, also applied to every imported row; all violations at once."""
    values = run_checks(
        {
            "business_domain": lambda: normalize_business_domain(business_domain),
            "contact": lambda: validate_contact(contact, default_phone_region),
        }
    )
    return LeadFields(**values)  # type: ignore[arg-type]


def merge_violations(keep: Lead, other: Lead) -> list[Violation]:
    """Why `other` may not be merged into `keep`; empty when it may. Both must be open."""
    violations: list[Violation] = []
    for input_field, lead in (("keepId", keep), ("mergeId", other)):
        if lead.locked:
            violations.append(replace(lead_locked_violation(), field=(input_field,)))
        elif lead.stage is LeadStage.LOST:
            violations.append(
                Violation(
                    ErrorCode.INVALID_TRANSITION,
                    f"The lead in `{input_field}` is LOST; only open leads can be merged.",
                    (input_field,),
                )
            )
    return violations


def merged_fields(keep: Lead, other: Lead) -> LeadFields:
    """The kept lead's fields with the empty ones filled from the other lead; never overwrites."""
    contact = {
        f.name: getattr(keep.contact, f.name) or getattr(other.contact, f.name)
        for f in fields(ContactDetails)
    }
    return LeadFields(
        business_domain=keep.business_domain or other.business_domain,
        contact=ContactDetails(**contact),
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
                ("businessDomain",),
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
