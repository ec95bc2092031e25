"""The learned scorer's features and its model, applied in pure Python.

Training (scikit-learn, an optional extra) only produces the numbers in LogisticModel; scoring
with them needs nothing beyond the standard library, so the server image stays small.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_graphql.domain.enums import ActivityKind, LeadSource
from crm_graphql.domain.scoring import LeadEvidence, LeadSnapshot, ScoreFactor

# The heuristic's inputs, then time to first contact and the activity mix (notes are the
# baseline share, so the shares are not collinear).
FEATURE_NAMES: tuple[str, ...] = (
    "source_partner",
    "source_manual",
    "has_business_domain",
    "log_activity_count",
    "contacted",
    "log_hours_to_first_contact",
    "share_calls",
    "share_emails",
    "share_meetings",
)

SHARE_FEATURES = {
    "share_calls": ActivityKind.CALL,
    "share_emails": ActivityKind.EMAIL,
    "share_meetings": ActivityKind.MEETING,
}


def lead_features(lead: LeadSnapshot, evidence: LeadEvidence) -> dict[str, float]:
    """The model's inputs for one lead; a lead never contacted has 0 for the contact features."""
    mix_total = sum(evidence.activity_mix.values())
    features = {
        "source_partner": float(lead.source is LeadSource.PARTNER),
        "source_manual": float(lead.source is LeadSource.MANUAL),
        "has_business_domain": float(bool(lead.business_domain)),
        "log_activity_count": math.log1p(lead.activity_count),
        "contacted": float(evidence.first_activity_at is not None),
        "log_hours_to_first_contact": 0.0,
    }
    if evidence.first_activity_at is not None:
        hours = (evidence.first_activity_at - evidence.created_at).total_seconds() / 3600
        features["log_hours_to_first_contact"] = math.log1p(max(0.0, hours))
    for name, kind in SHARE_FEATURES.items():
        features[name] = evidence.activity_mix.get(kind, 0) / mix_total if mix_total else 0.0
    return features


def describe_feature(name: str, lead: LeadSnapshot, evidence: LeadEvidence) -> str:
    """What the lead's value of a feature is, in words."""
    mix_total = sum(evidence.activity_mix.values())
    if name == "source_partner":
        return f"The source is {lead.source.lower()} (partner leads are a model input)"
    if name == "source_manual":
        return f"The source is {lead.source.lower()} (manual leads are a model input)"
    if name == "has_business_domain":
        return "The business domain is " + ("known" if lead.business_domain else "unknown")
    if name == "log_activity_count":
        return f"{lead.activity_count} activities logged"
    if name == "contacted":
        return "The client was contacted" if evidence.first_activity_at else "No contact yet"
    if name == "log_hours_to_first_contact":
        if evidence.first_activity_at is None:
            return "No first contact to time"
        hours = (evidence.first_activity_at - evidence.created_at).total_seconds() / 3600
        return f"First contact {hours:.1f} hours after the lead was created"
    kind = SHARE_FEATURES[name]
    count = evidence.activity_mix.get(kind, 0)
    return f"{count} of {mix_total} activities were {kind.lower()}s"


def sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1 / (1 + math.exp(-logit))
    exp = math.exp(logit)
    return exp / (1 + exp)


@dataclass(frozen=True)
class LogisticModel:
    """Standardised logistic regression: p = sigmoid(intercept + sum coef * (x - mean) / scale)."""

    version: int
    trained_at: datetime
    feature_names: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    means: tuple[float, ...]
    scales: tuple[float, ...]

    def probability(self, features: Mapping[str, float]) -> float:
        return sigmoid(self.intercept + sum(self._logit_terms(features)))

    def _logit_terms(self, features: Mapping[str, float]) -> list[float]:
        return [
            coefficient * (features[name] - mean) / scale
            for name, coefficient, mean, scale in zip(
                self.feature_names, self.coefficients, self.means, self.scales, strict=True
            )
        ]

    def explain(
        self, lead: LeadSnapshot, evidence: LeadEvidence
    ) -> tuple[float, tuple[ScoreFactor, ...]]:
        """The probability and factors that add up to it exactly.

        The baseline is the estimate for a lead at the training average; the change from it
        is shared among the features in proportion to their terms in the log-odds.
        """
        features = lead_features(lead, evidence)
        terms = self._logit_terms(features)
        baseline = sigmoid(self.intercept)
        shift = sum(terms)
        probability = sigmoid(self.intercept + shift)
        # Proportional shares of p - baseline; at shift 0 every share is 0 anyway.
        per_logit = (probability - baseline) / shift if shift else baseline * (1 - baseline)
        factors = [
            ScoreFactor(
                "baseline",
                baseline,
                f"A lead with average features converts with probability {baseline:.2f} "
                "in the closed leads the model learned from.",
            )
        ]
        for name, term in zip(self.feature_names, terms, strict=True):
            share = term * per_logit
            direction = "raises" if share >= 0 else "lowers"
            factors.append(
                ScoreFactor(
                    name,
                    share,
                    f"{describe_feature(name, lead, evidence)}; "
                    f"this {direction} the estimate by {abs(share):.2f}.",
                )
            )
        return probability, tuple(factors)

    @classmethod
    def from_params(
        cls, version: int, trained_at: datetime, params: Mapping[str, Any]
    ) -> "LogisticModel":
        names: Sequence[str] = params["feature_names"]
        if tuple(names) != FEATURE_NAMES:
            raise ValueError(
                f"model version {version} was trained on features {list(names)}, "
                f"this code computes {list(FEATURE_NAMES)}; train it again"
            )
        return cls(
            version=version,
            trained_at=trained_at,
            feature_names=tuple(names),
            coefficients=tuple(float(c) for c in params["coefficients"]),
            intercept=float(params["intercept"]),
            means=tuple(float(m) for m in params["means"]),
            scales=tuple(float(s) for s in params["scales"]),
        )
