"""Pipeline analytics in one SQL statement over the stage-change audit trail.

The statement walks the audit rows since the window opened in (subject, time) order, which
the covering indexes of migration 0005 deliver without a sort, pairs each change with the one
that followed it (window functions), and aggregates per group in hash tables; percentiles are
taken with percentile_cont over the few arrays that result. docs/analytics.md defines every
figure; docs/benchmarks.md has the timings.
"""

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import DateTime, Float, String

from crm_graphql.domain.analytics import (
    FUNNEL_STAGES,
    SCORE_BUCKETS,
    CreatedRow,
    DurationStats,
    FunnelRow,
    PipelineGrouping,
    PipelineRows,
    SaleRow,
    ScoreRow,
    StatsWindow,
)
from crm_graphql.domain.enums import LeadStage, SaleStage

# The SQL expression, over the lead `l`, that names a lead's group. OWNER is the lead's
# current owner (a user ID, null for leads written before authentication existed).
GROUP_KEYS: Mapping[PipelineGrouping, str] = {
    PipelineGrouping.NONE: "CAST(NULL AS text)",
    PipelineGrouping.SOURCE: "l.source",
    PipelineGrouping.OWNER: "l.owner_id",
}

# One instant for the whole report: the requested asOf, never later than now. now() is the
# transaction's start, the same wherever it appears; written inline (not in a CTE) so the
# planner sees it when it estimates the range scans.
AS_OF = "LEAST(COALESCE(CAST(:as_of AS timestamptz), now()), now())"

# The score's timestamp as stored in leads.score (see repository.score_to_json).
SCORED_AT = "CAST(l.score ->> 'scored_at' AS timestamptz)"

# {group_key} is one of GROUP_KEYS, never user input. Stage names are literal where a partial
# index has to match them.
PIPELINE_STATS_SQL = """
WITH lead_steps AS (
    -- Every lead stage change from the window's start up to asOf, with the change that
    -- followed it and whether the lead was created (entered NEW) in the window.
    SELECT
        sc.lead_id,
        sc.to_stage,
        sc.at,
        lead(sc.to_stage) OVER by_lead AS next_stage,
        lead(sc.at) OVER by_lead AS next_at,
        first_value(CASE WHEN sc.to_stage = 'NEW' THEN sc.at END) OVER by_lead
            < CAST(:window_to AS timestamptz) AS created_in_window
    FROM stage_changes AS sc
    WHERE sc.lead_id IS NOT NULL
      AND sc.at >= CAST(:window_from AS timestamptz)
      AND sc.at < {as_of}
    -- ROWS: lead() ignores the frame and first_value() sees the same first row, but the
    -- default RANGE frame would spend time looking for peers.
    WINDOW by_lead AS (
        PARTITION BY sc.lead_id ORDER BY sc.at, sc.id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    )
),
funnel AS (
    SELECT
        {group_key} AS group_key,
        s.to_stage AS stage,
        count(*) FILTER (WHERE s.at < CAST(:window_to AS timestamptz)) AS entered,
        count(*) FILTER (
            WHERE s.at < CAST(:window_to AS timestamptz) AND s.next_stage <> 'LOST'
        ) AS advanced,
        count(*) FILTER (
            WHERE s.at < CAST(:window_to AS timestamptz) AND s.next_stage = 'LOST'
        ) AS lost,
        count(*) FILTER (WHERE s.to_stage = 'TRANSFERRED' AND s.created_in_window)
            AS transferred_of_created,
        array_agg(date_part('epoch', s.next_at - s.at)) FILTER (
            WHERE s.at < CAST(:window_to AS timestamptz) AND s.next_at IS NOT NULL
        ) AS seconds_in_stage,
        array_agg(date_part('epoch', {as_of} - s.at)) FILTER (
            WHERE s.at < CAST(:window_to AS timestamptz)
              AND s.next_at IS NULL
              AND s.to_stage = ANY(CAST(:funnel_stages AS text[]))
        ) AS seconds_still_in_stage
    FROM lead_steps AS s
    LEFT JOIN leads AS l ON l.id = s.lead_id
    GROUP BY 1, 2
),
cohorts AS (
    SELECT
        group_key,
        sum(entered) FILTER (WHERE stage = 'NEW') AS created,
        sum(transferred_of_created) AS transferred
    FROM funnel
    GROUP BY group_key
),
sale_steps AS (
    -- Every sale stage change from the window's start up to asOf, with the sale's stage as of
    -- asOf (its last change).
    SELECT
        sc.sale_id,
        sc.from_stage,
        sc.at,
        last_value(sc.to_stage) OVER (
            PARTITION BY sc.sale_id ORDER BY sc.at, sc.id
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS stage_as_of
    FROM stage_changes AS sc
    WHERE sc.sale_id IS NOT NULL
      AND sc.at >= CAST(:window_from AS timestamptz)
      AND sc.at < {as_of}
),
sale_counts AS (
    -- Sales created in the window (their first audit row), by stage as of asOf.
    SELECT {group_key} AS group_key, ss.stage_as_of AS stage, count(*) AS sales
    FROM sale_steps AS ss
    LEFT JOIN sales AS sa ON sa.id = ss.sale_id
    LEFT JOIN leads AS l ON l.id = sa.lead_id
    WHERE ss.from_stage IS NULL AND ss.at < CAST(:window_to AS timestamptz)
    GROUP BY 1, 2
),
score_counts AS (
    -- Leads whose (latest) score was computed in the window, by score bucket and by the
    -- terminal stage they reached before asOf, if any.
    SELECT
        {group_key} AS group_key,
        width_bucket(l.score_value, CAST(:bucket_thresholds AS float8[])) AS bucket,
        count(*) AS scored,
        count(*) FILTER (WHERE outcome.to_stage = 'TRANSFERRED') AS transferred,
        count(*) FILTER (WHERE outcome.to_stage = 'LOST') AS lost
    FROM leads AS l
    LEFT JOIN stage_changes AS outcome
        ON outcome.lead_id = l.id
        AND outcome.lead_id IS NOT NULL
        AND outcome.to_stage IN ('TRANSFERRED', 'LOST')
        AND outcome.at < {as_of}
    WHERE l.score_value IS NOT NULL
      -- a range, so the JSON is parsed once per lead
      AND tstzrange(
            CAST(:window_from AS timestamptz),
            GREATEST(
                CAST(:window_from AS timestamptz),
                LEAST(CAST(:window_to AS timestamptz), {as_of})
            ),
            '[)'
        ) @> {scored_at}
    GROUP BY 1, 2
)
SELECT
    {as_of} AS as_of,
    (
        SELECT json_agg(json_build_object(
            'group_key', f.group_key,
            'stage', f.stage,
            'entered', f.entered,
            'advanced', f.advanced,
            'lost', f.lost,
            'seconds_in_stage', (
                SELECT json_build_object(
                    'count', count(*),
                    'percentiles', percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY x)
                )
                FROM unnest(f.seconds_in_stage) AS x
            ),
            'seconds_still_in_stage', (
                SELECT json_build_object(
                    'count', count(*),
                    'percentiles', percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY x)
                )
                FROM unnest(f.seconds_still_in_stage) AS x
            )
        ))
        FROM funnel AS f
    ) AS funnel,
    (SELECT json_agg(c) FROM cohorts AS c) AS cohorts,
    (SELECT json_agg(s) FROM sale_counts AS s) AS sales,
    (SELECT json_agg(b) FROM score_counts AS b) AS scores
"""


def _durations(data: dict[str, Any]) -> DurationStats:
    percentiles = data["percentiles"] or (None, None)
    return DurationStats(data["count"], percentiles[0], percentiles[1])


async def pipeline_rows(
    conn: AsyncConnection, window: StatsWindow, grouping: PipelineGrouping
) -> PipelineRows:
    statement = text(
        PIPELINE_STATS_SQL.format(group_key=GROUP_KEYS[grouping], scored_at=SCORED_AT, as_of=AS_OF)
    ).bindparams(
        bindparam("window_from", window.start, type_=DateTime(timezone=True)),
        bindparam("window_to", window.end, type_=DateTime(timezone=True)),
        bindparam("as_of", window.as_of, type_=DateTime(timezone=True)),
        bindparam("funnel_stages", [stage.value for stage in FUNNEL_STAGES], type_=ARRAY(String())),
        bindparam(
            "bucket_thresholds", [lower for lower, _ in SCORE_BUCKETS[1:]], type_=ARRAY(Float())
        ),
    )
    row = (await conn.execute(statement)).one()
    return PipelineRows(
        as_of=row.as_of,
        funnel=[
            FunnelRow(
                group_key=item["group_key"],
                stage=LeadStage(item["stage"]),
                entered=item["entered"],
                advanced=item["advanced"],
                lost=item["lost"],
                time_in_stage=_durations(item["seconds_in_stage"]),
                age_in_stage=_durations(item["seconds_still_in_stage"]),
            )
            for item in row.funnel or ()
            if item["entered"]
        ],
        created=[
            CreatedRow(item["group_key"], int(item["created"]), int(item["transferred"]))
            for item in row.cohorts or ()
            if item["created"]
        ],
        sales=[
            SaleRow(item["group_key"], SaleStage(item["stage"]), item["sales"])
            for item in row.sales or ()
        ],
        scores=[
            ScoreRow(
                item["group_key"], item["bucket"], item["scored"], item["transferred"], item["lost"]
            )
            for item in row.scores or ()
        ],
    )
