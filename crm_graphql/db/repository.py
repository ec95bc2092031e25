"""SQL for the use cases and loaders. Every function takes the caller's connection, so the
caller decides the transaction. The hot path (the mutations and the DataLoaders) sends fixed
SQL texts straight to asyncpg (db/driver.py); the rest is SQLAlchemy Core."""

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
import orjson
from sqlalchemy import ColumnElement, Row, String, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_graphql.db import driver
from crm_graphql.db.sql import Sql, sql
from crm_graphql.db.tables import (
    DUPLICATE_KEY_COLUMNS,
    GUARDED_OPEN_LEAD,
    POSTGRESQL,
    STAGE_CHANGE_ORIGIN,
    activities,
    leads,
    sales,
    scoring_models,
    stage_changes,
    users,
)
from crm_graphql.domain.access import Actor, Role, User
from crm_graphql.domain.enums import (
    ActivityKind,
    LeadSource,
    LeadStage,
    SaleStage,
    ScoreRecommendation,
)
from crm_graphql.domain.lead import (
    LEAD_FIELD_COLUMNS,
    Columns,
    Lead,
    LeadFields,
    LeadStageChanged,
    Sale,
    StageChange,
)
from crm_graphql.domain.scoring import (
    ActivityRecord,
    LeadEvidence,
    LeadSnapshot,
    Score,
    ScoreFactor,
)

LEAD_STAGE_CHANNEL = "crm_lead_stage_changes"


def json_text(value: dict[str, Any] | list[Any]) -> str:
    """A JSON or JSONB parameter as text (orjson: several times faster than the json module)."""
    return orjson.dumps(value).decode()


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


def lead_from_row(row: Columns) -> Lead:
    return Lead(
        id=row["id"],
        source=LeadSource(row["source"]),
        stage=LeadStage(row["stage"]),
        activity_count=row["activity_count"],
        score=score_from_row(row["score_value"], row["score"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        fields=LeadFields.from_row(row),
        created_by=row["created_by"],
        owner_id=row["owner_id"],
        duplicate_of=row["duplicate_of"],
        merged_into=row["merged_into"],
        lost_reason=row["lost_reason"],
    )


# The columns new_lead_values fills, in the order the inserts list them.
NEW_LEAD_COLUMNS = ("source", "stage", *LEAD_FIELD_COLUMNS)


def new_lead_values(source: LeadSource, fields: LeadFields) -> dict[str, Any]:
    return {"source": source.value, "stage": LeadStage.NEW.value, **fields.columns()}


def sale_from_row(row: Columns) -> Sale:
    return Sale(
        id=row["id"],
        lead_id=row["lead_id"],
        stage=SaleStage(row["stage"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        transferred_by=row["transferred_by"],
    )


def lead_change_from_row(row: Columns) -> StageChange[LeadStage]:
    return StageChange(
        id=row["id"],
        from_stage=LeadStage(row["from_stage"]) if row["from_stage"] else None,
        to_stage=LeadStage(row["to_stage"]),
        at=row["at"],
        by=row["by"],
        note=row["note"],
        merged_from=row["merged_from_lead_id"],
    )


def sale_change_from_row(row: Columns) -> StageChange[SaleStage]:
    return StageChange(
        id=row["id"],
        from_stage=SaleStage(row["from_stage"]) if row["from_stage"] else None,
        to_stage=SaleStage(row["to_stage"]),
        at=row["at"],
        by=row["by"],
    )


def user_from_row(row: Columns) -> User:
    return User(id=row["id"], name=row["name"], role=Role(row["role"]))


# --- writes -------------------------------------------------------------------------------

# How stale users.last_seen may get: refreshing it on every write would rewrite the row each time.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# A process writes for a person without the writer CTEs for this long after recording them
# (RecordedWriters), and the CTEs refresh last_seen when it is older than this: together they
# keep last_seen within LAST_SEEN_RESOLUTION of the person's latest write.
RECORDED_FOR = LAST_SEEN_RESOLUTION / 2


@dataclass(frozen=True)
class Duplicate:
    lead_id: int
    field: str  # the input field whose value matched: email, phone or website


async def find_duplicate(
    conn: AsyncConnection, keys: dict[str, str], exclude_id: int | None = None
) -> Duplicate | None:
    """The open lead under the duplicate guard that holds one of `keys`, if any."""
    found = await open_leads_by_duplicate_keys(
        conn, {field: [value] for field, value in keys.items()}, exclude_id
    )
    for field, value in keys.items():
        if (field, value) in found:
            return Duplicate(found[(field, value)], field)
    return None


def score_values(score: Score) -> dict[str, Any]:
    return {"score_value": score.value, "score": score_to_json(score)}


async def move_activities(conn: AsyncConnection, from_lead_id: int, to_lead_id: int) -> None:
    await conn.execute(
        update(activities).where(activities.c.lead_id == from_lead_id).values(lead_id=to_lead_id)
    )


async def move_lead_history(conn: AsyncConnection, from_lead_id: int, to_lead_id: int) -> None:
    """Move a merged lead's audit rows to the kept lead, marked with the lead they happened on
    (rows it had itself received from earlier merges keep their original mark)."""
    await conn.execute(
        update(stage_changes)
        .where(stage_changes.c.lead_id == from_lead_id)
        .values(
            lead_id=to_lead_id,
            merged_from_lead_id=func.coalesce(stage_changes.c.merged_from_lead_id, from_lead_id),
        )
    )


async def record_lead_merge(
    conn: AsyncConnection, lead_id: int, stage: LeadStage, by: str, note: str
) -> None:
    """A history entry on the kept lead; not a stage change, so nothing is published."""
    await conn.execute(
        insert(stage_changes).values(
            lead_id=lead_id, from_stage=stage.value, to_stage=stage.value, by=by, note=note
        )
    )


async def _notify_lead_stage_changes(conn: AsyncConnection, payload: dict[str, Any]) -> None:
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": LEAD_STAGE_CHANNEL, "payload": json_text(payload)},
    )


# --- bulk import ----------------------------------------------------------------------------


# One statement per batch whose text never changes: the rows travel as one array per column.
# (A multi-row VALUES clause made by SQLAlchemy costs more to compile than the insert itself.)
IMPORTED_LEAD_COLUMNS = (*NEW_LEAD_COLUMNS, "import_key")


def _array_of(column: str) -> str:
    """The array type a column's values travel in (text for every string column)."""
    kind = leads.c[column].type
    return "text[]" if isinstance(kind, String) else f"{kind.compile(POSTGRESQL)}[]"


_INSERT_IMPORTED_LEADS = text(
    f"INSERT INTO leads ({', '.join(IMPORTED_LEAD_COLUMNS)}, created_by, owner_id) "
    "SELECT imported.*, CAST(:created_by AS text), CAST(:owner_id AS text) "
    f"FROM unnest({', '.join(f'CAST(:{c} AS {_array_of(c)})' for c in IMPORTED_LEAD_COLUMNS)}) "
    "AS imported ON CONFLICT DO NOTHING RETURNING id, import_key"
)
_RECORD_CREATIONS = text(
    "WITH audit AS (INSERT INTO stage_changes (lead_id, to_stage, by) "
    "SELECT unnest(CAST(:lead_ids AS bigint[])), :stage, CAST(:by AS text) RETURNING id) "
    "SELECT max(id) FROM audit"
)


async def insert_imported_leads(
    conn: AsyncConnection, rows: Sequence[dict[str, Any]], created_by: str, owner_id: str
) -> dict[str, int]:
    """Insert leads with their import keys in one statement; rows already imported or held by
    the duplicate guard are skipped. Returns import key -> new lead id."""
    columns = {name: [row[name] for row in rows] for name in IMPORTED_LEAD_COLUMNS}
    created = await conn.execute(
        _INSERT_IMPORTED_LEADS, {**columns, "created_by": created_by, "owner_id": owner_id}
    )
    return {row.import_key: row.id for row in created}


async def record_lead_creations(
    conn: AsyncConnection, lead_ids: Sequence[int], by: str, ordered: bool = True
) -> None:
    """The (none -> NEW) audit rows of many new leads, and one notification for all of them:
    it carries the highest audit id, so a listener reading by id picks up the whole batch.
    Without `ordered` (for writes that are rolled back) no lock orders the ids."""
    if ordered:
        await driver.execute(conn, _ORDER_LEAD_AUDIT_IDS_ALONE, channel=LEAD_STAGE_CHANNEL)
    last_audit_id = await conn.scalar(
        _RECORD_CREATIONS, {"lead_ids": list(lead_ids), "stage": LeadStage.NEW.value, "by": by}
    )
    await _notify_lead_stage_changes(conn, {"id": last_audit_id, "leads": len(lead_ids)})


async def leads_by_import_keys(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, int]:
    rows = await conn.execute(
        select(leads.c.id, leads.c.import_key).where(leads.c.import_key.in_(keys))
    )
    return {row.import_key: row.id for row in rows}


async def open_leads_by_duplicate_keys(
    conn: AsyncConnection, keys: dict[str, Sequence[str]], exclude_id: int | None = None
) -> dict[tuple[str, str], int]:
    """(field, value) -> the open lead under the duplicate guard that holds the value (the
    guard's unique indexes allow one at most)."""
    conditions = [DUPLICATE_KEY_COLUMNS[f].in_(values) for f, values in keys.items() if values]
    if not conditions:
        return {}
    statement = select(leads.c.id, *DUPLICATE_KEY_COLUMNS.values()).where(
        GUARDED_OPEN_LEAD, or_(*conditions)
    )
    if exclude_id is not None:
        statement = statement.where(leads.c.id != exclude_id)
    found: dict[tuple[str, str], int] = {}
    for row in await conn.execute(statement):
        for field, column in DUPLICATE_KEY_COLUMNS.items():
            value = row._mapping[column]
            if value is not None:
                found[(field, value)] = row.id
    return found


# --- batched reads for the DataLoaders ------------------------------------------------------


async def lead_history_with_merged(
    conn: AsyncConnection, lead_ids: Sequence[int]
) -> dict[int, list[StageChange[LeadStage]]]:
    """Each lead's own changes and those of the leads merged into it, by time."""
    rows = await conn.execute(
        select(*stage_changes.c, STAGE_CHANGE_ORIGIN.label("origin"))
        .where(
            stage_changes.c.lead_id.is_not(None),
            or_(STAGE_CHANGE_ORIGIN.in_(lead_ids), stage_changes.c.lead_id.in_(lead_ids)),
        )
        .order_by(stage_changes.c.at, stage_changes.c.id)
    )
    history: dict[int, list[StageChange[LeadStage]]] = {lead_id: [] for lead_id in lead_ids}
    for row in rows:
        change = lead_change_from_row(row._mapping)
        for lead_id in {row.origin, row.lead_id}:
            if lead_id in history:
                history[lead_id].append(change)
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
    return [lead_from_row(row._mapping) for row in rows]


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


_LAST_LEAD_STAGE_CHANGE_ID = sql(
    "SELECT coalesce(max(id), 0) AS id FROM stage_changes WHERE lead_id IS NOT NULL"
)


async def last_lead_stage_change_id(conn: AsyncConnection) -> int:
    """Where the change feed starts, and where it stands after a reconnect while nobody
    subscribes."""
    row = await driver.fetchrow(conn, _LAST_LEAD_STAGE_CHANGE_ID)
    return row.id if row else 0


_CHANGE_LABELS = ", ".join(f"c.{column.name} AS change_{column.name}" for column in stage_changes.c)
_LEAD_OF_CHANGE = ", ".join(f"l.{column.name}" for column in leads.c)


@lru_cache(maxsize=4)
def _lead_stage_changes_after_sql(until: bool, one_lead: bool) -> Sql:
    """A fixed text per set of conditions: the live feed reads on every wake-up, and a fixed
    text stays a prepared statement."""
    conditions = ["c.id > :after"]
    if until:
        conditions.append("c.id <= :until")
    if one_lead:
        conditions.append("c.lead_id = :lead_id")
    return sql(
        f"SELECT {_CHANGE_LABELS}, {_LEAD_OF_CHANGE} "
        "FROM stage_changes c JOIN leads l ON l.id = c.lead_id "
        f"WHERE {' AND '.join(conditions)} ORDER BY c.id LIMIT :limit"
    )


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
    statement = _lead_stage_changes_after_sql(until is not None, lead_id is not None)
    conditions = {
        name: value for name, value in (("until", until), ("lead_id", lead_id)) if value is not None
    }
    rows = await driver.fetch(conn, statement, after=after, limit=limit, **conditions)
    return [_lead_stage_changed_from_row(row) for row in rows]


def _lead_stage_changed_from_row(row: Columns) -> LeadStageChanged:
    from_stage = row["change_from_stage"]
    change = StageChange(
        id=row["change_id"],
        from_stage=LeadStage(from_stage) if from_stage else None,
        to_stage=LeadStage(row["change_to_stage"]),
        at=row["change_at"],
        by=row["change_by"],
    )
    return LeadStageChanged(change=change, lead=lead_from_row(row))


# --- pages ----------------------------------------------------------------------------------


async def fetch_rows(conn: AsyncConnection, statement: Any) -> list[Row[Any]]:
    return list(await conn.execute(statement))


async def count_rows(
    conn: AsyncConnection, table: Any, conditions: Iterable[ColumnElement[bool]]
) -> int:
    return await conn.scalar(select(func.count()).select_from(table).where(*conditions)) or 0


# --- the hot path: fixed SQL texts sent straight to asyncpg (db/driver.py) --------------------

LEAD_COLUMNS = ", ".join(column.name for column in leads.c)
_SALE_COLUMN_NAMES = [column.name for column in sales.c]
SALE_COLUMNS = ", ".join(_SALE_COLUMN_NAMES)
CHANGE_COLUMNS = ", ".join(column.name for column in stage_changes.c)
USER_COLUMNS = ", ".join(column.name for column in users.c)
ORIGIN = str(STAGE_CHANGE_ORIGIN.compile(dialect=POSTGRESQL))
_LEAD_COLUMNS_OF_CTE = ", ".join(f"lead.{column.name}" for column in leads.c)


# Attribution columns reference users, so a writer's row must exist before its first change.
# An existing row is refreshed (name, role, last_seen) only when it changed or last_seen is
# older than LAST_SEEN_RESOLUTION, and SKIP LOCKED leaves it to whoever already refreshes it:
# a plain upsert would lock the row until commit and make one person's writes queue behind
# each other. These CTEs travel in the statements that write, so the writer is recorded
# without a statement of its own; foreign keys are checked at the end of the statement, when
# the row exists. Their parameters are those of `_writer`.
def _writer_ctes(only_if: str = "TRUE") -> str:
    """The CTEs `due`, `refreshed` and `writer` recording the writer; `only_if` is SQL that
    must hold for them to do anything."""
    return f"""due AS (
    SELECT id FROM users
    WHERE id = :writer_id
      AND (name <> :writer_name OR role <> :writer_role
           OR last_seen < now() - :last_seen_resolution::interval)
      AND {only_if}
    FOR NO KEY UPDATE SKIP LOCKED
), refreshed AS (
    UPDATE users SET name = :writer_name, role = :writer_role, last_seen = now()
    WHERE id IN (SELECT id FROM due) RETURNING id
), writer AS (
    INSERT INTO users (id, name, role)
    SELECT :writer_id, :writer_name, :writer_role
    WHERE NOT EXISTS (SELECT 1 FROM refreshed) AND {only_if}
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)"""


_WRITER = "WITH " + _writer_ctes()
# For a conditional write: the writer is recorded only when CTE `lead` (or `sale`) changed a
# row, so a refused write leaves no trace.
_IF_LEAD_CHANGED = "EXISTS (SELECT 1 FROM lead)"


def _writer(actor: Actor) -> dict[str, Any]:
    """The values of the writer CTEs' parameters."""
    return {
        "writer_id": actor.user_id,
        "writer_name": actor.name,
        "writer_role": actor.role.value,
        "last_seen_resolution": RECORDED_FOR,
    }


# Refreshing the writer's row (the CTEs `due` and `refreshed`: the users row locked and
# updated when due) is a third of a write statement's time in PostgreSQL (docs/benchmarks.md,
# "Writes (issue 18)"), and for someone who keeps working it finds nothing to do. So a write
# statement comes in two texts: one recording its writer as above, and one that only makes
# sure the row exists (it inserts a missing one, as the first also does), for a writer this
# process recorded lately with the same name and role.
def _writer_ensured(only_if: str) -> str:
    """The CTE `writer` of a write whose writer is known: inserts their users row only if it
    is missing (a database emptied or restored under the running server)."""
    return f"""writer AS (
    INSERT INTO users (id, name, role)
    SELECT :writer_id, :writer_name, :writer_role
    WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = :writer_id) AND {only_if}
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)"""


@dataclass(frozen=True)
class WriterStatement:
    recording: Sql
    recorded: Sql  # the same write, for a writer RecordedWriters knows


def writer_statement(only_if: str, build: Callable[[str], str]) -> WriterStatement:
    """`build(ctes)` is the statement's text with the writer CTEs `ctes` where they go."""
    return WriterStatement(sql(build(_writer_ctes(only_if))), sql(build(_writer_ensured(only_if))))


class RecordedWriters:
    """The people this process recorded as writers (their users row refreshed with this name
    and role) by a statement that committed, until RECORDED_FOR has passed. Held per process:
    each process refreshes a person's row at most once per RECORDED_FOR."""

    def __init__(self) -> None:
        self._recorded: dict[str, tuple[str, Role, float]] = {}

    def knows(self, actor: Actor) -> bool:
        entry = self._recorded.get(actor.user_id)
        return (
            entry is not None
            and entry[0] == actor.name
            and entry[1] is actor.role
            and entry[2] > time.monotonic()
        )

    def note(self, actor: Actor) -> None:
        until = time.monotonic() + RECORDED_FOR.total_seconds()
        self._recorded[actor.user_id] = (actor.name, actor.role, until)


recorded_writers = RecordedWriters()


async def write_as(
    conn: driver.Connection, statement: WriterStatement, actor: Actor, **values: Any
) -> driver.Row | None:
    """The write's row, recording its writer, or only making sure their row exists if this
    process recorded them lately. Only a statement that commits on its own notes the writer
    as recorded: inside a transaction the record could still roll back."""
    if recorded_writers.knows(actor):
        given = {**_writer(actor), **values}
        chosen = {name: given[name] for name in statement.recorded.names}
        return await driver.fetchrow(conn, statement.recorded, **chosen)
    row = await driver.fetchrow(conn, statement.recording, **_writer(actor), **values)
    if row is not None and not (await driver.driver(conn)).is_in_transaction():
        recorded_writers.note(actor)
    return row


_RECORD_USER = sql(f"{_WRITER} SELECT 1")


async def record_user(conn: AsyncConnection, actor: Actor) -> None:
    """Make sure the actor has a users row (see _writer_ctes), for writes that lock no lead."""
    await driver.execute(conn, _RECORD_USER, **_writer(actor))


# The lock every writer of lead audit rows takes before drawing an id.
#
# It makes lead audit ids commit in id order: no transaction draws an id until the one before
# it has committed or rolled back, so a reader that sees id n also sees every committed id
# below n, and "id > last delivered" never skips a late commit. PostgreSQL already serialises
# the commits of notifying transactions (NOTIFY holds a global lock from pre-commit to the
# end), so this only widens that section a little.
_ORDER_LEAD_AUDIT_IDS = "SELECT pg_advisory_xact_lock(hashtextextended(:channel, 0))"
_ORDER_LEAD_AUDIT_IDS_ALONE = sql(_ORDER_LEAD_AUDIT_IDS)


def _audit_lead_change(after_writer: bool = True) -> str:
    """The CTEs `ordered` and `change` of a statement whose CTE `lead` yields a lead that has
    just changed stage, with its old stage as `from_stage`: the audit row, by :by with :note.
    The statement then selects from `lead, change`, notifying with _NOTIFY_CHANGE. The insert
    takes its row from `ordered`, so the lock is held before the id is drawn. Every lead audit
    row is written through here, except the bulk import's.

    `ordered` reads `lead` (and, with after_writer, the statement's CTE `writer`), so the
    statement takes its locks in the order every writer does: the lead's row, the writer's
    users row, then this lock; and none when the lead did not change."""
    recorded = ", (SELECT count(*) FROM writer) AS recorded" if after_writer else ""
    return f"""ordered AS ({_ORDER_LEAD_AUDIT_IDS} FROM lead{recorded}),
change AS (
    INSERT INTO stage_changes (lead_id, from_stage, to_stage, by, note)
    SELECT lead.id, lead.from_stage, lead.stage, :by, :note FROM lead, ordered
    RETURNING id, lead_id
)"""


_AUDIT_LEAD_CHANGE = _audit_lead_change()
_NOTIFY_CHANGE = (
    "pg_notify(:channel, json_build_object('id', change.id, 'lead', change.lead_id)::text)"
)


def _audit(by: str, note: str | None = None) -> dict[str, Any]:
    """The values of the audit CTEs' parameters."""
    return {"by": by, "note": note, "channel": LEAD_STAGE_CHANNEL}


_CREATE_LEAD = writer_statement(
    _IF_LEAD_CHANGED,
    lambda writer: (
        f"""WITH lead AS (
    INSERT INTO leads ({", ".join(NEW_LEAD_COLUMNS)}, created_by, owner_id, duplicate_of)
    VALUES ({", ".join(f":{name}" for name in NEW_LEAD_COLUMNS)},
            :writer_id, :writer_id, :duplicate_of)
    ON CONFLICT DO NOTHING
    RETURNING *, NULL::text AS from_stage
),
{writer},
{_AUDIT_LEAD_CHANGE}
SELECT {_LEAD_COLUMNS_OF_CTE}, {_NOTIFY_CHANGE} FROM lead, change"""
    ),
)


async def create_lead(
    conn: driver.Connection,
    actor: Actor,
    source: LeadSource,
    fields: LeadFields,
    duplicate_of: int | None = None,
) -> Lead | None:
    """The new lead, owned by its creator, with its (none -> NEW) audit row and notification, in
    one statement; or None when it would duplicate an open lead the guard covers (the unique
    indexes decide, so concurrent inserts of the same email leave exactly one lead)."""
    row = await write_as(
        conn,
        _CREATE_LEAD,
        actor,
        **_audit(actor.user_id),
        **new_lead_values(source, fields),
        duplicate_of=duplicate_of,
    )
    return lead_from_row(row) if row else None


_LOCK_LEADS = sql(f"SELECT {LEAD_COLUMNS} FROM leads WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")


async def lock_leads(conn: AsyncConnection, lead_ids: Sequence[int]) -> dict[int, Lead]:
    """Lock in id order, so two transactions locking the same leads cannot deadlock."""
    rows = await driver.fetch(conn, _LOCK_LEADS, ids=list(lead_ids))
    return {row["id"]: lead_from_row(row) for row in rows}


_LOCK_LEAD_FOR = sql(f"{_WRITER} SELECT {LEAD_COLUMNS} FROM leads WHERE id = :lead_id FOR UPDATE")


async def lock_lead_for(conn: AsyncConnection, actor: Actor, lead_id: int) -> Lead | None:
    """Lock the lead the actor is about to change and record the actor, in one statement."""
    row = await driver.fetchrow(conn, _LOCK_LEAD_FOR, **_writer(actor), lead_id=lead_id)
    return lead_from_row(row) if row else None


@lru_cache(maxsize=64)
def _update_lead_sql(columns: tuple[str, ...]) -> Sql:
    """The UPDATE for this set of columns, checked and built once per set."""
    unknown = set(columns) - set(leads.c.keys())
    if unknown:
        raise ValueError(f"not columns of leads: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    return sql(
        f"UPDATE leads SET {assignments}, updated_at = now() WHERE id = :id "
        f"RETURNING {LEAD_COLUMNS}"
    )


async def update_lead(conn: AsyncConnection, lead_id: int, **values: Any) -> Lead:
    parameters = {
        name: json_text(value) if isinstance(value, dict | list) else value
        for name, value in values.items()
    }
    statement = _update_lead_sql(tuple(sorted(values)))
    row = await driver.fetchrow(conn, statement, id=lead_id, **parameters)
    if row is None:
        raise LookupError(f"lead {lead_id} vanished under its row lock")
    return lead_from_row(row)


_ADD_ACTIVITY = sql(
    f"""WITH activity AS (
    INSERT INTO activities (lead_id, kind, note) VALUES (:lead_id, :kind, :note)
)
UPDATE leads SET activity_count = activity_count + 1, updated_at = now() WHERE id = :lead_id
RETURNING {LEAD_COLUMNS}"""
)


async def add_activity(
    conn: AsyncConnection, lead_id: int, kind: ActivityKind, note: str | None
) -> Lead:
    """Log the activity and count it on the lead, in one statement."""
    row = await driver.fetchrow(conn, _ADD_ACTIVITY, lead_id=lead_id, kind=kind.value, note=note)
    if row is None:
        raise LookupError(f"lead {lead_id} vanished under its row lock")
    return lead_from_row(row)


# The writes below are single statements that check, under the row lock they take, the stage
# the rule allows (or the row version the rule was checked on): no transaction, no separate
# lock, and a refused write changes nothing. They return nothing when the check fails; the use
# case then reads the row to say why.

_MOVE_LEAD = writer_statement(
    _IF_LEAD_CHANGED,
    lambda writer: (
        f"""WITH old AS (SELECT id, stage FROM leads WHERE id = :lead_id FOR UPDATE),
lead AS (
    UPDATE leads SET stage = :to_stage, updated_at = now() FROM old
    WHERE leads.id = old.id AND old.stage = ANY(:allowed_from::text[])
    RETURNING leads.*, old.stage AS from_stage
),
{writer},
{_AUDIT_LEAD_CHANGE}
SELECT {_LEAD_COLUMNS_OF_CTE}, {_NOTIFY_CHANGE} FROM lead, change"""
    ),
)


async def move_lead(
    conn: driver.Connection,
    actor: Actor,
    lead_id: int,
    allowed_from: Iterable[LeadStage],
    to_stage: LeadStage,
) -> Lead | None:
    """Move the lead to to_stage if its stage is one of allowed_from, with the writer, the audit
    row and the notification, in one statement; None if it is missing or in another stage."""
    row = await write_as(
        conn,
        _MOVE_LEAD,
        actor,
        **_audit(actor.user_id),
        lead_id=lead_id,
        to_stage=to_stage.value,
        allowed_from=[stage.value for stage in allowed_from],
    )
    return lead_from_row(row) if row else None


_SAVE_SCORE = writer_statement(
    _IF_LEAD_CHANGED,
    lambda writer: (
        f"""WITH lead AS (
    UPDATE leads SET score_value = :score_value, score = :score, updated_at = now()
    WHERE id = :lead_id AND stage = ANY(:allowed_in::text[])
    RETURNING {LEAD_COLUMNS}
),
{writer}
SELECT * FROM lead"""
    ),
)


async def save_score(
    conn: driver.Connection,
    actor: Actor,
    lead_id: int,
    score: Score,
    allowed_in: Iterable[LeadStage],
) -> Lead | None:
    """Store the score if the lead's stage is one of allowed_in, with the writer, in one
    statement; None if it is missing or in another stage."""
    row = await write_as(
        conn,
        _SAVE_SCORE,
        actor,
        lead_id=lead_id,
        score_value=score.value,
        score=json_text(score_to_json(score)),
        allowed_in=[stage.value for stage in allowed_in],
    )
    return lead_from_row(row) if row else None


# The merge records its writer before this, in a statement of its own.
_RECORD_LEAD_STAGE_CHANGE = sql(
    f"""WITH lead AS (SELECT *, :from_stage::text AS from_stage FROM leads WHERE id = :lead_id),
{_audit_lead_change(after_writer=False)}
SELECT {_NOTIFY_CHANGE} FROM lead, change"""
)


async def record_lead_stage_change(
    conn: AsyncConnection, lead_id: int, from_stage: LeadStage, by: str, note: str | None = None
) -> None:
    """The audit row and notification of a stage change already written by another statement
    (a merge writes several columns with it); the new stage is the lead's current one."""
    await driver.execute(
        conn,
        _RECORD_LEAD_STAGE_CHANGE,
        **_audit(by, note),
        lead_id=lead_id,
        from_stage=from_stage.value,
    )


_LEAD_WITH_VERSION = f"SELECT xmin AS version, {LEAD_COLUMNS} FROM leads WHERE id = :lead_id"
_LEAD_WITH_VERSION_READ = sql(_LEAD_WITH_VERSION)
_LEAD_WITH_VERSION_LOCKED = sql(_LEAD_WITH_VERSION + " FOR UPDATE")


async def lead_with_version(
    conn: driver.Connection, lead_id: int, lock: bool = False
) -> tuple[Lead, int] | None:
    """The lead and its row version (PostgreSQL's xmin, which every update changes), for a
    write that must find the row as the rules saw it; `lock` keeps others from changing it
    until the transaction ends."""
    statement = _LEAD_WITH_VERSION_LOCKED if lock else _LEAD_WITH_VERSION_READ
    row = await driver.fetchrow(conn, statement, lead_id=lead_id)
    return (lead_from_row(row), row["version"]) if row else None


_SALE_OF_CTE = ", ".join(f"sale.{name} AS sale_{name}" for name in _SALE_COLUMN_NAMES)
_TRANSFER_LEAD = writer_statement(
    _IF_LEAD_CHANGED,
    lambda writer: (
        f"""WITH lead AS (
    UPDATE leads SET stage = :to_stage, updated_at = now()
    WHERE id = :lead_id AND xmin = :version
    RETURNING *, :from_stage::text AS from_stage
), sale AS (
    INSERT INTO sales (lead_id, stage, transferred_by)
    SELECT id, :sale_stage, :writer_id FROM lead
    RETURNING {SALE_COLUMNS}
), sale_created AS (
    INSERT INTO stage_changes (sale_id, from_stage, to_stage, by)
    SELECT id, NULL, stage, :writer_id FROM sale
),
{writer},
{_AUDIT_LEAD_CHANGE}
SELECT {_LEAD_COLUMNS_OF_CTE}, {_NOTIFY_CHANGE}, {_SALE_OF_CTE} FROM lead, change, sale"""
    ),
)


async def transfer_lead(
    conn: driver.Connection, actor: Actor, lead: Lead, version: int
) -> tuple[Lead, Sale] | None:
    """Mark the lead TRANSFERRED and create its Sale in stage NEW with its first history row,
    with the writer and the lead's audit row and notification, in one statement, if the lead's
    row is still at `version`; None if it changed since."""
    row = await write_as(
        conn,
        _TRANSFER_LEAD,
        actor,
        **_audit(actor.user_id),
        lead_id=lead.id,
        to_stage=LeadStage.TRANSFERRED.value,
        version=version,
        sale_stage=SaleStage.NEW.value,
        from_stage=lead.stage.value,
    )
    if row is None:
        return None
    sale = sale_from_row({name: row[f"sale_{name}"] for name in _SALE_COLUMN_NAMES})
    return lead_from_row(row), sale


_ADVANCE_SALE = writer_statement(
    "EXISTS (SELECT 1 FROM sale)",
    lambda writer: (
        f"""WITH old AS (SELECT id, stage FROM sales WHERE id = :sale_id FOR UPDATE),
sale AS (
    UPDATE sales SET stage = :to_stage, updated_at = now() FROM old
    WHERE sales.id = old.id AND old.stage = ANY(:allowed_from::text[])
    RETURNING {", ".join(f"sales.{name}" for name in _SALE_COLUMN_NAMES)}, old.stage AS from_stage
), change AS (
    INSERT INTO stage_changes (sale_id, from_stage, to_stage, by)
    SELECT id, from_stage, stage, :writer_id FROM sale
),
{writer}
SELECT {SALE_COLUMNS} FROM sale"""
    ),
)


async def advance_sale(
    conn: AsyncConnection,
    actor: Actor,
    sale_id: int,
    allowed_from: Iterable[SaleStage],
    to_stage: SaleStage,
) -> Sale | None:
    """Move the sale to to_stage if its stage is one of allowed_from, with the writer and the
    audit row, in one statement; None if it is missing or in another stage."""
    row = await write_as(
        conn,
        _ADVANCE_SALE,
        actor,
        sale_id=sale_id,
        to_stage=to_stage.value,
        allowed_from=[stage.value for stage in allowed_from],
    )
    return sale_from_row(row) if row else None


# --- batched reads for the DataLoaders ------------------------------------------------------

_LEADS_BY_IDS = sql(f"SELECT {LEAD_COLUMNS} FROM leads WHERE id = ANY(:ids)")
_SALES_BY_IDS = sql(f"SELECT {SALE_COLUMNS} FROM sales WHERE id = ANY(:ids)")
_SALES_BY_LEAD_IDS = sql(f"SELECT {SALE_COLUMNS} FROM sales WHERE lead_id = ANY(:ids)")
_USERS_BY_IDS = sql(f"SELECT {USER_COLUMNS} FROM users WHERE id = ANY(:ids)")
_LEAD_HISTORY = sql(
    f"""SELECT {CHANGE_COLUMNS}, {ORIGIN} AS origin FROM stage_changes
WHERE lead_id IS NOT NULL AND {ORIGIN} = ANY(:ids)
ORDER BY {ORIGIN}, id"""
)
_SALE_HISTORY = sql(
    f"SELECT {CHANGE_COLUMNS} FROM stage_changes WHERE sale_id = ANY(:ids) ORDER BY sale_id, id"
)


async def leads_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, Lead]:
    rows = await driver.fetch(conn, _LEADS_BY_IDS, ids=list(ids))
    return {row["id"]: lead_from_row(row) for row in rows}


# One lead by id, for the writes' reads. Not leads_by_ids with one id: PostgreSQL plans
# `id = ANY($1)` anew on every execution (its generic plan, costed for an array of unknown
# length, never wins over the custom one), where `id = $1` runs on a generic plan once the
# prepared statement has run five times (pg_prepared_statements counts both).
_LEAD_BY_ID = sql(f"SELECT {LEAD_COLUMNS} FROM leads WHERE id = :id")


async def lead_by_id(conn: driver.Connection, lead_id: int) -> Lead | None:
    row = await driver.fetchrow(conn, _LEAD_BY_ID, id=lead_id)
    return lead_from_row(row) if row else None


async def sales_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, Sale]:
    rows = await driver.fetch(conn, _SALES_BY_IDS, ids=list(ids))
    return {row["id"]: sale_from_row(row) for row in rows}


async def sales_by_lead_ids(conn: AsyncConnection, lead_ids: Sequence[int]) -> dict[int, Sale]:
    rows = await driver.fetch(conn, _SALES_BY_LEAD_IDS, ids=list(lead_ids))
    return {row["lead_id"]: sale_from_row(row) for row in rows}


async def users_by_ids(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, User]:
    rows = await driver.fetch(conn, _USERS_BY_IDS, ids=list(ids))
    return {row["id"]: user_from_row(row) for row in rows}


async def lead_history(
    conn: AsyncConnection, lead_ids: Sequence[int]
) -> dict[int, list[StageChange[LeadStage]]]:
    """Each lead's own changes, in order: a linear chain, wherever a merge has moved them."""
    history: dict[int, list[StageChange[LeadStage]]] = {lead_id: [] for lead_id in lead_ids}
    for row in await driver.fetch(conn, _LEAD_HISTORY, ids=list(lead_ids)):
        history[row["origin"]].append(lead_change_from_row(row))
    return history


async def sale_history(
    conn: AsyncConnection, sale_ids: Sequence[int]
) -> dict[int, list[StageChange[SaleStage]]]:
    history: dict[int, list[StageChange[SaleStage]]] = {sale_id: [] for sale_id in sale_ids}
    for row in await driver.fetch(conn, _SALE_HISTORY, ids=list(sale_ids)):
        history[row["sale_id"]].append(sale_change_from_row(row))
    return history


def is_unique_violation(error: BaseException, constraint_prefix: str) -> bool:
    """Whether `error`, from SQLAlchemy or straight from asyncpg, is a unique violation
    (SQLSTATE 23505) of a constraint whose name starts with `constraint_prefix`, as the
    driver reports them (not as the message words them)."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, asyncpg.PostgresError):
        # SQLAlchemy wraps the driver's error in its own (`orig`), raised from it.
        cause = getattr(cause, "orig", None) or cause.__cause__
    return isinstance(cause, asyncpg.UniqueViolationError) and (
        cause.constraint_name or ""
    ).startswith(constraint_prefix)


# What a unique violation raises: SQLAlchemy wraps the driver's error, the hot path does not.
UNIQUE_VIOLATIONS = (IntegrityError, asyncpg.UniqueViolationError)
