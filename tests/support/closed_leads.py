"""Synthetic closed leads with a known signal, inserted with plain SQL.

Converted (TRANSFERRED) leads come more often from partners, more often have a business
domain, are contacted sooner and have more meetings; the heuristic sees only the first two and
the activity count, so a model that also reads time to first contact and the mix should beat it.
"""

import random
from datetime import UTC, datetime, timedelta

import asyncpg

KINDS = ("CALL", "EMAIL", "MEETING", "NOTE")


async def insert_closed_leads(
    db: asyncpg.Connection, transferred: int, lost: int, seed: int = 1
) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = [True] * transferred + [False] * lost
    rng.shuffle(outcomes)
    for converted in outcomes:
        source = rng.choices(
            ("PARTNER", "MANUAL", "SCANNER"), (0.45, 0.3, 0.25) if converted else (0.25, 0.3, 0.45)
        )[0]
        has_domain = rng.random() < (0.8 if converted else 0.55)
        count = rng.randint(1, 12) if converted else rng.randint(0, 10)
        created = start + timedelta(hours=rng.uniform(0, 24 * 300))
        lead_id = await db.fetchval(
            "INSERT INTO leads (source, stage, business_domain, activity_count, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            source,
            "TRANSFERRED" if converted else "LOST",
            "retail" if has_domain else None,
            count,
            created,
        )
        at = created + timedelta(hours=rng.expovariate(1 / (6 if converted else 30)))
        weights = (0.3, 0.25, 0.3, 0.15) if converted else (0.3, 0.4, 0.12, 0.18)
        rows = []
        for _ in range(count):
            rows.append((lead_id, rng.choices(KINDS, weights)[0], "synthetic", at))
            at += timedelta(hours=rng.uniform(1, 72))
        await db.executemany(
            "INSERT INTO activities (lead_id, kind, note, created_at) VALUES ($1, $2, $3, $4)", rows
        )
