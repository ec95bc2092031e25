"""LeadScorer implementations and the choice between them."""

from crm_graphql.domain.scoring import HeuristicScorer, LeadScorer
from crm_graphql.settings import Settings


def build_scorer(settings: Settings) -> LeadScorer:
    return HeuristicScorer(threshold=settings.transfer_threshold)
