"""Property tests over the domain rules: whatever sequence of requests arrives, the rules hold."""

import asyncio
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage, ScoreRecommendation
from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.domain.lead import (
    BUSINESS_DOMAIN_MAX_LENGTH,
    Lead,
    LeadFields,
    normalize_business_domain,
    transfer_violations,
)
from crm_graphql.domain.lifecycle import (
    LEAD_TRANSITIONS,
    SALE_TRANSITIONS,
    check_lead_transition,
    check_sale_transition,
)
from crm_graphql.domain.scoring import HeuristicScorer, LeadSnapshot

NOW = datetime(2026, 11, 27, tzinfo=UTC)
thresholds = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
snapshots = st.builds(
    LeadSnapshot,
    source=st.sampled_from(LeadSource),
    business_domain=st.none() | st.text(min_size=1, max_size=20),
    activity_count=st.integers(min_value=0, max_value=10_000),
)


@given(st.lists(st.sampled_from(LeadStage), max_size=30))
def test_any_sequence_of_stage_requests_keeps_the_lead_history_linear(requests):
    stage = LeadStage.NEW
    history: list[tuple[LeadStage | None, LeadStage]] = [(None, LeadStage.NEW)]
    for target in requests:
        if check_lead_transition(stage, target) is None:
            history.append((stage, target))
            stage = target
    # Each change starts where the previous one ended, follows the table, never transfers.
    for (_, previous_to), (from_, to) in itertools.pairwise(history):
        assert from_ == previous_to
        assert to in LEAD_TRANSITIONS[from_]
        assert to is not LeadStage.TRANSFERRED
    assert history[-1][1] == stage
    assert len(history) <= len(LeadStage)  # no stage is ever entered twice


@given(st.lists(st.sampled_from(SaleStage), max_size=30))
def test_any_sequence_of_sale_stage_requests_follows_the_pipeline(requests):
    stage = SaleStage.NEW
    for target in requests:
        violation = check_sale_transition(stage, target)
        if violation is None:
            assert target in SALE_TRANSITIONS[stage]
            stage = target
        else:
            assert violation.code is ErrorCode.INVALID_TRANSITION
            assert target not in SALE_TRANSITIONS[stage]


@given(st.sampled_from(LeadStage))
def test_a_transferred_lead_refuses_every_stage_change(target):
    violation = check_lead_transition(LeadStage.TRANSFERRED, target)
    assert violation is not None
    assert violation.code is ErrorCode.LEAD_LOCKED


@given(snapshots, thresholds)
def test_scores_stay_in_zero_to_one_with_two_decimals(snapshot, threshold):
    score = asyncio.run(HeuristicScorer(threshold).score(snapshot, NOW))
    assert 0.0 <= score.value <= 1.0
    assert round(score.value, 2) == score.value
    expected = (
        ScoreRecommendation.TRANSFER_TO_SALES
        if score.value >= threshold
        else ScoreRecommendation.NURTURE
    )
    assert score.recommendation is expected
    assert not score.is_stale_for(snapshot)


@given(
    stage=st.sampled_from(LeadStage),
    scored=snapshots,
    current=snapshots,
    analyzed=st.booleans(),
    threshold=thresholds,
)
def test_the_guard_allows_a_transfer_only_when_every_rule_holds(
    stage, scored, current, analyzed, threshold
):
    score = asyncio.run(HeuristicScorer(threshold).score(scored, NOW)) if analyzed else None
    lead = Lead(
        id=1,
        source=current.source,
        stage=stage,
        activity_count=current.activity_count,
        fields=LeadFields(business_domain=current.business_domain),
        score=score,
        created_at=NOW,
        updated_at=NOW,
    )
    violations = transfer_violations(lead, threshold)
    all_rules_hold = (
        stage is LeadStage.QUALIFIED
        and bool(current.business_domain)
        and score is not None
        and score.value >= threshold
        and not score.is_stale_for(current)
    )
    assert (violations == []) == all_rules_hold
    codes = [v.code for v in violations]
    assert len(codes) == len(set(codes))  # each failing rule reported once
    if stage is LeadStage.TRANSFERRED:
        assert codes == [ErrorCode.LEAD_LOCKED]


# Any code point, lone surrogates (which JSON escapes can carry) and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=300)


def storable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


@given(any_text)
def test_a_business_domain_is_stored_trimmed_and_bounded_or_refused(value):
    trimmed = value.strip()
    if not storable(value) or not 1 <= len(trimmed) <= BUSINESS_DOMAIN_MAX_LENGTH:
        with pytest.raises(RuleViolation) as refusal:
            normalize_business_domain(value)
        assert [v.code for v in refusal.value.violations] == [ErrorCode.INVALID_INPUT]
        assert refusal.value.violations[0].field == ("business_domain",)
    else:
        stored = normalize_business_domain(value)
        assert stored == trimmed
        assert stored is not None
        assert 1 <= len(stored) <= BUSINESS_DOMAIN_MAX_LENGTH
