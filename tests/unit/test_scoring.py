"""Explained scores, pure: the heuristic's factors, the learned model's arithmetic, storage."""

from datetime import UTC, datetime, timedelta

import pytest

from crm_graphql.db.repository import score_from_row, score_to_json
from crm_graphql.domain.enums import ActivityKind, LeadSource, ScoreRecommendation
from crm_graphql.domain.learned import FEATURE_NAMES, LogisticModel, lead_features
from crm_graphql.domain.scoring import (
    HeuristicScorer,
    HeuristicWeights,
    LeadEvidence,
    LeadSnapshot,
    as_fallback,
)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def score(source=LeadSource.PARTNER, domain="fintech", activities=0, weights=None):
    return HeuristicScorer(0.6, weights).score_now(LeadSnapshot(source, domain, activities), NOW)


def test_heuristic_factors_mirror_its_rules_and_keep_the_reference_reasons():
    result = score(LeadSource.MANUAL, "retail", 5)
    assert [(f.name, f.contribution) for f in result.factors] == [
        ("source", 0.2),
        ("business domain", 0.3),
        ("activities", 0.2),
    ]
    assert result.reasons == (
        "source manual (+0.2)",
        "business domain present (+0.3)",
        "more than 3 activities (+0.2)",
    )
    assert result.value == 0.7
    assert result.scorer == "heuristic"
    assert result.scorer_version == "1"
    assert all(f.explanation.endswith(".") for f in result.factors)


def test_missing_business_domain_is_a_factor_that_contributes_nothing():
    result = score(LeadSource.SCANNER, None, 11)
    factors = {f.name: f for f in result.factors}
    assert factors["missing business domain"].contribution == 0.0
    assert "unknown" in factors["missing business domain"].explanation
    assert factors["activities"].contribution == 0.4
    assert result.reasons[1] == "missing business domain"
    assert result.value == 0.5


def test_few_activities_is_a_zero_factor_and_no_reason():
    result = score(activities=3)
    assert [f.contribution for f in result.factors if f.name == "activities"] == [0.0]
    assert len(result.reasons) == 2


@pytest.mark.parametrize("source", list(LeadSource))
@pytest.mark.parametrize("domain", [None, "retail"])
@pytest.mark.parametrize("activities", [0, 3, 4, 10, 11, 50])
def test_heuristic_factors_add_up_to_the_value(source, domain, activities):
    result = score(source, domain, activities)
    assert result.unclamped_value == pytest.approx(result.value, abs=1e-9)


def test_factors_add_up_to_the_value_before_clamping():
    weights = HeuristicWeights(business_domain=0.9, many_activities=0.5)
    result = score(LeadSource.PARTNER, "fintech", 11, weights)
    assert result.unclamped_value == pytest.approx(1.7)
    assert result.value == 1.0
    assert result.recommendation is ScoreRecommendation.TRANSFER_TO_SALES


def test_a_negative_weight_clamps_at_zero_and_its_factor_stays_signed():
    weights = HeuristicWeights(source=((LeadSource.SCANNER, -0.5),))
    result = score(LeadSource.SCANNER, None, 0, weights)
    assert result.factors[0].contribution == -0.5
    assert result.unclamped_value == pytest.approx(-0.5)
    assert result.value == 0.0


def test_a_fallback_score_says_so_and_keeps_the_heuristic_value():
    fallback = as_fallback(score(), "timeout")
    assert fallback.scorer == "heuristic (fallback: timeout)"
    assert fallback.value == score().value


def test_factors_and_version_survive_storage():
    original = score(LeadSource.MANUAL, "retail", 5)
    loaded = score_from_row(original.value, score_to_json(original))
    assert loaded == original


def test_a_score_stored_before_factors_existed_loads_with_none():
    old = score_to_json(score())
    del old["factors"], old["scorer_version"]
    loaded = score_from_row(0.6, old)
    assert loaded is not None
    assert loaded.factors == ()
    assert loaded.scorer_version is None
    assert loaded.reasons == score().reasons


def evidence(first_after_hours=None, **mix):
    created = NOW - timedelta(days=3)
    first = created + timedelta(hours=first_after_hours) if first_after_hours is not None else None
    return LeadEvidence(
        created_at=created,
        first_activity_at=first,
        activity_mix={ActivityKind[k.upper()]: v for k, v in mix.items()},
    )


def model(coefficients=(0.8, 0.3, 0.9, 0.5, 0.4, -0.7, 0.1, -0.4, 0.9), intercept=-0.2):
    return LogisticModel(
        version=3,
        trained_at=NOW,
        feature_names=FEATURE_NAMES,
        coefficients=coefficients,
        intercept=intercept,
        means=(0.3, 0.3, 0.6, 1.5, 0.8, 2.0, 0.3, 0.3, 0.2),
        scales=(0.45, 0.45, 0.5, 0.8, 0.4, 1.5, 0.2, 0.2, 0.2),
    )


def test_lead_features_read_time_to_first_contact_and_the_mix():
    features = lead_features(
        LeadSnapshot(LeadSource.PARTNER, None, 4), evidence(3, call=1, meeting=2, note=1)
    )
    assert features["source_partner"] == 1.0
    assert features["has_business_domain"] == 0.0
    assert features["contacted"] == 1.0
    assert features["log_hours_to_first_contact"] == pytest.approx(1.3862943611)  # log1p(3)
    assert features["share_meetings"] == 0.5
    assert features["share_emails"] == 0.0


def test_a_lead_never_contacted_has_zero_contact_features():
    features = lead_features(LeadSnapshot(LeadSource.SCANNER, "x", 0), evidence())
    assert features["contacted"] == 0.0
    assert features["log_hours_to_first_contact"] == 0.0
    assert features["share_calls"] == 0.0


@pytest.mark.parametrize(
    ("lead", "proof"),
    [
        (LeadSnapshot(LeadSource.PARTNER, "fintech", 12), evidence(1, meeting=8, call=4)),
        (LeadSnapshot(LeadSource.SCANNER, None, 0), evidence()),
        (LeadSnapshot(LeadSource.MANUAL, "retail", 2), evidence(90, email=2)),
    ],
)
def test_learned_factors_add_up_to_the_probability(lead, proof):
    probability, factors = model().explain(lead, proof)
    assert probability == pytest.approx(model().probability(lead_features(lead, proof)))
    assert sum(f.contribution for f in factors) == pytest.approx(probability, abs=1e-12)
    assert factors[0].name == "baseline"
    assert {f.name for f in factors[1:]} == set(FEATURE_NAMES)


def test_a_lead_at_the_training_average_gets_the_baseline():
    flat = model(coefficients=(0.0,) * len(FEATURE_NAMES), intercept=0.4)
    probability, factors = flat.explain(LeadSnapshot(LeadSource.PARTNER, "x", 1), evidence(1))
    assert probability == pytest.approx(factors[0].contribution)
    assert all(f.contribution == 0.0 for f in factors[1:])


def test_learned_explanations_say_which_way_a_feature_pushes():
    _, factors = model().explain(
        LeadSnapshot(LeadSource.PARTNER, "fintech", 12), evidence(1, meeting=8, call=4)
    )
    by_name = {f.name: f for f in factors}
    assert by_name["share_meetings"].contribution > 0
    assert "8 of 12 activities were meetings; this raises" in by_name["share_meetings"].explanation


def test_a_model_with_other_features_is_refused():
    params = {
        "feature_names": ["source_partner"],
        "coefficients": [1.0],
        "intercept": 0.0,
        "means": [0.0],
        "scales": [1.0],
    }
    with pytest.raises(ValueError, match="train it again"):
        LogisticModel.from_params(1, NOW, params)
