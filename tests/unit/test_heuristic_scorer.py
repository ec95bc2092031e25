"""The heuristic scorer of the original service: its weights, boundaries, clamp and reasons."""

import itertools
from datetime import UTC, datetime

import pytest

from crm_graphql.domain.enums import LeadSource, ScoreRecommendation
from crm_graphql.domain.scoring import HeuristicScorer, HeuristicWeights, LeadSnapshot

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# Weights in hundredths, so the expected values are exact.
SOURCE_POINTS = {LeadSource.PARTNER: 30, LeadSource.MANUAL: 20, LeadSource.SCANNER: 10}
ACTIVITY_COUNTS = [0, 1, 3, 4, 10, 11, 500]


def activity_points(count: int) -> int:
    return 40 if count >= 11 else 20 if count >= 4 else 0


@pytest.mark.parametrize(
    ("source", "domain", "activities"),
    list(itertools.product(LeadSource, ["fintech", None], ACTIVITY_COUNTS)),
)
def test_reference_weights(source: LeadSource, domain: str | None, activities: int):
    snapshot = LeadSnapshot(source, domain, activities)
    score = HeuristicScorer(threshold=0.6).score_now(snapshot, NOW)

    points = SOURCE_POINTS[source] + (30 if domain else 0) + activity_points(activities)
    assert score.value == points / 100
    expected_reasons = [f"source {source.lower()} (+{SOURCE_POINTS[source] / 100})"]
    expected_reasons.append(
        "business domain present (+0.3)" if domain else "missing business domain"
    )
    if activities > 10:
        expected_reasons.append("more than 10 activities (+0.4)")
    elif activities > 3:
        expected_reasons.append("more than 3 activities (+0.2)")
    assert list(score.reasons) == expected_reasons
    expected = "TRANSFER_TO_SALES" if points >= 60 else "NURTURE"
    assert score.recommendation == ScoreRecommendation(expected)
    assert score.scorer == "heuristic"
    assert score.scored_at == NOW
    assert score.inputs == snapshot
    assert not score.is_stale_for(snapshot)


@pytest.mark.parametrize(("activities", "bonus"), [(3, 0.0), (4, 0.2), (10, 0.2), (11, 0.4)])
def test_activity_boundaries(activities: int, bonus: float):
    score = HeuristicScorer(0.6).score_now(LeadSnapshot(LeadSource.MANUAL, None, activities), NOW)
    assert score.value == round(0.2 + bonus, 2)


def test_a_blank_domain_counts_as_missing():
    score = HeuristicScorer(0.6).score_now(LeadSnapshot(LeadSource.PARTNER, "", 0), NOW)
    assert score.value == 0.3
    assert "missing business domain" in score.reasons


def test_the_score_is_clamped_to_one():
    weights = HeuristicWeights(business_domain=0.9, many_activities=0.8)
    score = HeuristicScorer(0.6, weights).score_now(
        LeadSnapshot(LeadSource.PARTNER, "fintech", 11), NOW
    )
    assert score.value == 1.0
    assert score.recommendation is ScoreRecommendation.TRANSFER_TO_SALES


def test_the_score_is_clamped_to_zero():
    weights = HeuristicWeights(source=((LeadSource.SCANNER, -0.9),), business_domain=0.1)
    score = HeuristicScorer(0.0, weights).score_now(
        LeadSnapshot(LeadSource.SCANNER, "fintech", 0), NOW
    )
    assert score.value == 0.0


@pytest.mark.parametrize(("weight", "expected"), [(0.333, 0.33), (0.336, 0.34), (0.1 + 0.2, 0.3)])
def test_the_score_is_rounded_to_two_places(weight: float, expected: float):
    weights = HeuristicWeights(source=((LeadSource.MANUAL, weight),))
    score = HeuristicScorer(0.6, weights).score_now(LeadSnapshot(LeadSource.MANUAL, None, 0), NOW)
    assert score.value == expected


@pytest.mark.parametrize(
    ("threshold", "recommendation"),
    [
        (0.59, ScoreRecommendation.TRANSFER_TO_SALES),
        (0.6, ScoreRecommendation.TRANSFER_TO_SALES),
        (0.61, ScoreRecommendation.NURTURE),
    ],
)
def test_recommendation_at_the_threshold(threshold: float, recommendation: ScoreRecommendation):
    # 0.1 + 0.3 + 0.2 is 0.6000000000000001 in floating point: rounding makes it exactly 0.6.
    for snapshot in (
        LeadSnapshot(LeadSource.PARTNER, "fintech", 0),
        LeadSnapshot(LeadSource.SCANNER, "fintech", 4),
    ):
        score = HeuristicScorer(threshold).score_now(snapshot, NOW)
        assert score.value == 0.6
        assert score.recommendation is recommendation


@pytest.mark.parametrize(
    "changed",
    [
        LeadSnapshot(LeadSource.MANUAL, "fintech", 2),
        LeadSnapshot(LeadSource.PARTNER, "retail", 2),
        LeadSnapshot(LeadSource.PARTNER, None, 2),
        LeadSnapshot(LeadSource.PARTNER, "fintech", 3),
    ],
)
def test_a_change_to_any_input_makes_the_score_stale(changed: LeadSnapshot):
    score = HeuristicScorer(0.6).score_now(LeadSnapshot(LeadSource.PARTNER, "fintech", 2), NOW)
    assert score.is_stale_for(changed)


async def test_the_async_interface_gives_the_same_score():
    snapshot = LeadSnapshot(LeadSource.PARTNER, "fintech", 4)
    scorer = HeuristicScorer(0.6)
    assert await scorer.score(snapshot, NOW) == scorer.score_now(snapshot, NOW)
