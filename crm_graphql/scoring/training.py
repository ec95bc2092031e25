"""Training and evaluation of the learned scorer (`crm-graphql scorer train|evaluate`).

Needs the `learn` extra (scikit-learn, matplotlib); the server itself never imports this.
Closed leads are the examples: TRANSFERRED converted, LOST did not. A fixed hash of the lead ID
and a seed puts a quarter of them in a held-out split that training never sees, so `evaluate`
can rebuild the very same split later; the heuristic is evaluated on it too.
"""

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.driver import transaction
from crm_graphql.domain.enums import LeadStage
from crm_graphql.domain.lead import Lead
from crm_graphql.domain.learned import FEATURE_NAMES, LogisticModel, lead_features
from crm_graphql.domain.scoring import HeuristicScorer, LeadEvidence
from crm_graphql.scoring.learned import MODEL_KIND

MIN_LEADS_PER_CLASS = 50
HOLDOUT_SHARE = 0.25
CALIBRATION_BINS = 5
# Concurrent trainings each take the next free version; this many in a row is plenty.
STORE_ATTEMPTS = 5


class TrainingRefused(Exception):
    """Training or evaluation cannot run; the message says why, for the command line."""


@dataclass(frozen=True)
class Example:
    lead: Lead
    evidence: LeadEvidence
    converted: bool

    def features(self) -> list[float]:
        values = lead_features(self.lead.snapshot, self.evidence)
        return [values[name] for name in FEATURE_NAMES]


def in_holdout(lead_id: int, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{lead_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT_SHARE


async def load_examples(engine: AsyncEngine) -> list[Example]:
    async with engine.connect() as conn:
        leads = await repo.closed_leads(conn)
        evidence = await repo.evidence_by_leads(conn, leads)
    return [Example(lead, evidence[lead.id], lead.stage is LeadStage.TRANSFERRED) for lead in leads]


def class_counts(examples: Sequence[Example]) -> tuple[int, int]:
    converted = sum(example.converted for example in examples)
    return converted, len(examples) - converted


def check_enough(examples: Sequence[Example]) -> None:
    converted, lost = class_counts(examples)
    if converted < MIN_LEADS_PER_CLASS or lost < MIN_LEADS_PER_CLASS:
        raise TrainingRefused(
            f"Not enough closed leads to learn from: training needs at least "
            f"{MIN_LEADS_PER_CLASS} TRANSFERRED and {MIN_LEADS_PER_CLASS} LOST leads; "
            f"the CRM has {converted} TRANSFERRED and {lost} LOST."
        )


def fit(examples: Sequence[Example]) -> dict[str, Any]:
    """A standardised logistic regression, as the numbers LogisticModel applies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = [example.features() for example in examples]
    labels = [int(example.converted) for example in examples]
    scaler = StandardScaler().fit(features)
    regression = LogisticRegression(max_iter=1000).fit(scaler.transform(features), labels)
    return {
        "feature_names": list(FEATURE_NAMES),
        "coefficients": [float(c) for c in regression.coef_[0]],
        "intercept": float(regression.intercept_[0]),
        "means": [float(m) for m in scaler.mean_],
        "scales": [float(s) for s in scaler.scale_],
    }


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class ScorerEvaluation:
    name: str
    roc_auc: float | None  # None when the split holds one class only
    brier: float
    calibration: tuple[CalibrationBin, ...]

    def as_metrics(self) -> dict[str, Any]:
        return {"roc_auc": self.roc_auc, "brier": self.brier}


def evaluate_predictions(
    name: str, predictions: Sequence[float], outcomes: Sequence[bool]
) -> ScorerEvaluation:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    labels = [int(outcome) for outcome in outcomes]
    roc_auc = float(roc_auc_score(labels, predictions)) if len(set(labels)) == 2 else None
    bins = []
    for index in range(CALIBRATION_BINS):
        low, high = index / CALIBRATION_BINS, (index + 1) / CALIBRATION_BINS
        last = index == CALIBRATION_BINS - 1
        members = [
            (p, y)
            for p, y in zip(predictions, labels, strict=True)
            if low <= p < high or (last and p == high)
        ]
        if members:
            bins.append(
                CalibrationBin(
                    low,
                    high,
                    len(members),
                    sum(p for p, _ in members) / len(members),
                    sum(y for _, y in members) / len(members),
                )
            )
    return ScorerEvaluation(
        name, roc_auc, float(brier_score_loss(labels, predictions)), tuple(bins)
    )


@dataclass(frozen=True)
class Report:
    model_version: int
    trained_at: datetime
    seed: int
    train_counts: tuple[int, int]
    holdout_counts: tuple[int, int]
    learned: ScorerEvaluation
    heuristic: ScorerEvaluation

    def metrics(self) -> dict[str, Any]:
        return {
            "split": {"seed": self.seed, "holdout_share": HOLDOUT_SHARE},
            "train": {"transferred": self.train_counts[0], "lost": self.train_counts[1]},
            "holdout": {"transferred": self.holdout_counts[0], "lost": self.holdout_counts[1]},
            "learned": self.learned.as_metrics(),
            "heuristic": self.heuristic.as_metrics(),
        }


def evaluate_model(
    model: LogisticModel,
    holdout: Sequence[Example],
    heuristic: HeuristicScorer,
    *,
    seed: int,
    train_counts: tuple[int, int],
) -> Report:
    """The stored model, applied exactly as the server applies it, against the heuristic."""
    if not holdout:
        raise TrainingRefused("The held-out split is empty; there is nothing to evaluate on.")
    now = datetime.now(UTC)
    outcomes = [example.converted for example in holdout]
    learned = [model.probability(lead_features(e.lead.snapshot, e.evidence)) for e in holdout]
    rules = [heuristic.score_now(e.lead.snapshot, now).value for e in holdout]
    return Report(
        model_version=model.version,
        trained_at=model.trained_at,
        seed=seed,
        train_counts=train_counts,
        holdout_counts=class_counts(holdout),
        learned=evaluate_predictions("learned", learned, outcomes),
        heuristic=evaluate_predictions("heuristic", rules, outcomes),
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def format_report(report: Report) -> str:
    lines = [
        f"Learned model v{report.model_version}, trained {report.trained_at:%Y-%m-%d %H:%M} UTC"
        f" (split seed {report.seed})",
        f"Training split: {report.train_counts[0]} TRANSFERRED, {report.train_counts[1]} LOST; "
        f"held-out split: {report.holdout_counts[0]} TRANSFERRED, "
        f"{report.holdout_counts[1]} LOST",
        "",
        f"{'scorer':<10} {'ROC AUC':>8} {'Brier':>7}   (held-out split; higher AUC and lower "
        "Brier are better)",
    ]
    for evaluation in (report.learned, report.heuristic):
        lines.append(
            f"{evaluation.name:<10} {_number(evaluation.roc_auc):>8} {_number(evaluation.brier):>7}"
        )
    for evaluation in (report.learned, report.heuristic):
        lines += [
            "",
            f"Calibration, {evaluation.name}:",
            f"{'predicted':<11} {'leads':>5} {'mean predicted':>15} {'converted':>10}",
        ]
        lines += [
            f"{b.low:.1f}-{b.high:.1f}    {b.count:>5} {b.mean_predicted:>15.3f} "
            f"{b.observed_rate:>10.3f}"
            for b in evaluation.calibration
        ]
    lines += ["", verdict(report.learned, report.heuristic)]
    return "\n".join(lines)


def verdict(learned: ScorerEvaluation, heuristic: ScorerEvaluation) -> str:
    if learned.roc_auc is None or heuristic.roc_auc is None:
        return "Verdict: the held-out split holds one class only; AUC cannot compare them."
    ranks_better = learned.roc_auc > heuristic.roc_auc
    calibrated_better = learned.brier < heuristic.brier
    if ranks_better and calibrated_better:
        outcome = "learning helped: the learned model ranks and calibrates better"
    elif not ranks_better and not calibrated_better:
        outcome = "learning did not help: keep the heuristic"
    else:
        outcome = "mixed: " + (
            "better ranking, worse calibration"
            if ranks_better
            else "better calibration, worse ranking"
        )
    return (
        f"Verdict: {outcome} (AUC {learned.roc_auc:.3f} vs {heuristic.roc_auc:.3f}, "
        f"Brier {learned.brier:.3f} vs {heuristic.brier:.3f})."
    )


def write_calibration_plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for evaluation, marker in ((report.learned, "o"), (report.heuristic, "s")):
        axes.plot(
            [b.mean_predicted for b in evaluation.calibration],
            [b.observed_rate for b in evaluation.calibration],
            marker=marker,
            label=f"{evaluation.name} (AUC {_number(evaluation.roc_auc)}, "
            f"Brier {_number(evaluation.brier)})",
        )
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted conversion",
        ylabel="share converted (held-out closed leads)",
        title=f"Calibration, learned model v{report.model_version}",
    )
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    pyplot.close(figure)


async def train(engine: AsyncEngine, heuristic: HeuristicScorer, seed: int) -> Report:
    """Fit on the training split, evaluate on the held-out one, store the model and report."""
    examples = await load_examples(engine)
    check_enough(examples)
    training = [e for e in examples if not in_holdout(e.lead.id, seed)]
    holdout = [e for e in examples if in_holdout(e.lead.id, seed)]
    params = fit(training)
    unsaved = LogisticModel.from_params(0, datetime.now(UTC), params)
    report = evaluate_model(
        unsaved, holdout, heuristic, seed=seed, train_counts=class_counts(training)
    )
    row = await store_model(engine, params, report.metrics())
    return replace(report, model_version=row.version, trained_at=row.trained_at)


async def store_model(
    engine: AsyncEngine, params: dict[str, Any], metrics: dict[str, Any]
) -> Row[Any]:
    """Store the model as the next version, its stored row; when another training stored the
    same version first (two at once), this one takes the version after it."""
    attempts = 0
    while True:
        attempts += 1
        try:
            async with transaction(engine) as conn:
                return await repo.insert_scoring_model(conn, MODEL_KIND, params, metrics)
        except repo.UNIQUE_VIOLATIONS as error:
            taken = repo.is_unique_violation(error, "uq_scoring_models_kind_version")
            if not taken or attempts == STORE_ATTEMPTS:
                raise


async def evaluate(engine: AsyncEngine, heuristic: HeuristicScorer) -> Report:
    """The newest stored model against the heuristic on its held-out split, as of now."""
    async with engine.connect() as conn:
        row = await repo.latest_scoring_model(conn, MODEL_KIND)
    if row is None:
        raise TrainingRefused("No learned model is stored yet; run `crm-graphql scorer train`.")
    model = LogisticModel.from_params(row.version, row.trained_at, row.params)
    split = row.metrics["split"]
    seed = split["seed"]
    examples = await load_examples(engine)
    holdout = [e for e in examples if in_holdout(e.lead.id, seed)]
    train_counts = (row.metrics["train"]["transferred"], row.metrics["train"]["lost"])
    return evaluate_model(model, holdout, heuristic, seed=seed, train_counts=train_counts)
