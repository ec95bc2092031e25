"""CRM_SCORER picks the default scorer; a request may name another."""

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from crm_graphql.domain.scoring import ScorerKind
from crm_graphql.scoring import build_scorers
from crm_graphql.settings import Settings

# Never connected to: building the scorers does no I/O.
ENGINE_URL = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize(
    ("setting", "name"), [("heuristic", "heuristic"), ("learned", "learned"), ("llm", "llm")]
)
async def test_the_setting_picks_the_default_and_a_request_can_name_another(setting, name):
    settings = Settings(scorer=setting, llm_base_url="http://127.0.0.1:9/v1")
    scorers = build_scorers(settings, create_async_engine(ENGINE_URL))
    try:
        assert scorers.get(None).name == name
        assert scorers.get(ScorerKind.HEURISTIC).name == "heuristic"
        assert scorers.get(ScorerKind.LEARNED).name == "learned"
    finally:
        await scorers.close()


def test_the_llm_as_default_without_a_base_url_refuses_to_start():
    with pytest.raises(ValueError, match="CRM_LLM_BASE_URL"):
        build_scorers(Settings(scorer="llm"), create_async_engine(ENGINE_URL))


def test_an_unknown_scorer_setting_is_refused():
    with pytest.raises(ValueError, match="scorer"):
        Settings(scorer="oracle")
