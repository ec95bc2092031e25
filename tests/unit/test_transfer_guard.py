"""The transfer guard over the full product of its conditions: every failure is reported at
once, each with its own code."""

import itertools
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from crm_graphql.domain.enums import LeadSource, LeadStage, ScoreRecommendation
from crm_graphql.domain.errors import ErrorCode
from crm_graphql.domain.lead import Lead, LeadFields, transfer_violations
from crm_graphql.domain.scoring import LeadSnapshot, Score

NOW = datetime(2026, 1, 2, tzinfo=UTC)
THRESHOLD = 0.6
SCORE_STATES = ["absent", "too low", "stale", "too low and stale", "at threshold", "fine"]


def make_lead(stage: LeadStage, domain: str | None, score_state: str) -> Lead:
    lead = Lead(
        id=1,
        source=LeadSource.PARTNER,
        stage=stage,
        activity_count=5,
        fields=LeadFields(business_domain=domain),
        score=None,
        created_at=NOW,
        updated_at=NOW,
    )
    if score_state == "absent":
        return lead
    value = {"too low": 0.59, "too low and stale": 0.59, "at threshold": THRESHOLD}.get(
        score_state, 0.9
    )
    inputs = lead.snapshot
    if "stale" in score_state:
        inputs = LeadSnapshot(lead.source, lead.business_domain, lead.activity_count - 1)
    score = Score(value, ScoreRecommendation.NURTURE, (), "test", NOW, inputs)
    return replace(lead, score=score)


def expected_codes(stage: LeadStage, domain: str | None, score_state: str) -> list[ErrorCode]:
    if stage is LeadStage.TRANSFERRED:
        return [ErrorCode.LEAD_LOCKED]
    codes = []
    if stage is not LeadStage.QUALIFIED:
        codes.append(ErrorCode.NOT_QUALIFIED)
    if domain is None:
        codes.append(ErrorCode.DOMAIN_REQUIRED)
    if score_state == "absent":
        codes.append(ErrorCode.SCORE_REQUIRED)
    if "too low" in score_state:
        codes.append(ErrorCode.SCORE_TOO_LOW)
    if "stale" in score_state:
        codes.append(ErrorCode.SCORE_STALE)
    return codes


@pytest.mark.parametrize(
    ("stage", "domain", "score_state"),
    list(itertools.product(LeadStage, ["fintech", None], SCORE_STATES)),
)
def test_every_guard_combination(stage: LeadStage, domain: str | None, score_state: str):
    violations = transfer_violations(make_lead(stage, domain, score_state), THRESHOLD)
    assert [v.code for v in violations] == expected_codes(stage, domain, score_state)
    assert all(v.message for v in violations)
    assert len({v.message for v in violations}) == len(violations)
    for violation in violations:
        if violation.code is ErrorCode.DOMAIN_REQUIRED:
            assert violation.field == ("business_domain",)


def test_the_threshold_is_a_parameter():
    lead = make_lead(LeadStage.QUALIFIED, "fintech", "fine")  # scored 0.9
    assert transfer_violations(lead, 0.9) == []
    assert [v.code for v in transfer_violations(lead, 0.91)] == [ErrorCode.SCORE_TOO_LOW]
