"""GraphQL types of `pipelineStats`. The definitions behind each figure: docs/analytics.md."""

from datetime import datetime

import strawberry

from crm_graphql.api.types import LeadInfo, LeadStage, SaleStage, UserType, load_user
from crm_graphql.domain import analytics

PipelineGrouping = analytics.PipelineGrouping
strawberry.enum(  # records the GraphQL definition on the domain enum (api/types.py)
    PipelineGrouping,
    description=(
        "How pipelineStats splits leads into groups: NONE (one group), SOURCE (by the "
        "lead's source) or OWNER (by the lead's current owner)."
    ),
)


@strawberry.input(description="The window of a pipeline report; datetimes need a UTC offset.")
class PipelineStatsInput:
    from_: datetime = strawberry.field(
        name="from",
        description="Start of the window, inclusive. Must carry a UTC offset; compared as an "
        "instant, so 2026-01-01T02:00:00+02:00 and 2026-01-01T00:00:00Z are the same.",
    )
    to: datetime = strawberry.field(
        description="End of the window, exclusive; after `from`, at most the configured "
        "maximum window (731 days by default) later. Must carry a UTC offset."
    )
    group_by: PipelineGrouping = strawberry.field(
        default=analytics.PipelineGrouping.NONE, description="How to split leads into groups."
    )
    as_of: datetime | None = strawberry.field(
        default=None,
        description="Read the history as it stood at this instant: later changes are "
        "ignored and ages are measured up to it. Default and upper limit: now. After `from`.",
    )


@strawberry.type(description="Median and 90th percentile of a set of durations.")
class DurationStats:
    count: int = strawberry.field(description="How many durations were measured.")
    p50_seconds: float | None = strawberry.field(
        description="Median in seconds (percentile_cont, interpolated); null when count is 0."
    )
    p90_seconds: float | None = strawberry.field(
        description="90th percentile in seconds (percentile_cont); null when count is 0."
    )

    @classmethod
    def from_domain(cls, stats: analytics.DurationStats | None) -> "DurationStats | None":
        if stats is None:
            return None
        return cls(count=stats.count, p50_seconds=stats.p50_seconds, p90_seconds=stats.p90_seconds)


@strawberry.type(description="One lead stage: who entered it in the window and what came next.")
class StageStats:
    stage: LeadStage
    entered: int = strawberry.field(
        description="Stage changes into this stage with `at` in [from, to) (and before asOf)."
    )
    advanced: int | None = strawberry.field(
        description="Of those, how many had moved on to the next funnel stage by asOf. "
        "Null for TRANSFERRED and LOST, which are terminal."
    )
    lost: int | None = strawberry.field(
        description="Of those, how many had gone to LOST from this stage by asOf. Null for "
        "terminal stages."
    )
    remaining: int | None = strawberry.field(
        description="Of those, how many were still in this stage at asOf. Null for terminal stages."
    )
    conversion_rate: float | None = strawberry.field(
        description="advanced / entered (0 to 1); null when nobody entered or the stage is "
        "terminal."
    )
    loss_rate: float | None = strawberry.field(
        description="lost / entered (0 to 1); null when nobody entered or the stage is terminal."
    )
    time_in_stage: DurationStats | None = strawberry.field(
        description="Time from entering the stage to the next change, for the entries that had "
        "left it by asOf. Null for terminal stages."
    )
    age_in_stage: DurationStats | None = strawberry.field(
        description="Time from entering the stage to asOf, for the entries still in it. Null "
        "for terminal stages."
    )

    @classmethod
    def from_domain(cls, stats: analytics.StageStats) -> "StageStats":
        return cls(
            stage=stats.stage,
            entered=stats.entered,
            advanced=stats.advanced,
            lost=stats.lost,
            remaining=stats.remaining,
            conversion_rate=stats.conversion_rate,
            loss_rate=stats.loss_rate,
            time_in_stage=DurationStats.from_domain(stats.time_in_stage),
            age_in_stage=DurationStats.from_domain(stats.age_in_stage),
        )


@strawberry.type(description="How many of the window's sales are in a stage as of asOf.")
class SaleStageCount:
    stage: SaleStage
    count: int


@strawberry.type(description="Sales created in the window (by transfer), by stage as of asOf.")
class SalePipelineStats:
    created: int = strawberry.field(description="Sales created with `at` in [from, to).")
    stages: list[SaleStageCount] = strawberry.field(
        description="Every SaleStage, in pipeline order, with how many of those sales were in it."
    )
    paid: int = strawberry.field(description="Of those sales, how many were PAID by asOf.")
    paid_rate: float | None = strawberry.field(
        description="paid / created (0 to 1); null when no sale was created."
    )

    @classmethod
    def from_domain(cls, stats: analytics.SaleStats) -> "SalePipelineStats":
        return cls(
            created=stats.created,
            stages=[
                SaleStageCount(stage=stage, count=count) for stage, count in stats.by_stage.items()
            ],
            paid=stats.paid,
            paid_rate=stats.paid_rate,
        )


@strawberry.type(
    description="Leads whose score was computed in the window with a value in "
    "[minScore, maxScore) ([0.8, 1.0] for the last bucket), and what became of them by asOf."
)
class ScoreBucket:
    min_score: float = strawberry.field(description="Lowest score in the bucket, inclusive.")
    max_score: float = strawberry.field(
        description="Upper bound: exclusive, except 1.0 for the last bucket."
    )
    scored: int = strawberry.field(description="Leads scored in the window with such a score.")
    transferred: int = strawberry.field(description="Of those, transferred by asOf.")
    lost: int = strawberry.field(description="Of those, LOST by asOf.")
    still_open: int = strawberry.field(description="Of those, neither transferred nor lost.")
    transfer_rate: float | None = strawberry.field(
        description="transferred / scored (0 to 1); null when none was scored."
    )

    @classmethod
    def from_domain(cls, bucket: analytics.ScoreBucket) -> "ScoreBucket":
        return cls(
            min_score=bucket.lower,
            max_score=bucket.upper,
            scored=bucket.scored,
            transferred=bucket.transferred,
            lost=bucket.lost,
            still_open=bucket.still_open,
            transfer_rate=bucket.transfer_rate,
        )


@strawberry.type(description="The figures of one group of leads.")
class PipelineGroup:
    key: str | None = strawberry.field(
        description="The group: null for NONE, the LeadSource name for SOURCE, the owner's "
        "User ID for OWNER (null: leads without an owner, listed last)."
    )
    leads_created: int = strawberry.field(
        description="Leads created (entered NEW) with `at` in [from, to)."
    )
    leads_transferred: int = strawberry.field(
        description="Of the leads created in the window, how many were transferred by asOf."
    )
    transfer_rate: float | None = strawberry.field(
        description="leadsTransferred / leadsCreated (0 to 1); null when none was created."
    )
    stages: list[StageStats] = strawberry.field(
        description="Every LeadStage in funnel order: NEW, CONTACTED, QUALIFIED, TRANSFERRED, LOST."
    )
    sales: SalePipelineStats
    score_track_record: list[ScoreBucket] = strawberry.field(
        description="Five score buckets from 0 to 1: how scored leads turned out."
    )
    owner_id: strawberry.Private[str | None]

    @strawberry.field(
        description="For OWNER, the owner the key names (null for leads without one); null for "
        "the other groupings."
    )
    async def owner(self, info: LeadInfo) -> UserType | None:
        return await load_user(info, self.owner_id)

    @classmethod
    def from_domain(
        cls, group: analytics.PipelineGroup, grouping: analytics.PipelineGrouping
    ) -> "PipelineGroup":
        return cls(
            key=group.key,
            owner_id=group.key if grouping is analytics.PipelineGrouping.OWNER else None,
            leads_created=group.leads_created,
            leads_transferred=group.leads_transferred,
            transfer_rate=group.transfer_rate,
            stages=[StageStats.from_domain(stage) for stage in group.stages],
            sales=SalePipelineStats.from_domain(group.sales),
            score_track_record=[ScoreBucket.from_domain(b) for b in group.score_buckets],
        )


@strawberry.type(description="Pipeline analytics computed from the stage-change audit trail.")
class PipelineStats:
    from_: datetime = strawberry.field(name="from", description="Start of the window, in UTC.")
    to: datetime = strawberry.field(description="End of the window (exclusive), in UTC.")
    as_of: datetime = strawberry.field(
        description="The instant the history was read as of (UTC): the requested asOf, or the "
        "database's time when the report was computed."
    )
    group_by: PipelineGrouping
    groups: list[PipelineGroup] = strawberry.field(
        description="One per group; for SOURCE every source is listed, empty ones with zeros."
    )

    @classmethod
    def from_domain(cls, stats: analytics.PipelineStats) -> "PipelineStats":
        return cls(
            from_=stats.window.start,
            to=stats.window.end,
            as_of=stats.as_of,
            group_by=stats.grouping,
            groups=[PipelineGroup.from_domain(group, stats.grouping) for group in stats.groups],
        )
