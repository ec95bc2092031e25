"""Pipeline analytics: validate the request, run the one statement, shape the report."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import analytics as sql
from crm_graphql.domain.analytics import (
    PipelineGrouping,
    PipelineStats,
    StatsWindow,
    build_report,
    group_by_violation,
)
from crm_graphql.domain.errors import RuleViolation


class AnalyticsService:
    def __init__(self, engine: AsyncEngine, max_window_days: int) -> None:
        self.engine = engine
        self.max_window_days = max_window_days

    async def pipeline_stats(
        self,
        start: datetime,
        end: datetime,
        grouping: PipelineGrouping,
        as_of: datetime | None = None,
    ) -> PipelineStats:
        """Funnel, sales and score figures for [start, end), read as of `as_of` (default: the
        database's current time). Read-only; one SQL statement whatever the grouping."""
        # INTEGRATION (issue 4): take the caller as `actor` and start with
        # `require(actor, <permission to read analytics>)`: managers and admins may, sales may not.
        window = StatsWindow.validated(start, end, as_of, self.max_window_days)
        if sql.GROUP_KEYS[grouping] is None:
            raise RuleViolation(group_by_violation(grouping))
        async with self.engine.connect() as conn:
            rows = await sql.pipeline_rows(conn, window, grouping)
        return build_report(window, grouping, rows)
