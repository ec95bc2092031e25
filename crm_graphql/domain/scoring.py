"""The scorer interface and the heuristic scorer of the original service."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from crm_graphql.domain.enums import LeadSource, ScoreRecommendation


@dataclass(frozen=True)
class LeadSnapshot:
    """The inputs a score is computed from; a change to any of them makes a stored score stale."""

    source: LeadSource
    business_domain: str | None
    activity_count: int


@dataclass(frozen=True)
class Score:
    value: float
    recommendation: ScoreRecommendation
    reasons: tuple[str, ...]
    scorer: str
    scored_at: datetime
    inputs: LeadSnapshot

    def is_stale_for(self, current: LeadSnapshot) -> bool:
        return self.inputs != current


class LeadScorer(Protocol):
    """An advisor: it estimates how likely a lead is to convert. People decide."""

    name: str

    async def score(self, lead: LeadSnapshot, now: datetime) -> Score: ...


def recommend(value: float, threshold: float) -> ScoreRecommendation:
    if value >= threshold:
        return ScoreRecommendation.TRANSFER_TO_SALES
    return ScoreRecommendation.NURTURE


def clamp_score(raw: float) -> float:
    return round(min(1.0, max(0.0, raw)), 2)


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

    def __init__(self, threshold: float, weights: HeuristicWeights | None = None) -> None:
        self.threshold = threshold
        self.weights = weights or HeuristicWeights()

    async def score(self, lead: LeadSnapshot, now: datetime) -> Score:
        return self.score_now(lead, now)

    def score_now(self, lead: LeadSnapshot, now: datetime) -> Score:
        weights = self.weights
        raw = 0.0
        reasons: list[str] = []

        source_weight = dict(weights.source)[lead.source]
        raw += source_weight
        reasons.append(f"source {lead.source.lower()} (+{source_weight})")

        if lead.business_domain:
            raw += weights.business_domain
            reasons.append(f"business domain present (+{weights.business_domain})")
        else:
            reasons.append("missing business domain")

        if lead.activity_count > MANY_ACTIVITIES:
            raw += weights.many_activities
            reasons.append(f"more than {MANY_ACTIVITIES} activities (+{weights.many_activities})")
        elif lead.activity_count > SOME_ACTIVITIES:
            raw += weights.some_activities
            reasons.append(f"more than {SOME_ACTIVITIES} activities (+{weights.some_activities})")

        value = clamp_score(raw)
        return Score(
            value=value,
            recommendation=recommend(value, self.threshold),
            reasons=tuple(reasons),
            scorer=self.name,
            scored_at=now,
            inputs=lead,
        )
