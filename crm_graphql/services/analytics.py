"""Pipeline analytics: validate the request, run the one statement, shape the report."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import analytics as sql
from crm_graphql.domain.access import Actor, Permission, require
from crm_graphql.domain.analytics import PipelineGrouping, PipelineStats, StatsWindow, build_report


class AnalyticsService:
    def __init__(self, engine: AsyncEngine, max_window_days: int) -> None:
        self.engine = engine
        self.max_window_days = max_window_days

    async def pipeline_stats(
        self,
        actor: Actor,
        start: datetime,
        end: datetime,
        grouping: PipelineGrouping,
        as_of: datetime | None = None,
    ) -> PipelineStats:
        """Funnel, sales and score figures for [start, end), read as of `as_of` (default: the
        database's current time). Read-only; one SQL statement whatever the grouping."""
        require(actor, Permission.READ_ANALYTICS)
        window = StatsWindow.validated(start, end, as_of, self.max_window_days)
        async with self.engine.connect() as conn:
            rows = await sql.pipeline_rows(conn, window, grouping)
        return build_report(window, grouping, rows)
