"""Use cases on leads. Each is one transaction: rules, the change, its audit row and its
event commit together or not at all."""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.domain.enums import ActivityKind, LeadSource, LeadStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation
from crm_graphql.domain.lead import (
    Lead,
    Sale,
    normalize_business_domain,
    transfer_violations,
)
from crm_graphql.domain.lifecycle import check_lead_transition, lead_locked_violation
from crm_graphql.domain.scoring import LeadScorer
from crm_graphql.domain.text import unstorable_text
from crm_graphql.services.errors import not_found

NOTE_MAX_LENGTH = 10_000


class _Unchanged(Enum):
    UNCHANGED = "UNCHANGED"


UNCHANGED = _Unchanged.UNCHANGED


@dataclass(frozen=True)
class LeadChanges:
    """The fields an update sets; UNCHANGED leaves a field as it is, None clears it."""

    business_domain: str | _Unchanged | None = UNCHANGED


@dataclass(frozen=True)
class Transfer:
    lead: Lead
    sale: Sale


class LeadService:
    def __init__(self, engine: AsyncEngine, scorer: LeadScorer, transfer_threshold: float) -> None:
        self.engine = engine
        self.scorer = scorer
        self.transfer_threshold = transfer_threshold

    async def create(self, source: LeadSource, business_domain: str | None) -> Lead:
        business_domain = normalize_business_domain(business_domain)
        async with self.engine.begin() as conn:
            lead = await repo.insert_lead(conn, source, business_domain)
            await repo.record_lead_stage_change(conn, lead.id, None, lead.stage)
        return lead

    async def update(self, lead_id: int, changes: LeadChanges) -> Lead:
        values: dict[str, Any] = {}
        if changes.business_domain is not UNCHANGED:
            values["business_domain"] = normalize_business_domain(changes.business_domain)
        async with self.engine.begin() as conn:
            lead = await self._lock_unlocked(conn, lead_id)
            if not values:
                return lead
            return await repo.update_lead(conn, lead_id, **values)

    async def log_activity(self, lead_id: int, kind: ActivityKind, note: str | None) -> Lead:
        note = _validate_note(note)
        async with self.engine.begin() as conn:
            await self._lock_unlocked(conn, lead_id)
            await repo.insert_activity(conn, lead_id, kind, note)
            return await repo.increment_activity_count(conn, lead_id)

    async def analyze(self, lead_id: int) -> Lead:
        # Score outside the transaction: a remote scorer must not hold the row lock. The score
        # records the inputs it saw, so a change made meanwhile shows up as a stale score.
        async with self.engine.connect() as conn:
            current = (await repo.leads_by_ids(conn, [lead_id])).get(lead_id)
        if current is None:
            raise not_found("lead", "leadId")
        if current.locked:
            raise RuleViolation(lead_locked_violation())
        score = await self.scorer.score(current.snapshot, datetime.now(UTC))
        async with self.engine.begin() as conn:
            await self._lock_unlocked(conn, lead_id)
            return await repo.update_lead(conn, lead_id, **repo.score_values(score))

    async def advance_stage(self, lead_id: int, to: LeadStage) -> Lead:
        async with self.engine.begin() as conn:
            lead = await self._lock(conn, lead_id)
            violation = check_lead_transition(lead.stage, to)
            if violation:
                raise RuleViolation(violation)
            updated = await repo.update_lead(conn, lead_id, stage=to.value)
            await repo.record_lead_stage_change(conn, lead_id, lead.stage, to)
            return updated

    async def transfer_to_sales(self, lead_id: int) -> Transfer:
        try:
            async with self.engine.begin() as conn:
                lead = await self._lock(conn, lead_id)
                violations = transfer_violations(lead, self.transfer_threshold)
                if violations:
                    raise RuleViolation(*violations)
                updated = await repo.update_lead(conn, lead_id, stage=LeadStage.TRANSFERRED.value)
                sale = await repo.insert_sale(conn, lead_id)
                await repo.record_lead_stage_change(
                    conn, lead_id, lead.stage, LeadStage.TRANSFERRED
                )
                await repo.record_sale_stage_change(conn, sale.id, None, sale.stage)
                return Transfer(updated, sale)
        except IntegrityError as error:
            # The row lock serialises transfers; the unique constraint is the last line.
            if "uq_sales_lead_id" in str(error.orig):
                raise RuleViolation(lead_locked_violation()) from error
            raise

    async def _lock(self, conn: AsyncConnection, lead_id: int) -> Lead:
        lead = await repo.lock_lead(conn, lead_id)
        if lead is None:
            raise not_found("lead", "leadId")
        return lead

    async def _lock_unlocked(self, conn: AsyncConnection, lead_id: int) -> Lead:
        lead = await self._lock(conn, lead_id)
        if lead.locked:
            raise RuleViolation(lead_locked_violation())
        return lead


def _validate_note(note: str | None) -> str | None:
    if note is None:
        return None
    violation = unstorable_text(note, "note")
    if violation:
        raise RuleViolation(violation)
    if len(note) > NOTE_MAX_LENGTH:
        raise RuleViolation(
            Violation(
                ErrorCode.INVALID_INPUT,
                f"note must be at most {NOTE_MAX_LENGTH} characters.",
                ("note",),
            )
        )
    return note
