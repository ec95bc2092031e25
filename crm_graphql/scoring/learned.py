"""The learned scorer: the newest stored logistic model, applied without scikit-learn."""

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.domain.learned import LogisticModel
from crm_graphql.domain.scoring import (
    HeuristicScorer,
    LeadEvidence,
    LeadSnapshot,
    Score,
    as_fallback,
    explained_score,
)

logger = logging.getLogger(__name__)

MODEL_KIND = "logistic"
REASONS_SHOWN = 3


class LearnedScorer:
    name = "learned"
    needs_evidence = True

    def __init__(self, engine: AsyncEngine, heuristic: HeuristicScorer) -> None:
        self.engine = engine
        self.heuristic = heuristic
        self._model: LogisticModel | None = None

    async def score(
        self, lead: LeadSnapshot, now: datetime, evidence: LeadEvidence | None = None
    ) -> Score:
        if evidence is None:
            raise ValueError("the learned scorer needs the lead's evidence")
        try:
            model = await self._current_model()
        except ValueError as error:  # stored by an older version of this code
            logger.error("learned scorer cannot use the stored model: %s", error)
            return as_fallback(self.heuristic.score_now(lead, now), "incompatible_model")
        if model is None:
            return as_fallback(self.heuristic.score_now(lead, now), "no_model")
        _, factors = model.explain(lead, evidence)
        strongest = sorted(factors[1:], key=lambda factor: abs(factor.contribution), reverse=True)
        return explained_score(
            factors,
            tuple(factor.explanation for factor in strongest[:REASONS_SHOWN]),
            threshold=self.heuristic.threshold,
            scorer=self.name,
            scorer_version=str(model.version),
            now=now,
            inputs=lead,
        )

    async def _current_model(self) -> LogisticModel | None:
        """The newest model; read on every call (one small query) so a new training applies
        without a restart, parsed only when it changes."""
        async with self.engine.connect() as conn:
            row = await repo.latest_scoring_model(conn, MODEL_KIND)
        if row is None:
            return None
        cached = self._model
        # trained_at too: a wiped table numbers versions from 1 again.
        if cached is None or (cached.version, cached.trained_at) != (row.version, row.trained_at):
            self._model = LogisticModel.from_params(row.version, row.trained_at, row.params)
        return self._model
