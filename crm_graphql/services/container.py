from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.events.feed import ChangeFeed
from crm_graphql.scoring import Scorers, build_scorers
from crm_graphql.services.analytics import AnalyticsService
from crm_graphql.services.leads import LeadService
from crm_graphql.services.queries import Queries
from crm_graphql.services.sales import SaleService
from crm_graphql.services.webhooks import WebhookService
from crm_graphql.settings import Settings
from crm_graphql.webhooks.delivery import WebhookDispatcher, url_policy


@dataclass(frozen=True)
class Services:
    leads: LeadService
    sales: SaleService
    queries: Queries
    analytics: AnalyticsService
    changes: ChangeFeed
    scorers: Scorers
    webhooks: WebhookService
    dispatcher: WebhookDispatcher

    @classmethod
    def create(cls, engine: AsyncEngine, settings: Settings) -> "Services":
        scorers = build_scorers(settings, engine)
        return cls(
            leads=LeadService(
                engine,
                scorers,
                settings.transfer_threshold,
                default_phone_region=settings.default_phone_region,
            ),
            sales=SaleService(engine),
            queries=Queries(engine, settings),
            analytics=AnalyticsService(engine, settings.analytics_max_window_days),
            changes=ChangeFeed.create(engine, settings),
            scorers=scorers,
            webhooks=WebhookService(engine, settings, url_policy(settings)),
            dispatcher=WebhookDispatcher.create(engine, settings),
        )

    async def close(self) -> None:
        await self.scorers.close()
