"""The lead entity and the rules that guard its fields and its transfer to sales."""

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation
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
