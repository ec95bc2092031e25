"""The analytics window rules and the report's shape, without a database."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from crm_graphql.domain.analytics import (
    CreatedRow,
    DurationStats,
    FunnelRow,
    PipelineGrouping,
    PipelineRows,
    SaleRow,
    ScoreRow,
    StatsWindow,
    build_report,
)
from crm_graphql.domain.enums import LeadStage, SaleStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


def refusal(start: datetime, end: datetime, as_of: datetime | None = None, max_days: int = 731):
    with pytest.raises(RuleViolation) as caught:
        StatsWindow.validated(start, end, as_of, max_days)
    (violation,) = caught.value.violations
    assert violation.code is ErrorCode.INVALID_INPUT
    named = violation.named(str)  # the domain's own names, as the message shows them
    return named.field, named.message


def test_window_is_converted_to_utc_instants():
    plus_two = timezone(timedelta(hours=2))
    window = StatsWindow.validated(
        datetime(2026, 3, 1, 2, tzinfo=plus_two), datetime(2026, 3, 2, 2, tzinfo=plus_two), None, 1
    )
    assert window.start == datetime(2026, 3, 1, tzinfo=UTC)
    assert window.start.tzinfo is UTC
    assert window.end == datetime(2026, 3, 2, tzinfo=UTC)
    assert window.as_of is None


def test_window_must_be_ordered_bounded_and_offset_aware():
    assert refusal(END, START)[0] == ("input", "to")
    assert refusal(START, START)[0] == ("input", "to")
    assert refusal(START, START + timedelta(days=3), max_days=2) == (
        ("input", "to"),
        "The window may span at most 2 days.",
    )
    assert refusal(START.replace(tzinfo=None), END)[0] == ("input", "from")
    assert refusal(START, END.replace(tzinfo=None))[0] == ("input", "to")
    assert refusal(START, END, as_of=START)[0] == ("input", "as_of")
    assert refusal(START, END, as_of=END.replace(tzinfo=None))[0] == ("input", "as_of")


def test_instants_outside_the_utc_calendar_are_refused():
    earliest = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    latest = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2)))
    message = "is outside the years 1 to 9999 in UTC."
    assert refusal(earliest, END) == (("input", "from"), f"`from` {message}")
    assert refusal(START, latest) == (("input", "to"), f"`to` {message}")


def test_the_longest_allowed_window_is_accepted():
    window = StatsWindow.validated(START, START + timedelta(days=731), None, 731)
    assert window.end - window.start == timedelta(days=731)


def test_report_lists_every_source_stage_and_bucket_with_zeros_for_missing_rows():
    window = StatsWindow(START, END, None)
    rows = PipelineRows(
        as_of=END,
        funnel=[
            FunnelRow(
                "PARTNER",
                LeadStage.NEW,
                entered=4,
                advanced=1,
                lost=2,
                time_in_stage=DurationStats(3, 10.0, 20.0),
                age_in_stage=DurationStats(1, 5.0, 5.0),
            ),
            FunnelRow("PARTNER", LeadStage.LOST, 2, 0, 0, DurationStats(0, None, None), None),
        ],
        created=[CreatedRow("PARTNER", created=4, transferred=1)],
        sales=[SaleRow("PARTNER", SaleStage.PAID, 1), SaleRow("PARTNER", SaleStage.KYC, 3)],
        scores=[ScoreRow("PARTNER", bucket=4, scored=3, transferred=1, lost=1)],
    )

    report = build_report(window, PipelineGrouping.SOURCE, rows)

    assert [g.key for g in report.groups] == ["SCANNER", "PARTNER", "MANUAL"]
    scanner, partner, _ = report.groups
    assert [s.stage for s in scanner.stages] == list(LeadStage)
    assert scanner.stages[0].entered == 0
    assert scanner.stages[0].conversion_rate is None
    assert scanner.stages[0].time_in_stage == DurationStats(0, None, None)
    assert scanner.transfer_rate is None
    assert scanner.sales.paid_rate is None

    new, contacted, _, transferred, lost = partner.stages
    assert (new.entered, new.advanced, new.lost, new.remaining) == (4, 1, 2, 1)
    assert (new.conversion_rate, new.loss_rate) == (0.25, 0.5)
    assert new.time_in_stage == DurationStats(3, 10.0, 20.0)
    assert (contacted.entered, contacted.remaining, contacted.conversion_rate) == (0, 0, None)
    assert (lost.entered, lost.advanced, lost.remaining) == (2, None, None)
    assert lost.time_in_stage is None
    assert (transferred.entered, transferred.conversion_rate) == (0, None)
    assert (partner.leads_created, partner.leads_transferred, partner.transfer_rate) == (4, 1, 0.25)
    assert dict(partner.sales.by_stage) == {
        SaleStage.NEW: 0,
        SaleStage.KYC: 3,
        SaleStage.AGREEMENT: 0,
        SaleStage.PAID: 1,
        SaleStage.LOST: 0,
    }
    assert (partner.sales.created, partner.sales.paid, partner.sales.paid_rate) == (4, 1, 0.25)
    assert [(b.lower, b.upper, b.scored) for b in partner.score_buckets] == [
        (0.0, 0.2, 0),
        (0.2, 0.4, 0),
        (0.4, 0.6, 0),
        (0.6, 0.8, 0),
        (0.8, 1.0, 3),
    ]
    assert partner.score_buckets[4].still_open == 1
    assert partner.score_buckets[4].transfer_rate == 1 / 3


def test_ungrouped_report_has_one_group_even_without_data():
    report = build_report(
        StatsWindow(START, END, None), PipelineGrouping.NONE, PipelineRows(END, [], [], [], [])
    )
    assert [g.key for g in report.groups] == [None]
    assert report.groups[0].leads_created == 0


def test_owner_groups_are_only_the_owners_found_in_user_id_order_unowned_last():
    rows = PipelineRows(
        END,
        funnel=[],
        created=[CreatedRow(None, 1, 0), CreatedRow("u-bob", 2, 1)],
        sales=[SaleRow("u-ann", SaleStage.NEW, 1)],
        scores=[],
    )

    report = build_report(StatsWindow(START, END, None), PipelineGrouping.OWNER, rows)

    assert [(g.key, g.leads_created, g.sales.created) for g in report.groups] == [
        ("u-ann", 0, 1),
        ("u-bob", 2, 0),
        (None, 1, 0),
    ]
