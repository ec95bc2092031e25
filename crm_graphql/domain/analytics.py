"""Pipeline analytics: the window rules and the report's shape. The figures are computed in
PostgreSQL (db/analytics.py); this module validates the request and turns the rows the SQL
returns into a complete report, every stage, sale stage and score bucket included.
The definitions of each figure are in docs/analytics.md."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage
from crm_graphql.domain.errors import FIELD, ErrorCode, RuleViolation, Violation


class PipelineGrouping(StrEnum):
    NONE = "NONE"
    SOURCE = "SOURCE"
    OWNER = "OWNER"


# Stages a lead leaves by moving on (or to LOST); TRANSFERRED and LOST are terminal.
FUNNEL_STAGES: tuple[LeadStage, ...] = (LeadStage.NEW, LeadStage.CONTACTED, LeadStage.QUALIFIED)

# (lower, upper) bounds of the score buckets: each includes its lower bound and excludes its
# upper bound, except the last, which includes 1.0.
SCORE_BUCKETS: tuple[tuple[float, float], ...] = (
    (0.0, 0.2),
    (0.2, 0.4),
    (0.4, 0.6),
    (0.6, 0.8),
    (0.8, 1.0),
)


def _invalid(message: str, field: str) -> RuleViolation:
    return RuleViolation(Violation(ErrorCode.INVALID_INPUT, message, ("input", field)))


def _as_utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _invalid(
            f"`{FIELD}` must carry a UTC offset (for example 2026-01-01T00:00:00Z); "
            "a local time without one is ambiguous.",
            field,
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+02:00 is a moment before year 1 in UTC
        raise _invalid(f"`{FIELD}` is outside the years 1 to 9999 in UTC.", field) from None


@dataclass(frozen=True)
class StatsWindow:
    """The half-open window [start, end) in UTC, and the instant the history is read as of
    (None: the database's current time)."""

    start: datetime
    end: datetime
    as_of: datetime | None

    @classmethod
    def validated(
        cls, start: datetime, end: datetime, as_of: datetime | None, max_days: int
    ) -> "StatsWindow":
        start = _as_utc(start, "from")
        end = _as_utc(end, "to")
        as_of = _as_utc(as_of, "as_of") if as_of is not None else None
        if start >= end:
            raise _invalid("`from` must be earlier than `to`.", "to")
        if end - start > timedelta(days=max_days):
            raise _invalid(f"The window may span at most {max_days} days.", "to")
        if as_of is not None and as_of <= start:
            raise _invalid(f"`{FIELD}` must be later than `from`.", "as_of")
        return cls(start, end, as_of)


def ratio(part: int, whole: int) -> float | None:
    """part / whole, or None when there is nothing to divide by."""
    return part / whole if whole else None


# --- rows as the SQL returns them -----------------------------------------------------------


@dataclass(frozen=True)
class DurationStats:
    """How many durations there were, and their median and 90th percentile in seconds
    (None when there were none)."""

    count: int
    p50_seconds: float | None
    p90_seconds: float | None


NO_DURATIONS = DurationStats(0, None, None)


@dataclass(frozen=True)
class FunnelRow:
    group_key: str | None
    stage: LeadStage
    entered: int
    advanced: int
    lost: int
    time_in_stage: DurationStats
    age_in_stage: DurationStats


@dataclass(frozen=True)
class CreatedRow:
    """Leads created in the window, and how many of those were transferred as of as_of."""

    group_key: str | None
    created: int
    transferred: int


@dataclass(frozen=True)
class SaleRow:
    group_key: str | None
    stage: SaleStage
    sales: int


@dataclass(frozen=True)
class ScoreRow:
    group_key: str | None
    bucket: int  # index into SCORE_BUCKETS
    scored: int
    transferred: int
    lost: int


@dataclass(frozen=True)
class PipelineRows:
    as_of: datetime
    funnel: Sequence[FunnelRow]
    created: Sequence[CreatedRow]
    sales: Sequence[SaleRow]
    scores: Sequence[ScoreRow]


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StageStats:
    stage: LeadStage
    entered: int
    # None for the terminal stages TRANSFERRED and LOST, which nobody leaves.
    advanced: int | None
    lost: int | None
    time_in_stage: DurationStats | None
    age_in_stage: DurationStats | None

    @property
    def remaining(self) -> int | None:
        if self.advanced is None or self.lost is None:
            return None
        return self.entered - self.advanced - self.lost

    @property
    def conversion_rate(self) -> float | None:
        return None if self.advanced is None else ratio(self.advanced, self.entered)

    @property
    def loss_rate(self) -> float | None:
        return None if self.lost is None else ratio(self.lost, self.entered)


@dataclass(frozen=True)
class SaleStats:
    by_stage: Mapping[SaleStage, int]

    @property
    def created(self) -> int:
        return sum(self.by_stage.values())

    @property
    def paid(self) -> int:
        return self.by_stage[SaleStage.PAID]

    @property
    def paid_rate(self) -> float | None:
        return ratio(self.paid, self.created)


@dataclass(frozen=True)
class ScoreBucket:
    lower: float
    upper: float
    scored: int
    transferred: int
    lost: int

    @property
    def still_open(self) -> int:
        return self.scored - self.transferred - self.lost

    @property
    def transfer_rate(self) -> float | None:
        return ratio(self.transferred, self.scored)


@dataclass(frozen=True)
class PipelineGroup:
    key: str | None
    stages: tuple[StageStats, ...]
    leads_created: int
    leads_transferred: int
    sales: SaleStats
    score_buckets: tuple[ScoreBucket, ...]

    @property
    def transfer_rate(self) -> float | None:
        return ratio(self.leads_transferred, self.leads_created)


@dataclass(frozen=True)
class PipelineStats:
    window: StatsWindow
    as_of: datetime
    grouping: PipelineGrouping
    groups: tuple[PipelineGroup, ...]


def expected_group_keys(grouping: PipelineGrouping) -> tuple[str | None, ...]:
    """Groups reported even when empty, so a chart always has the same bars."""
    if grouping is PipelineGrouping.NONE:
        return (None,)
    if grouping is PipelineGrouping.SOURCE:
        return tuple(source.value for source in LeadSource)
    return ()


def _stage_stats(stage: LeadStage, row: FunnelRow | None) -> StageStats:
    entered = row.entered if row else 0
    if stage not in FUNNEL_STAGES:
        return StageStats(stage, entered, None, None, None, None)
    if row is None:
        return StageStats(stage, 0, 0, 0, NO_DURATIONS, NO_DURATIONS)
    return StageStats(stage, entered, row.advanced, row.lost, row.time_in_stage, row.age_in_stage)


def build_report(
    window: StatsWindow, grouping: PipelineGrouping, rows: PipelineRows
) -> PipelineStats:
    """The complete report: expected groups first, then any other key in sorted order (null,
    for leads without a value, last); every stage and bucket is present, empty ones as zero."""
    found: set[str | None] = set()
    for section in (rows.funnel, rows.created, rows.sales, rows.scores):
        found.update(row.group_key for row in section)
    expected = expected_group_keys(grouping)
    extra = sorted(found - set(expected), key=lambda key: (key is None, key or ""))
    funnel = {(row.group_key, row.stage): row for row in rows.funnel}
    created = {row.group_key: row for row in rows.created}
    sales = {(row.group_key, row.stage): row.sales for row in rows.sales}
    scores = {(row.group_key, row.bucket): row for row in rows.scores}

    def group(key: str | None) -> PipelineGroup:
        cohort = created.get(key)
        return PipelineGroup(
            key=key,
            stages=tuple(_stage_stats(stage, funnel.get((key, stage))) for stage in LeadStage),
            leads_created=cohort.created if cohort else 0,
            leads_transferred=cohort.transferred if cohort else 0,
            sales=SaleStats({stage: sales.get((key, stage), 0) for stage in SaleStage}),
            score_buckets=tuple(
                _bucket(index, scores.get((key, index))) for index in range(len(SCORE_BUCKETS))
            ),
        )

    return PipelineStats(
        window=window,
        as_of=rows.as_of,
        grouping=grouping,
        groups=tuple(group(key) for key in _unique((*expected, *extra))),
    )


def _bucket(index: int, row: ScoreRow | None) -> ScoreBucket:
    lower, upper = SCORE_BUCKETS[index]
    if row is None:
        return ScoreBucket(lower, upper, 0, 0, 0)
    return ScoreBucket(lower, upper, row.scored, row.transferred, row.lost)


def _unique(keys: Iterable[str | None]) -> list[str | None]:
    return list(dict.fromkeys(keys))
