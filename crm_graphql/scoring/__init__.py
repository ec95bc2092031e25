"""LeadScorer implementations and the choice between them."""

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.domain.scoring import HeuristicScorer, LeadScorer, ScorerKind
from crm_graphql.scoring.learned import LearnedScorer
from crm_graphql.scoring.llm import LlmScorer, LlmSettings
from crm_graphql.settings import Settings


@dataclass(frozen=True)
class Scorers:
    """Every scorer of this deployment, and the one used when a request names none."""

    default: ScorerKind
    by_kind: Mapping[ScorerKind, LeadScorer]
    llm: LlmScorer

    def get(self, kind: ScorerKind | None) -> LeadScorer:
        return self.by_kind[kind or self.default]

    async def close(self) -> None:
        await self.llm.close()


def build_scorers(settings: Settings, engine: AsyncEngine) -> Scorers:
    if settings.scorer is ScorerKind.LLM and not settings.llm_base_url:
        raise ValueError("CRM_SCORER=llm needs CRM_LLM_BASE_URL (and usually CRM_LLM_API_KEY).")
    heuristic = HeuristicScorer(threshold=settings.transfer_threshold)
    llm = LlmScorer(LlmSettings.from_settings(settings), heuristic)
    return Scorers(
        default=settings.scorer,
        by_kind={
            ScorerKind.HEURISTIC: heuristic,
            ScorerKind.LLM: llm,
            ScorerKind.LEARNED: LearnedScorer(engine, heuristic),
        },
        llm=llm,
    )
