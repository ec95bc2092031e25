"""The scorer interface, explained scores and the heuristic scorer of the original service."""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from crm_graphql.domain.enums import ActivityKind, LeadSource, ScoreRecommendation


class ScorerKind(StrEnum):
    """The scorers a deployment can choose (CRM_SCORER) and an admin can ask for by name."""

    HEURISTIC = "heuristic"
    LLM = "llm"
    LEARNED = "learned"


@dataclass(frozen=True)
class LeadSnapshot:
    """The inputs a score is computed from; a change to any of them makes a stored score stale.

    Scorers that also read activities (notes, mix, time to first contact) need nothing more
    here: activities are append-only, and every new one increments activity_count.
    """

    source: LeadSource
    business_domain: str | None
    activity_count: int


@dataclass(frozen=True)
class ActivityRecord:
    kind: ActivityKind
    note: str | None
    at: datetime


RECENT_ACTIVITIES = 50  # how many of the newest activities (notes included) evidence holds


@dataclass(frozen=True)
class LeadEvidence:
    """What scorers beyond the heuristic read about a lead's contact history.

    Derived from the activities, so it changes only together with activity_count.
    """

    created_at: datetime
    first_activity_at: datetime | None = None
    activity_mix: Mapping[ActivityKind, int] = field(default_factory=dict)
    recent: tuple[ActivityRecord, ...] = ()  # newest first


@dataclass(frozen=True)
class ScoreFactor:
    """One reason a score is what it is: its signed share of the value before clamping."""

    name: str
    contribution: float
    explanation: str


@dataclass(frozen=True)
class Score:
    value: float
    recommendation: ScoreRecommendation
    reasons: tuple[str, ...]
    scorer: str
    scored_at: datetime
    inputs: LeadSnapshot
    factors: tuple[ScoreFactor, ...] = ()
    scorer_version: str | None = None  # None on scores stored before versions were recorded

    def is_stale_for(self, current: LeadSnapshot) -> bool:
        return self.inputs != current

    @property
    def unclamped_value(self) -> float:
        """The sum of the factors: the value before clamping to [0, 1] and rounding."""
        return sum(factor.contribution for factor in self.factors)


class LeadScorer(Protocol):
    """An advisor: it estimates how likely a lead is to convert. People decide."""

    name: str
    # True when the scorer reads LeadEvidence; the service then loads it (one more query).
    needs_evidence: bool

    async def score(
        self, lead: LeadSnapshot, now: datetime, evidence: LeadEvidence | None = None
    ) -> Score: ...


def recommend(value: float, threshold: float) -> ScoreRecommendation:
    if value >= threshold:
        return ScoreRecommendation.TRANSFER_TO_SALES
    return ScoreRecommendation.NURTURE


def clamp_score(raw: float) -> float:
    return round(min(1.0, max(0.0, raw)), 2)


def explained_score(
    factors: tuple[ScoreFactor, ...],
    reasons: tuple[str, ...],
    *,
    threshold: float,
    scorer: str,
    scorer_version: str,
    now: datetime,
    inputs: LeadSnapshot,
) -> Score:
    """A score whose value is, by construction, its factors' sum clamped to [0, 1]."""
    value = clamp_score(sum(factor.contribution for factor in factors))
    return Score(
        value=value,
        recommendation=recommend(value, threshold),
        reasons=reasons,
        scorer=scorer,
        scored_at=now,
        inputs=inputs,
        factors=factors,
        scorer_version=scorer_version,
    )


def as_fallback(score: Score, reason: str) -> Score:
    """Mark a heuristic score given in place of a scorer that could not answer."""
    return replace(score, scorer=f"{score.scorer} (fallback: {reason})")


@dataclass(frozen=True)
class HeuristicWeights:
    """The reference weights of the original REST service."""

    source: tuple[tuple[LeadSource, float], ...] = (
        (LeadSource.PARTNER, 0.3),
        (LeadSource.MANUAL, 0.2),
        (LeadSource.SCANNER, 0.1),
    )
    business_domain: float = 0.3
    many_activities: float = 0.4  # more than MANY_ACTIVITIES
    some_activities: float = 0.2  # more than SOME_ACTIVITIES


MANY_ACTIVITIES = 10
SOME_ACTIVITIES = 3


class HeuristicScorer:
    name = "heuristic"
    version = "1"
    needs_evidence = False

    def __init__(self, threshold: float, weights: HeuristicWeights | None = None) -> None:
        self.threshold = threshold
        self.weights = weights or HeuristicWeights()

    async def score(
        self, lead: LeadSnapshot, now: datetime, evidence: LeadEvidence | None = None
    ) -> Score:
        return self.score_now(lead, now)

    def score_now(self, lead: LeadSnapshot, now: datetime) -> Score:
        """One factor per rule, fired or not; one reason per rule that fired (as before)."""
        weights = self.weights
        factors: list[ScoreFactor] = []
        reasons: list[str] = []

        source_weight = dict(weights.source)[lead.source]
        factors.append(
            ScoreFactor(
                "source",
                source_weight,
                f"Leads from source {lead.source.lower()} add {source_weight}.",
            )
        )
        reasons.append(f"source {lead.source.lower()} (+{source_weight})")

        if lead.business_domain:
            factors.append(
                ScoreFactor(
                    "business domain",
                    weights.business_domain,
                    f"The business domain is known, which adds {weights.business_domain}.",
                )
            )
            reasons.append(f"business domain present (+{weights.business_domain})")
        else:
            factors.append(
                ScoreFactor(
                    "missing business domain",
                    0.0,
                    "The business domain is unknown, so it adds nothing "
                    f"(it would add {weights.business_domain}).",
                )
            )
            reasons.append("missing business domain")

        count = lead.activity_count
        if count > MANY_ACTIVITIES:
            weight = weights.many_activities
            factors.append(
                ScoreFactor(
                    "activities",
                    weight,
                    f"{count} activities logged, more than {MANY_ACTIVITIES}, which adds {weight}.",
                )
            )
            reasons.append(f"more than {MANY_ACTIVITIES} activities (+{weight})")
        elif count > SOME_ACTIVITIES:
            weight = weights.some_activities
            factors.append(
                ScoreFactor(
                    "activities",
                    weight,
                    f"{count} activities logged, more than {SOME_ACTIVITIES}, which adds {weight}.",
                )
            )
            reasons.append(f"more than {SOME_ACTIVITIES} activities (+{weight})")
        else:
            factors.append(
                ScoreFactor(
                    "activities",
                    0.0,
                    f"{count} activities logged; more than {SOME_ACTIVITIES} would add "
                    f"{weights.some_activities}.",
                )
            )

        return explained_score(
            tuple(factors),
            tuple(reasons),
            threshold=self.threshold,
            scorer=self.name,
            scorer_version=self.version,
            now=now,
            inputs=lead,
        )
