"""The learned scorer: `crm-graphql scorer train|evaluate` on synthetic closed leads in the
test database, then analyzeLead(scorer: LEARNED) with the stored model."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support.closed_leads import insert_closed_leads
from tests.support.database import wait_until_blocked
from tests.support.graphql import CREATE_LEAD, LOG_ACTIVITY, GraphQLClient, analyze_score

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def scorer_command(database_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_graphql", "scorer", *args],
        env={**os.environ, "CRM_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


async def test_training_refuses_too_few_closed_leads_and_says_how_many(
    gql: GraphQLClient, db: asyncpg.Connection, database_url: str, tmp_path: Path
):
    await insert_closed_leads(db, transferred=49, lost=60)

    result = scorer_command(database_url, "train", cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert "at least 50 TRANSFERRED and 50 LOST" in result.stdout
    assert "has 49 TRANSFERRED and 60 LOST" in result.stdout
    assert await db.fetchval("SELECT count(*) FROM scoring_models") == 0


async def test_evaluate_without_a_model_says_to_train_first(
    gql: GraphQLClient, database_url: str, tmp_path: Path
):
    result = scorer_command(database_url, "evaluate", cwd=tmp_path)
    assert result.returncode == 1
    assert "run `crm-graphql scorer train`" in result.stdout
    assert not (tmp_path / "calibration.png").exists()


async def test_without_a_model_the_learned_scorer_falls_back(gql: GraphQLClient):
    created = await gql(CREATE_LEAD, {"input": {"source": "PARTNER", "businessDomain": "x"}})
    score = await analyze_score(gql, created["createLead"]["lead"]["id"], "LEARNED")
    assert score["scorer"] == "heuristic (fallback: no_model)"
    assert score["value"] == 0.6


@pytest.fixture
async def trained(gql: GraphQLClient, db: asyncpg.Connection, database_url: str, tmp_path: Path):
    await insert_closed_leads(db, transferred=160, lost=160)
    result = scorer_command(database_url, "train", "--seed", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_training_stores_a_versioned_model_that_beats_the_heuristic(
    trained: str, db: asyncpg.Connection
):
    assert "Learned model v1" in trained
    row = await db.fetchrow("SELECT kind, version, trained_at, params, metrics FROM scoring_models")
    assert (row["kind"], row["version"]) == ("logistic", 1)
    assert row["trained_at"] is not None
    params = json.loads(row["params"])
    assert params["feature_names"][:3] == ["source_partner", "source_manual", "has_business_domain"]
    assert len(params["coefficients"]) == len(params["means"]) == len(params["scales"])
    metrics = json.loads(row["metrics"])
    assert metrics["split"] == {"seed": 7, "holdout_share": 0.25}
    assert metrics["holdout"]["transferred"] + metrics["train"]["transferred"] == 160
    # The synthetic data has signal the heuristic cannot see (time to contact, meetings).
    assert metrics["learned"]["roc_auc"] > metrics["heuristic"]["roc_auc"]
    assert metrics["learned"]["brier"] < metrics["heuristic"]["brier"]


async def test_a_training_that_meets_another_storing_its_model_takes_the_next_version(
    gql: GraphQLClient, db: asyncpg.Connection, database_url: str, tmp_path: Path
):
    """Two trainings at once: the second to store finds its version taken and stores the next
    one, instead of failing with a traceback. The test plays the first training: it holds an
    uncommitted version 1 until the real training waits for it."""
    await insert_closed_leads(db, transferred=160, lost=160)
    async with db.transaction():
        await db.execute(
            "INSERT INTO scoring_models (kind, version, params, metrics) "
            "VALUES ('logistic', 1, '{}', '{}')"
        )
        training = asyncio.create_task(
            asyncio.to_thread(scorer_command, database_url, "train", "--seed", "7", cwd=tmp_path)
        )
        await wait_until_blocked(db, "INSERT INTO scoring_models", timeout_s=120)
    result = await training
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Learned model v2" in result.stdout
    versions = await db.fetch("SELECT version FROM scoring_models ORDER BY version")
    assert [row["version"] for row in versions] == [1, 2]


async def test_evaluate_reports_both_scorers_on_the_same_split_and_plots(
    trained: str, database_url: str, tmp_path: Path
):
    plot = tmp_path / "out" / "cal.png"
    plot.parent.mkdir()

    result = scorer_command(database_url, "evaluate", "--plot", str(plot), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    header = next(line for line in output.splitlines() if line.startswith("scorer"))
    assert "ROC AUC" in header
    assert "Brier" in header
    learned = next(line for line in output.splitlines() if line.startswith("learned "))
    heuristic = next(line for line in output.splitlines() if line.startswith("heuristic "))
    assert len(learned.split()) == len(heuristic.split()) == 3
    assert "Calibration, learned:" in output
    assert "Calibration, heuristic:" in output
    assert "Verdict: learning helped" in output
    # The held-out split of evaluate is the one training reported.
    held_out = next(line for line in output.splitlines() if "held-out split:" in line)
    assert held_out in trained
    assert plot.read_bytes()[:8] == PNG_SIGNATURE


async def test_analyze_with_the_learned_scorer_uses_the_newest_stored_model(
    trained: str, gql: GraphQLClient, database_url: str, tmp_path: Path
):
    created = await gql(CREATE_LEAD, {"input": {"source": "PARTNER", "businessDomain": "x"}})
    lead_id = created["createLead"]["lead"]["id"]
    for kind in ("MEETING", "MEETING", "CALL"):
        await gql(LOG_ACTIVITY, {"input": {"leadId": lead_id, "kind": kind}})

    learned = await analyze_score(gql, lead_id, "LEARNED")
    heuristic = await analyze_score(gql, lead_id, None)

    assert learned["scorer"] == "learned"
    assert learned["scorerVersion"] == "1"
    assert learned["stale"] is False
    factors = learned["factors"]
    assert factors[0]["name"] == "baseline"
    assert {f["name"] for f in factors} >= {"share_meetings", "log_hours_to_first_contact"}
    assert sum(f["contribution"] for f in factors) == pytest.approx(learned["value"], abs=0.005)
    assert learned["reasons"]  # the strongest factors, in words
    assert heuristic["scorer"] == "heuristic"
    assert learned["value"] != heuristic["value"]

    retrained = scorer_command(database_url, "train", "--seed", "8", cwd=tmp_path)
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    assert (await analyze_score(gql, lead_id, "LEARNED"))["scorerVersion"] == "2"  # no restart

    logged = await gql(LOG_ACTIVITY, {"input": {"leadId": lead_id, "kind": "EMAIL"}})
    assert logged["logActivity"]["lead"]["score"]["stale"] is True
