"""SQL for the use cases and loaders, in SQLAlchemy Core. Every function takes the caller's
connection, so the caller decides the transaction."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_graphql.db.tables import activities, leads, sales, scoring_models, stage_changes, users
from crm_graphql.domain.access import Actor, Role, User
from crm_graphql.domain.enums import (
    ActivityKind,
    LeadSource,
    LeadStage,
    SaleStage,
    ScoreRecommendation,
)
from crm_graphql.domain.lead import Lead, LeadStageChanged, Sale, StageChange
from crm_graphql.domain.scoring import (
    ActivityRecord,
    LeadEvidence,
    LeadSnapshot,
    Score,
    ScoreFactor,
)

LEAD_STAGE_CHANNEL = "crm_lead_stage_changes"


def score_to_json(score: Score) -> dict[str, Any]:
    return {
        "recommendation": score.recommendation.value,
        "reasons": list(score.reasons),
        "factors": [
            {
                "name": factor.name,
                "contribution": factor.contribution,
                "explanation": factor.explanation,
            }
            for factor in score.factors
        ],
        "scorer": score.scorer,
        "scorer_version": score.scorer_version,
        "scored_at": score.scored_at.isoformat(),
        "inputs": {
            "source": score.inputs.source.value,
            "business_domain": score.inputs.business_domain,
            "activity_count": score.inputs.activity_count,
        },
    }


def score_from_row(value: float | None, data: dict[str, Any] | None) -> Score | None:
    """Scores stored before factors and versions existed load with no factors and no version:
    nothing is invented after the fact, and their reasons still say why."""
    if value is None or data is None:
        return None
    inputs = data["inputs"]
    return Score(
        value=value,
        recommendation=ScoreRecommendation(data["recommendation"]),
        reasons=tuple(data["reasons"]),
        scorer=data["scorer"],
        scored_at=datetime.fromisoformat(data["scored_at"]),
        inputs=LeadSnapshot(
            source=LeadSource(inputs["source"]),
            business_domain=inputs["business_domain"],
            activity_count=inputs["activity_count"],
        ),
        factors=tuple(
            ScoreFactor(f["name"], f["contribution"], f["explanation"])
            for f in data.get("factors", ())
        ),
        scorer_version=data.get("scorer_version"),
    )


def lead_from_row(row: Row[Any]) -> Lead:
    return Lead(
        id=row.id,
        source=LeadSource(row.source),
        stage=LeadStage(row.stage),
        business_domain=row.business_domain,
        activity_count=row.activity_count,
        score=score_from_row(row.score_value, row.score),
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
        owner_id=row.owner_id,
    )


def sale_from_row(row: Row[Any]) -> Sale:
    return Sale(
        id=row.id,
        lead_id=row.lead_id,
        stage=SaleStage(row.stage),
        created_at=row.created_at,
        updated_at=row.updated_at,
        transferred_by=row.transferred_by,
    )


def lead_change_from_row(row: Row[Any]) -> StageChange[LeadStage]:
    return StageChange(
        id=row.id,
        from_stage=LeadStage(row.from_stage) if row.from_stage else None,
        to_stage=LeadStage(row.to_stage),
        at=row.at,
        by=row.by,
    )


def sale_change_from_row(row: Row[Any]) -> StageChange[SaleStage]:
    return StageChange(
        id=row.id,
        from_stage=SaleStage(row.from_stage) if row.from_stage else None,
        to_stage=SaleStage(row.to_stage),
        at=row.at,
        by=row.by,
    )


def user_from_row(row: Row[Any]) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role))


# --- writes -------------------------------------------------------------------------------

# How stale users.last_seen may get: refreshing it on every write would rewrite the row each time.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


async def record_user(conn: AsyncConnection, actor: Actor) -> None:
    """Make sure the actor has a users row (attribution columns reference it), in one statement.

    An existing row is refreshed (name, role, last_seen) only when it changed or last_seen is
    older than LAST_SEEN_RESOLUTION, and SKIP LOCKED leaves it to whoever already refreshes it:
    a plain upsert would lock the row until commit and make one person's writes queue behind
    each other.
    """
    due = (
        select(users.c.id)
        .where(
            users.c.id == actor.user_id,
            or_(
                users.c.name != actor.name,
                users.c.role != actor.role.value,
                users.c.last_seen < func.now() - LAST_SEEN_RESOLUTION,
            ),
        )
        .with_for_update(key_share=True, skip_locked=True)
    )
    refreshed = (
        update(users)
        .where(users.c.id.in_(due.scalar_subquery()))
        .values(name=actor.name, role=actor.role.value, last_seen=func.now())
        .returning(users.c.id)
        .cte("refreshed")
    )
    new_row = select(literal(actor.user_id), literal(actor.name), literal(actor.role.value)).where(
        ~exists(select(refreshed.c.id))
    )
    await conn.execute(
        pg_insert(users)
        .from_select(["id", "name", "role"], new_row)
        .on_conflict_do_nothing(index_elements=[users.c.id])
    )


async def insert_lead(
    conn: AsyncConnection, source: LeadSource, business_domain: str | None, created_by: str
) -> Lead:
    row = (
        await conn.execute(
            insert(leads)
            .values(
                source=source.value,
                stage=LeadStage.NEW.value,
                business_domain=business_domain,
                created_by=created_by,
                owner_id=created_by,
            )
            .returning(*leads.c)
        )
    ).one()
    return lead_from_row(row)


async def lock_lead(conn: AsyncConnection, lead_id: int) -> Lead | None:
    row = (
        await conn.execute(select(*leads.c).where(leads.c.id == lead_id).with_for_update())
    ).one_or_none()
    return lead_from_row(row) if row else None


async def update_lead(conn: AsyncConnection, lead_id: int, **values: Any) -> Lead:
    row = (
        await conn.execute(
            update(leads)
            .where(leads.c.id == lead_id)
            .values(**values, updated_at=func.now())
            .returning(*leads.c)
        )
    ).one()
    return lead_from_row(row)


def score_values(score: Score) -> dict[str, Any]:
    return {"score_value": score.value, "score": score_to_json(score)}


async def increment_activity_count(conn: AsyncConnection, lead_id: int) -> Lead:
    return await update_lead(conn, lead_id, activity_count=leads.c.activity_count + 1)


async def insert_activity(
    conn: AsyncConnection, lead_id: int, kind: ActivityKind, note: str | None
) -> None:
    await conn.execute(insert(activities).values(lead_id=lead_id, kind=kind.value, note=note))


async def record_lead_stage_change(
    conn: AsyncConnection,
    lead_id: int,
    from_stage: LeadStage | None,
    to_stage: LeadStage,
    by: str,
) -> StageChange[LeadStage]:
    """Write the audit row and queue its notification; both take effect only on commit.

    The transaction-level lock makes lead audit ids commit in id order: no transaction draws an
    id until the one before it has committed or rolled back, so a reader that sees id n also
    sees every committed id below n, and "id > last delivered" never skips a late commit.
    PostgreSQL already serialises the commits of notifying transactions (NOTIFY holds a global
    lock from pre-commit to the end), so this only widens that section by this one statement.
    """
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:channel, 0))"),
        {"channel": LEAD_STAGE_CHANNEL},
    )
    row = (
        await conn.execute(
            insert(stage_changes)
            .values(
                lead_id=lead_id,
                from_stage=from_stage.value if from_stage else None,
                to_stage=to_stage.value,
                by=by,
            )
            .returning(*stage_changes.c)
        )
    ).one()
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": LEAD_STAGE_CHANNEL, "payload": json.dumps({"id": row.id, "lead": lead_id})},
    )
    return lead_change_from_row(row)


async def insert_sale(conn: AsyncConnection, lead_id: int, transferred_by: str) -> Sale:
    row = (
        await conn.execute(
            insert(sales)
            .values(lead_id=lead_id, stage=SaleStage.NEW.value, transferred_by=transferred_by)
            .returning(*sales.c)
        )
    ).one()
    return sale_from_row(row)


async def lock_sale(conn: AsyncConnection, sale_id: int) -> Sale | None:
    row = (
        await conn.execute(select(*sales.c).where(sales.c.id == sale_id).with_for_update())
    ).one_or_none()
    return sale_from_row(row) if row else None


async def update_sale_stage(conn: AsyncConnection, sale_id: int, stage: SaleStage) -> Sale:
    row = (
        await conn.execute(
            update(sales)
            .where(sales.c.id == sale_id)
            .values(stage=stage.value, updated_at=func.now())
            .returning(*sales.c)
        )
    ).one()
    return sale_from_row(row)


async def record_sale_stage_change(
    conn: AsyncConnection,
    sale_id: int,
    from_stage: SaleStage | None,
    to_stage: SaleStage,
    by: str,
) -> None:
    await conn.execute(
        insert(stage_changes).values(
            sale_id=sale_id,
            from_stage=from_stage.value if from_stage else None,
            to_stage=to_stage.value,
            by=by,
        )
    )


# --- batched reads for the DataLoaders ------------------------------------------------------


async def leads_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, Lead]:
    rows = await conn.execute(select(*leads.c).where(leads.c.id.in_(ids)))
    return {row.id: lead_from_row(row) for row in rows}


async def sales_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, Sale]:
    rows = await conn.execute(select(*sales.c).where(sales.c.id.in_(ids)))
    return {row.id: sale_from_row(row) for row in rows}


async def sales_by_lead_ids(conn: AsyncConnection, lead_ids: Sequence[int]) -> dict[int, Sale]:
    rows = await conn.execute(select(*sales.c).where(sales.c.lead_id.in_(lead_ids)))
    return {row.lead_id: sale_from_row(row) for row in rows}


async def users_by_ids(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, User]:
    rows = await conn.execute(select(*users.c).where(users.c.id.in_(ids)))
    return {row.id: user_from_row(row) for row in rows}


async def lead_history(
    conn: AsyncConnection, lead_ids: Sequence[int]
) -> dict[int, list[StageChange[LeadStage]]]:
    rows = await conn.execute(
        select(*stage_changes.c)
        .where(stage_changes.c.lead_id.in_(lead_ids))
        .order_by(stage_changes.c.lead_id, stage_changes.c.id)
    )
    history: dict[int, list[StageChange[LeadStage]]] = {lead_id: [] for lead_id in lead_ids}
    for row in rows:
        history[row.lead_id].append(lead_change_from_row(row))
    return history


async def sale_history(
    conn: AsyncConnection, sale_ids: Sequence[int]
) -> dict[int, list[StageChange[SaleStage]]]:
    rows = await conn.execute(
        select(*stage_changes.c)
        .where(stage_changes.c.sale_id.in_(sale_ids))
        .order_by(stage_changes.c.sale_id, stage_changes.c.id)
    )
    history: dict[int, list[StageChange[SaleStage]]] = {sale_id: [] for sale_id in sale_ids}
    for row in rows:
        history[row.sale_id].append(sale_change_from_row(row))
    return history


# --- scoring --------------------------------------------------------------------------------


async def evidence_by_leads(conn: AsyncConnection, of: Sequence[Lead]) -> dict[int, LeadEvidence]:
    """Activity mix and first contact of each lead, without notes (one query)."""
    evidence = {lead.id: LeadEvidence(created_at=lead.created_at) for lead in of}
    if not of:
        return evidence
    rows = await conn.execute(
        select(
            activities.c.lead_id, activities.c.kind, func.count(), func.min(activities.c.created_at)
        )
        .where(activities.c.lead_id.in_(list(evidence)))
        .group_by(activities.c.lead_id, activities.c.kind)
    )
    mixes: dict[int, dict[ActivityKind, int]] = {}
    firsts: dict[int, datetime] = {}
    for lead_id, kind, count, first in rows:
        mixes.setdefault(lead_id, {})[ActivityKind(kind)] = count
        firsts[lead_id] = min(first, firsts.get(lead_id, first))
    return {
        lead_id: replace(
            base, first_activity_at=firsts.get(lead_id), activity_mix=mixes.get(lead_id, {})
        )
        for lead_id, base in evidence.items()
    }


async def lead_evidence(conn: AsyncConnection, lead: Lead, recent_limit: int) -> LeadEvidence:
    """The lead's activity mix and first contact, and its `recent_limit` newest activities."""
    summary = (await evidence_by_leads(conn, [lead]))[lead.id]
    rows = await conn.execute(
        select(activities.c.kind, activities.c.note, activities.c.created_at)
        .where(activities.c.lead_id == lead.id)
        .order_by(activities.c.id.desc())
        .limit(recent_limit)
    )
    recent = tuple(ActivityRecord(ActivityKind(kind), note, at) for kind, note, at in rows)
    return replace(summary, recent=recent)


async def closed_leads(conn: AsyncConnection) -> list[Lead]:
    """TRANSFERRED and LOST leads, oldest first: the outcomes a scorer learns from."""
    rows = await conn.execute(
        select(*leads.c)
        .where(leads.c.stage.in_([LeadStage.TRANSFERRED.value, LeadStage.LOST.value]))
        .order_by(leads.c.id)
    )
    return [lead_from_row(row) for row in rows]


async def latest_scoring_model(conn: AsyncConnection, kind: str) -> Row[Any] | None:
    return (
        await conn.execute(
            select(*scoring_models.c)
            .where(scoring_models.c.kind == kind)
            .order_by(scoring_models.c.version.desc())
            .limit(1)
        )
    ).one_or_none()


async def insert_scoring_model(
    conn: AsyncConnection, kind: str, params: dict[str, Any], metrics: dict[str, Any]
) -> Row[Any]:
    """Store a model as the next version of its kind (the unique constraint settles races)."""
    next_version = (
        select(func.coalesce(func.max(scoring_models.c.version), 0) + 1)
        .where(scoring_models.c.kind == kind)
        .scalar_subquery()
    )
    return (
        await conn.execute(
            insert(scoring_models)
            .values(kind=kind, version=next_version, params=params, metrics=metrics)
            .returning(*scoring_models.c)
        )
    ).one()


# --- the lead stage change feed ------------------------------------------------------------


async def last_lead_stage_change_id(conn: AsyncConnection) -> int:
    last = await conn.scalar(
        select(func.max(stage_changes.c.id)).where(stage_changes.c.lead_id.is_not(None))
    )
    return last or 0


async def lead_stage_changes_after(
    conn: AsyncConnection,
    after: int,
    *,
    until: int | None = None,
    lead_id: int | None = None,
    limit: int,
) -> list[LeadStageChanged]:
    """Lead stage changes with after < id <= until, oldest first, each with its lead's current
    row (one joined read serves every subscriber of a batch)."""
    statement = (
        select(
            *(column.label(f"change_{column.name}") for column in stage_changes.c),
            *leads.c,
        )
        .join_from(stage_changes, leads, stage_changes.c.lead_id == leads.c.id)
        .where(stage_changes.c.id > after)
        .order_by(stage_changes.c.id)
        .limit(limit)
    )
    if until is not None:
        statement = statement.where(stage_changes.c.id <= until)
    if lead_id is not None:
        statement = statement.where(stage_changes.c.lead_id == lead_id)
    return [
        LeadStageChanged(
            change=StageChange(
                id=row.change_id,
                from_stage=LeadStage(row.change_from_stage) if row.change_from_stage else None,
                to_stage=LeadStage(row.change_to_stage),
                at=row.change_at,
                by=row.change_by,
            ),
            lead=lead_from_row(row),
        )
        for row in await conn.execute(statement)
    ]


# --- pages ----------------------------------------------------------------------------------


async def fetch_rows(conn: AsyncConnection, statement: Any) -> list[Row[Any]]:
    return list(await conn.execute(statement))


async def count_rows(
    conn: AsyncConnection, table: Any, conditions: Iterable[ColumnElement[bool]]
) -> int:
    return await conn.scalar(select(func.count()).select_from(table).where(*conditions)) or 0
