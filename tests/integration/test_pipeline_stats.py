"""pipelineStats over HTTP on histories written straight into the audit table with known
timestamps; every figure is asserted. Definitions: docs/analytics.md."""

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crm_graphql.db.repository import score_to_json
from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.scoring import LeadSnapshot, Score, ScoreRecommendation
from tests.support.graphql import GraphQLClient
from tests.support.leads import qualified_lead

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW_TO = T0 + timedelta(days=31)  # [March 1, April 1)
AS_OF = T0 + timedelta(days=40)
HOUR = 3600.0

PIPELINE_STATS = """
query($input: PipelineStatsInput!) {
  pipelineStats(input: $input) {
    from to asOf groupBy
    groups {
      key leadsCreated leadsTransferred transferRate
      stages {
        stage entered advanced lost remaining conversionRate lossRate
        timeInStage { count p50Seconds p90Seconds }
        ageInStage { count p50Seconds p90Seconds }
      }
      sales { created paid paidRate stages { stage count } }
      scoreTrackRecord { minScore maxScore scored transferred lost stillOpen transferRate }
    }
  }
}"""


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@dataclass
class History:
    source: str
    lead: list[tuple[str, float]]  # (stage entered, hours after T0), oldest first
    sale: list[tuple[str, float]] | None = None
    score: tuple[float, float] | None = None  # (value, hours after T0 it was computed)
    owner: str | None = None  # a user ID from OWNERS


# The people leads belong to in the OWNER tests: user ID -> name.
OWNERS = {"u-ann": "Ann", "u-bob": "Bob", "u-cid": "Cid"}


async def insert_owners(db: asyncpg.Connection) -> None:
    await db.executemany(
        "INSERT INTO users (id, name, role) VALUES ($1, $2, 'manager')", OWNERS.items()
    )


async def insert(db: asyncpg.Connection, history: History) -> int:
    score_json = None
    if history.score:
        value, scored_at = history.score
        # stored as the server stores scores, so the report reads the key the server writes
        score = Score(
            value=value,
            recommendation=ScoreRecommendation.NURTURE,
            reasons=(),
            scorer="test",
            scored_at=hours(scored_at),
            inputs=LeadSnapshot(LeadSource(history.source), None, 0),
        )
        score_json = json.dumps(score_to_json(score))
    created = hours(history.lead[0][1])
    lead_id = await db.fetchval(
        "INSERT INTO leads (source, stage, score_value, score, created_at, updated_at, owner_id)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $5, $6) RETURNING id",
        history.source,
        history.lead[-1][0],
        history.score[0] if history.score else None,
        score_json,
        created,
        history.owner,
    )
    await db.executemany(
        "INSERT INTO stage_changes (lead_id, from_stage, to_stage, at) VALUES ($1, $2, $3, $4)",
        [
            (lead_id, history.lead[i - 1][0] if i else None, stage, hours(at))
            for i, (stage, at) in enumerate(history.lead)
        ],
    )
    if history.sale:
        sale_id = await db.fetchval(
            "INSERT INTO sales (lead_id, stage, created_at, updated_at)"
            " VALUES ($1, $2, $3, $3) RETURNING id",
            lead_id,
            history.sale[-1][0],
            hours(history.sale[0][1]),
        )
        await db.executemany(
            "INSERT INTO stage_changes (sale_id, from_stage, to_stage, at) VALUES ($1, $2, $3, $4)",
            [
                (sale_id, history.sale[i - 1][0] if i else None, stage, hours(at))
                for i, (stage, at) in enumerate(history.sale)
            ],
        )
    return lead_id


# Hours are after T0 = 2026-03-01T00:00Z; the window is [0 h, 744 h), asOf is 960 h.
HISTORIES = {
    # NEW -> LOST straight away
    "L1": History("PARTNER", [("NEW", 0), ("LOST", 10)], score=(0.1, 1)),
    # NEW -> CONTACTED -> LOST
    "L2": History("PARTNER", [("NEW", 24), ("CONTACTED", 48), ("LOST", 120)], score=(0.3, 30)),
    # transferred; the sale is PAID
    "L3": History(
        "PARTNER",
        [("NEW", 48), ("CONTACTED", 72), ("QUALIFIED", 96), ("TRANSFERRED", 144)],
        sale=[("NEW", 144), ("KYC", 168), ("AGREEMENT", 192), ("PAID", 216)],
        score=(0.7, 90),
    ),
    # transferred; the sale is LOST; a score of exactly 0.6 belongs to [0.6, 0.8)
    "L4": History(
        "SCANNER",
        [("NEW", 72), ("CONTACTED", 84), ("QUALIFIED", 120), ("TRANSFERRED", 200)],
        sale=[("NEW", 200), ("LOST", 240)],
        score=(0.6, 100),
    ),
    # still NEW at asOf; 0.2 belongs to [0.2, 0.4)
    "L5": History("SCANNER", [("NEW", 96)], score=(0.2, 97)),
    # still CONTACTED at asOf; 1.0 belongs to the last bucket
    "L6": History("MANUAL", [("NEW", 100), ("CONTACTED", 110)], score=(1.0, 105)),
    # created and scored before the window; contacted in it, qualified after it (before asOf)
    "L7": History(
        "MANUAL", [("NEW", -48), ("CONTACTED", 12), ("QUALIFIED", 745)], score=(0.2, -24)
    ),
    # created in the window, contacted only after asOf: still NEW as of asOf
    "L8": History("PARTNER", [("NEW", 720), ("CONTACTED", 984)], score=(0.8, 721)),
    # created exactly at the window's end: outside [from, to)
    "L9": History("SCANNER", [("NEW", 744)], score=(0.5, 745)),
    # transferred; the sale is in KYC
    "L10": History(
        "MANUAL",
        [("NEW", 200), ("CONTACTED", 210), ("QUALIFIED", 220), ("TRANSFERRED", 230)],
        sale=[("NEW", 230), ("KYC", 250)],
        score=(0.65, 215),
    ),
    # transferred before the window; its sale moves in the window but was not created in it
    "L11": History(
        "SCANNER",
        [("NEW", -100), ("CONTACTED", -90), ("QUALIFIED", -80), ("TRANSFERRED", -70)],
        sale=[("NEW", -70), ("KYC", 5)],
        score=(0.9, -85),
    ),
    # transferred; the sale is still NEW
    "L12": History(
        "PARTNER",
        [("NEW", 300), ("CONTACTED", 310), ("QUALIFIED", 320), ("TRANSFERRED", 330)],
        sale=[("NEW", 330)],
    ),
}


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    if lower == upper:
        return ordered[lower]
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def durations(*in_hours: float) -> dict:
    seconds = [h * HOUR for h in in_hours]
    if not seconds:
        return {"count": 0, "p50Seconds": None, "p90Seconds": None}
    return {
        "count": len(seconds),
        "p50Seconds": percentile_cont(seconds, 0.5),
        "p90Seconds": percentile_cont(seconds, 0.9),
    }


def funnel_stage(
    stage: str,
    entered: int,
    advanced: int,
    lost: int,
    time: tuple[float, ...] = (),
    age: tuple[float, ...] = (),
) -> dict:
    remaining = entered - advanced - lost
    return {
        "stage": stage,
        "entered": entered,
        "advanced": advanced,
        "lost": lost,
        "remaining": remaining,
        "conversionRate": advanced / entered if entered else None,
        "lossRate": lost / entered if entered else None,
        "timeInStage": durations(*time),
        "ageInStage": durations(*age),
    }


def terminal_stage(stage: str, entered: int) -> dict:
    return {
        "stage": stage,
        "entered": entered,
        "advanced": None,
        "lost": None,
        "remaining": None,
        "conversionRate": None,
        "lossRate": None,
        "timeInStage": None,
        "ageInStage": None,
    }


def sales(**counts: int) -> dict:
    created = sum(counts.values())
    paid = counts.get("PAID", 0)
    return {
        "created": created,
        "paid": paid,
        "paidRate": paid / created if created else None,
        "stages": [
            {"stage": stage, "count": counts.get(stage, 0)}
            for stage in ("NEW", "KYC", "AGREEMENT", "PAID", "LOST")
        ],
    }


BUCKET_BOUNDS = [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)]


def buckets(*counts: tuple[int, int, int]) -> list[dict]:
    """(transferred, lost, still open) per bucket."""
    return [
        {
            "minScore": low,
            "maxScore": high,
            "scored": transferred + lost + still_open,
            "transferred": transferred,
            "lost": lost,
            "stillOpen": still_open,
            "transferRate": transferred / (transferred + lost + still_open)
            if transferred + lost + still_open
            else None,
        }
        for (low, high), (transferred, lost, still_open) in zip(BUCKET_BOUNDS, counts, strict=True)
    ]


def group(key, created, transferred, stages, sale_figures, score_buckets) -> dict:
    return {
        "key": key,
        "leadsCreated": created,
        "leadsTransferred": transferred,
        "transferRate": transferred / created if created else None,
        "stages": stages,
        "sales": sale_figures,
        "scoreTrackRecord": score_buckets,
    }


def window_input(group_by: str = "NONE") -> dict:
    return {
        "from": T0.isoformat(),
        "to": WINDOW_TO.isoformat(),
        "asOf": AS_OF.isoformat(),
        "groupBy": group_by,
    }


@pytest.fixture
async def histories(gql: GraphQLClient, db: asyncpg.Connection) -> None:
    for history in HISTORIES.values():
        await insert(db, history)


@pytest.mark.usefixtures("histories")
async def test_whole_pipeline_figures(gql: GraphQLClient):
    stats = (await gql(PIPELINE_STATS, {"input": window_input()}))["pipelineStats"]

    assert stats["from"] == "2026-03-01T00:00:00+00:00"
    assert stats["to"] == "2026-04-01T00:00:00+00:00"
    assert stats["asOf"] == "2026-04-10T00:00:00+00:00"
    assert stats["groupBy"] == "NONE"
    assert stats["groups"] == [
        group(
            None,
            created=9,  # L1-L6, L8, L10, L12: L7 and L11 were created earlier, L9 at `to`
            transferred=4,  # L3, L4, L10, L12
            stages=[
                # left NEW: L1 (lost) 10 h, L2 24, L3 24, L4 12, L6 10, L10 10, L12 10;
                # still NEW at asOf: L5 (entered at 96 h) and L8 (720 h)
                funnel_stage(
                    "NEW",
                    entered=9,
                    advanced=6,
                    lost=1,
                    time=(10, 24, 24, 12, 10, 10, 10),
                    age=(960 - 96, 960 - 720),
                ),
                # L2 lost after 72 h; L3 24, L4 36, L7 733 (after the window), L10 10, L12 10;
                # L6 still CONTACTED
                funnel_stage(
                    "CONTACTED",
                    entered=7,
                    advanced=5,
                    lost=1,
                    time=(72, 24, 36, 733, 10, 10),
                    age=(960 - 110,),
                ),
                funnel_stage("QUALIFIED", entered=4, advanced=4, lost=0, time=(48, 80, 10, 10)),
                terminal_stage("TRANSFERRED", 4),
                terminal_stage("LOST", 2),
            ],
            sale_figures=sales(NEW=1, KYC=1, PAID=1, LOST=1),  # L12, L10, L3, L4; not L11
            score_buckets=buckets(
                (0, 1, 0),  # L1
                (0, 1, 1),  # L2 lost, L5 open (L7 was scored before the window)
                (0, 0, 0),  # L9 was scored after the window
                (3, 0, 0),  # L3, L4, L10
                (0, 0, 2),  # L6, L8
            ),
        )
    ]


@pytest.mark.usefixtures("histories")
async def test_figures_by_source(gql: GraphQLClient):
    stats = (await gql(PIPELINE_STATS, {"input": window_input("SOURCE")}))["pipelineStats"]

    assert stats["groupBy"] == "SOURCE"
    assert stats["groups"] == [
        group(
            "SCANNER",
            created=2,  # L4, L5
            transferred=1,
            stages=[
                funnel_stage("NEW", 2, 1, 0, time=(12,), age=(960 - 96,)),
                funnel_stage("CONTACTED", 1, 1, 0, time=(36,)),
                funnel_stage("QUALIFIED", 1, 1, 0, time=(80,)),
                terminal_stage("TRANSFERRED", 1),
                terminal_stage("LOST", 0),
            ],
            sale_figures=sales(LOST=1),
            score_buckets=buckets((0, 0, 0), (0, 0, 1), (0, 0, 0), (1, 0, 0), (0, 0, 0)),
        ),
        group(
            "PARTNER",
            created=5,  # L1, L2, L3, L8, L12
            transferred=2,
            stages=[
                funnel_stage("NEW", 5, 3, 1, time=(10, 24, 24, 10), age=(960 - 720,)),
                funnel_stage("CONTACTED", 3, 2, 1, time=(72, 24, 10)),
                funnel_stage("QUALIFIED", 2, 2, 0, time=(48, 10)),
                terminal_stage("TRANSFERRED", 2),
                terminal_stage("LOST", 2),
            ],
            sale_figures=sales(NEW=1, PAID=1),
            score_buckets=buckets((0, 1, 0), (0, 1, 0), (0, 0, 0), (1, 0, 0), (0, 0, 1)),
        ),
        group(
            "MANUAL",
            created=2,  # L6, L10
            transferred=1,
            stages=[
                funnel_stage("NEW", 2, 2, 0, time=(10, 10)),
                funnel_stage("CONTACTED", 3, 2, 0, time=(733, 10), age=(960 - 110,)),
                funnel_stage("QUALIFIED", 1, 1, 0, time=(10,)),
                terminal_stage("TRANSFERRED", 1),
                terminal_stage("LOST", 0),
            ],
            sale_figures=sales(KYC=1),
            score_buckets=buckets((0, 0, 0), (0, 0, 0), (0, 0, 0), (1, 0, 0), (0, 0, 1)),
        ),
    ]


PIPELINE_STATS_WITH_OWNERS = PIPELINE_STATS.replace("key ", "key owner { id name } ", 1)

# The same histories with owners: Ann has L1-L3, Bob L4, L5, L10 and L11, Cid L6 and L12;
# L7-L9 have no owner (written before authentication existed).
OWNER_OF = {
    **dict.fromkeys(("L1", "L2", "L3"), "u-ann"),
    **dict.fromkeys(("L4", "L5", "L10", "L11"), "u-bob"),
    **dict.fromkeys(("L6", "L12"), "u-cid"),
}
OWNED_HISTORIES = {
    name: replace(history, owner=OWNER_OF.get(name)) for name, history in HISTORIES.items()
}


async def test_figures_by_owner(gql: GraphQLClient, db: asyncpg.Connection):
    await insert_owners(db)
    for history in OWNED_HISTORIES.values():
        await insert(db, history)

    stats = (await gql(PIPELINE_STATS_WITH_OWNERS, {"input": window_input("OWNER")}))[
        "pipelineStats"
    ]

    assert stats["groupBy"] == "OWNER"
    owners = [(g.pop("key"), g.pop("owner")) for g in stats["groups"]]
    assert owners == [
        ("u-ann", {"id": "u-ann", "name": "Ann"}),
        ("u-bob", {"id": "u-bob", "name": "Bob"}),
        ("u-cid", {"id": "u-cid", "name": "Cid"}),
        (None, None),  # leads without an owner come last
    ]
    assert [{"key": key, **g} for (key, _), g in zip(owners, stats["groups"], strict=True)] == [
        group(
            "u-ann",
            created=3,  # L1, L2, L3
            transferred=1,  # L3
            stages=[
                funnel_stage("NEW", 3, 2, 1, time=(10, 24, 24)),
                funnel_stage("CONTACTED", 2, 1, 1, time=(72, 24)),
                funnel_stage("QUALIFIED", 1, 1, 0, time=(48,)),
                terminal_stage("TRANSFERRED", 1),
                terminal_stage("LOST", 2),
            ],
            sale_figures=sales(PAID=1),
            score_buckets=buckets((0, 1, 0), (0, 1, 0), (0, 0, 0), (1, 0, 0), (0, 0, 0)),
        ),
        group(
            "u-bob",
            created=3,  # L4, L5, L10; L11 was created before the window
            transferred=2,  # L4, L10
            stages=[
                funnel_stage("NEW", 3, 2, 0, time=(12, 10), age=(960 - 96,)),
                funnel_stage("CONTACTED", 2, 2, 0, time=(36, 10)),
                funnel_stage("QUALIFIED", 2, 2, 0, time=(80, 10)),
                terminal_stage("TRANSFERRED", 2),
                terminal_stage("LOST", 0),
            ],
            # L11's sale moved in the window but was created before it
            sale_figures=sales(KYC=1, LOST=1),
            # L4 and L10 transferred, L5 open; L11 was scored before the window
            score_buckets=buckets((0, 0, 0), (0, 0, 1), (0, 0, 0), (2, 0, 0), (0, 0, 0)),
        ),
        group(
            "u-cid",
            created=2,  # L6, L12
            transferred=1,  # L12
            stages=[
                funnel_stage("NEW", 2, 2, 0, time=(10, 10)),
                funnel_stage("CONTACTED", 2, 1, 0, time=(10,), age=(960 - 110,)),
                funnel_stage("QUALIFIED", 1, 1, 0, time=(10,)),
                terminal_stage("TRANSFERRED", 1),
                terminal_stage("LOST", 0),
            ],
            sale_figures=sales(NEW=1),
            score_buckets=buckets((0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 1)),
        ),
        group(
            None,
            created=1,  # L8; L7 was created before the window, L9 at `to`
            transferred=0,
            stages=[
                funnel_stage("NEW", 1, 0, 0, age=(960 - 720,)),
                funnel_stage("CONTACTED", 1, 1, 0, time=(733,)),  # L7
                funnel_stage("QUALIFIED", 0, 0, 0),  # L7 qualified after the window
                terminal_stage("TRANSFERRED", 0),
                terminal_stage("LOST", 0),
            ],
            sale_figures=sales(),
            # L8; L7 was scored before the window, L9 after it
            score_buckets=buckets((0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 1)),
        ),
    ]


async def test_leads_written_through_the_api_group_under_their_owner(gql: GraphQLClient):
    # the manager creates and scores (0.6) the lead, so it is theirs; its score is as stored
    await qualified_lead(gql)
    now = datetime.now(UTC)
    window = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
        "groupBy": "OWNER",
    }

    stats = (await gql(PIPELINE_STATS_WITH_OWNERS, {"input": window}))["pipelineStats"]

    (mine,) = stats["groups"]
    assert (mine["key"], mine["owner"]) == (
        "test-manager",
        {"id": "test-manager", "name": "Test Manager"},
    )
    assert (mine["leadsCreated"], mine["stages"][2]["entered"]) == (1, 1)
    assert [b["scored"] for b in mine["scoreTrackRecord"]] == [0, 0, 0, 1, 0]


@pytest.mark.parametrize("role", ["manager", "admin"])
@pytest.mark.usefixtures("histories")
async def test_managers_and_admins_read_the_figures(gql: GraphQLClient, role: str):
    stats = (await gql.as_role(role)(PIPELINE_STATS, {"input": window_input()}))["pipelineStats"]

    assert stats["groups"][0]["leadsCreated"] == 9


@pytest.mark.usefixtures("histories")
async def test_sales_may_not_read_the_figures(gql: GraphQLClient):
    body = await gql.as_role("sales").raw(PIPELINE_STATS, {"input": window_input()})

    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == ["pipelineStats"]
    assert error["message"] == "The role sales may not read analytics."


def test_percentiles_interpolate_as_documented():
    # The helper above is PostgreSQL's definition; pin it to hand-computed values.
    assert percentile_cont([10.0, 24.0, 36.0, 72.0, 733.0], 0.5) == 36.0
    assert percentile_cont([10.0, 48.0], 0.5) == 29.0
    assert percentile_cont([240.0, 864.0], 0.9) == pytest.approx(801.6)


@pytest.mark.usefixtures("histories")
async def test_an_earlier_as_of_reads_the_history_as_it_stood_then(gql: GraphQLClient):
    # At 100 h: L1 lost (10 h); L2, L3, L4 contacted; L3 and L4 qualified; nobody transferred.
    as_of = hours(100)
    variables = {"input": {**window_input(), "asOf": as_of.isoformat()}}
    stats = (await gql(PIPELINE_STATS, variables))["pipelineStats"]

    assert stats["asOf"] == "2026-03-05T04:00:00+00:00"
    (whole,) = stats["groups"]
    # entered NEW before 100 h: L1 (0), L2 (24), L3 (48), L4 (72), L5 (96); L6 at 100 is not
    # before asOf
    assert whole["stages"][0] == funnel_stage(
        "NEW", 5, advanced=3, lost=1, time=(10, 24, 24, 12), age=(100 - 96,)
    )
    assert whole["stages"][2] == funnel_stage("QUALIFIED", 1, 0, 0, age=(100 - 96,))
    assert (whole["leadsCreated"], whole["leadsTransferred"]) == (5, 0)
    assert whole["sales"] == sales()
    # scored before 100 h: L1 (lost by then), L2, L3, L5 (open then)
    assert whole["scoreTrackRecord"] == buckets(
        (0, 1, 0), (0, 0, 2), (0, 0, 0), (0, 0, 1), (0, 0, 0)
    )


async def test_windows_are_instants_and_come_back_in_utc(
    gql: GraphQLClient, db: asyncpg.Connection
):
    await insert(db, History("PARTNER", [("NEW", 0.5)]))  # 2026-03-01T00:30Z

    async def created(start: str, end: str, as_of: str) -> tuple[dict, int]:
        variables = {"input": {"from": start, "to": end, "asOf": as_of}}
        stats = (await gql(PIPELINE_STATS, variables))["pipelineStats"]
        return stats, stats["groups"][0]["leadsCreated"]

    # 02:00+02:00 to 03:00+02:00 is 00:00Z to 01:00Z: the lead is in it
    stats, count = await created(
        "2026-03-01T02:00:00+02:00", "2026-03-01T03:00:00+02:00", "2026-03-01T04:00:00+02:00"
    )
    assert count == 1
    assert (stats["from"], stats["to"], stats["asOf"]) == (
        "2026-03-01T00:00:00+00:00",
        "2026-03-01T01:00:00+00:00",
        "2026-03-01T02:00:00+00:00",
    )
    assert stats["groups"][0]["stages"][0]["ageInStage"] == durations(1.5)
    # the same wall-clock hours read as UTC+02:00 end before the lead was created
    _, count = await created(
        "2026-03-01T00:00:00+02:00", "2026-03-01T01:00:00+02:00", "2026-03-01T02:00:00+02:00"
    )
    assert count == 0
    # and in UTC the lead is there again
    _, count = await created("2026-03-01T00:00:00Z", "2026-03-01T01:00:00Z", "2026-03-01T01:00Z")
    assert count == 1


async def test_as_of_defaults_to_now_and_never_passes_it(
    gql: GraphQLClient, db: asyncpg.Connection
):
    now = datetime.now(UTC)
    start = (now - timedelta(days=1)).isoformat()
    await db.execute(
        "INSERT INTO leads (source, stage) VALUES ('MANUAL', 'NEW');"
        " INSERT INTO stage_changes (lead_id, to_stage, at)"
        " SELECT id, 'NEW', now() - interval '1 hour' FROM leads;"
        " INSERT INTO stage_changes (lead_id, from_stage, to_stage, at)"
        " SELECT id, 'NEW', 'CONTACTED', now() + interval '1 hour' FROM leads"
    )
    for as_of in (None, (now + timedelta(days=365)).isoformat()):
        variables = {"input": {"from": start, "to": (now + timedelta(days=1)).isoformat()}}
        if as_of:
            variables["input"]["asOf"] = as_of
        stats = (await gql(PIPELINE_STATS, variables))["pipelineStats"]
        reported = datetime.fromisoformat(stats["asOf"])
        assert reported.utcoffset() == timedelta(0)
        assert now <= reported <= datetime.now(UTC)
        # the change dated an hour from now has not happened yet
        new, contacted = stats["groups"][0]["stages"][:2]
        assert (new["entered"], new["remaining"], contacted["entered"]) == (1, 1, 0)


async def test_one_sql_statement_whatever_the_grouping(gql: GraphQLClient, db: asyncpg.Connection):
    await insert_owners(db)
    for history in OWNED_HISTORIES.values():
        await insert(db, history)
    for group_by in ("NONE", "SOURCE", "OWNER"):
        body = await gql.raw(PIPELINE_STATS, {"input": window_input(group_by)})
        assert "errors" not in body
        assert body["extensions"]["sqlStatements"] == 1, group_by
    # the owners of all four groups come in one more statement (the user DataLoader)
    body = await gql.raw(PIPELINE_STATS_WITH_OWNERS, {"input": window_input("OWNER")})
    assert "errors" not in body
    assert len(body["data"]["pipelineStats"]["groups"]) == 4
    assert body["extensions"]["sqlStatements"] == 2


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"to": T0.isoformat()}, ["input", "to"], "`from` must be earlier than `to`."),
        (
            {"to": (T0 + timedelta(days=732)).isoformat()},
            ["input", "to"],
            "The window may span at most 731 days.",
        ),
        ({"from": "2026-03-01T00:00:00"}, ["input", "from"], "`from` must carry a UTC offset"),
        (
            {"from": "0001-01-01T00:00:00+02:00"},
            ["input", "from"],
            "`from` is outside the years 1 to 9999 in UTC.",
        ),
        ({"asOf": T0.isoformat()}, ["input", "asOf"], "`asOf` must be later than `from`."),
    ],
)
async def test_bad_windows_are_refused_naming_the_field(
    gql: GraphQLClient, changes: dict, field: list[str], message: str
):
    body = await gql.raw(PIPELINE_STATS, {"input": {**window_input(), **changes}})

    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["extensions"]["field"] == field
    assert error["message"].startswith(message)


# --- random histories against a reference model of docs/analytics.md -------------------------

WINDOW_HOURS = (0.0, 744.0)
AS_OF_HOURS = 960.0
NEXT_LEAD_STAGE = {"NEW": "CONTACTED", "CONTACTED": "QUALIFIED", "QUALIFIED": "TRANSFERRED"}
NEXT_SALE_STAGE = {"NEW": "KYC", "KYC": "AGREEMENT", "AGREEMENT": "PAID"}
SOURCES = ("SCANNER", "PARTNER", "MANUAL")


def random_history(rng: random.Random) -> History:
    """A lifecycle-respecting history; times in quarter hours, so seconds stay exact."""
    at = rng.randrange(-800, 3600) / 4  # before, in and after the window, some after asOf
    lead = [("NEW", at)]
    while lead[-1][0] in NEXT_LEAD_STAGE and rng.random() < 0.75:
        at += rng.randrange(1, 400) / 4
        lead.append(("LOST" if rng.random() < 0.3 else NEXT_LEAD_STAGE[lead[-1][0]], at))
    sale = None
    if lead[-1][0] == "TRANSFERRED":
        sale = [("NEW", at)]
        while sale[-1][0] in NEXT_SALE_STAGE and rng.random() < 0.7:
            at += rng.randrange(1, 400) / 4
            sale.append(("LOST" if rng.random() < 0.2 else NEXT_SALE_STAGE[sale[-1][0]], at))
    score = None
    if rng.random() < 0.7:
        score = (rng.randrange(0, 101) / 100, lead[0][1] + rng.randrange(0, 300) / 4)
    return History(rng.choice(SOURCES), lead, sale, score)


def expected_group(key: str | None, members: list[History]) -> dict:
    start, end = WINDOW_HOURS
    entered, advanced, lost = Counter(), Counter(), Counter()
    time: dict[str, list[float]] = {stage: [] for stage in NEXT_LEAD_STAGE}
    age: dict[str, list[float]] = {stage: [] for stage in NEXT_LEAD_STAGE}
    created = transferred = 0
    sale_stages: Counter = Counter()
    outcomes = [[0, 0, 0] for _ in BUCKET_BOUNDS]
    for history in members:
        seen = [(stage, at) for stage, at in history.lead if at < AS_OF_HOURS]
        for i, (stage, at) in enumerate(seen):
            if not start <= at < end:
                continue
            entered[stage] += 1
            if stage in NEXT_LEAD_STAGE:
                if i + 1 < len(seen):
                    (advanced if seen[i + 1][0] != "LOST" else lost)[stage] += 1
                    time[stage].append(seen[i + 1][1] - at)
                else:
                    age[stage].append(AS_OF_HOURS - at)
            if stage == "NEW":
                created += 1
                transferred += any(s == "TRANSFERRED" for s, _ in seen)
        sale_seen = [(stage, at) for stage, at in history.sale or () if at < AS_OF_HOURS]
        if sale_seen and start <= sale_seen[0][1] < end:
            sale_stages[sale_seen[-1][0]] += 1
        if history.score and start <= history.score[1] < min(end, AS_OF_HOURS):
            value = history.score[0]
            bucket = sum(value >= low for low, _ in BUCKET_BOUNDS[1:])
            final = seen[-1][0] if seen else None
            outcomes[bucket][{"TRANSFERRED": 0, "LOST": 1}.get(final, 2)] += 1
    return group(
        key,
        created,
        transferred,
        [
            *(
                funnel_stage(s, entered[s], advanced[s], lost[s], tuple(time[s]), tuple(age[s]))
                for s in NEXT_LEAD_STAGE
            ),
            terminal_stage("TRANSFERRED", entered["TRANSFERRED"]),
            terminal_stage("LOST", entered["LOST"]),
        ],
        sales(**sale_stages),
        buckets(*(tuple(counts) for counts in outcomes)),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_histories_match_the_documented_definitions(
    gql: GraphQLClient, db: asyncpg.Connection, seed: int
):
    rng = random.Random(seed)
    generated = [random_history(rng) for _ in range(80)]
    for history in generated:
        await insert(db, history)

    whole = (await gql(PIPELINE_STATS, {"input": window_input()}))["pipelineStats"]
    by_source = (await gql(PIPELINE_STATS, {"input": window_input("SOURCE")}))["pipelineStats"]

    assert whole["groups"] == [expected_group(None, generated)]
    assert by_source["groups"] == [
        expected_group(source, [h for h in generated if h.source == source]) for source in SOURCES
    ]
