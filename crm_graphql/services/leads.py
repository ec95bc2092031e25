"""Use cases on leads. Each is one transaction: rules, the change, its audit row and its
event commit together or not at all."""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.domain.access import Actor, Permission, require
from crm_graphql.domain.enums import ActivityKind, LeadSource, LeadStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation
from crm_graphql.domain.lead import (
    Lead,
    Sale,
    normalize_business_domain,
    transfer_violations,
)
from crm_graphql.domain.lifecycle import check_lead_transition, lead_locked_violation
from crm_graphql.domain.scoring import RECENT_ACTIVITIES, ScorerKind
from crm_graphql.domain.text import unstorable_text
from crm_graphql.scoring import Scorers
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
    def __init__(self, engine: AsyncEngine, scorers: Scorers, transfer_threshold: float) -> None:
        self.engine = engine
        self.scorers = scorers
        self.transfer_threshold = transfer_threshold

    async def create(self, actor: Actor, source: LeadSource, business_domain: str | None) -> Lead:
        require(actor, Permission.CREATE_LEAD)
        business_domain = normalize_business_domain(business_domain)
        async with self.engine.begin() as conn:
            await repo.record_user(conn, actor)
            lead = await repo.insert_lead(conn, source, business_domain, actor.user_id)
            await repo.record_lead_stage_change(conn, lead.id, None, lead.stage, actor.user_id)
        return lead

    async def update(self, actor: Actor, lead_id: int, changes: LeadChanges) -> Lead:
        require(actor, Permission.UPDATE_LEAD)
        values: dict[str, Any] = {}
        if changes.business_domain is not UNCHANGED:
            values["business_domain"] = normalize_business_domain(changes.business_domain)
        async with self.engine.begin() as conn:
            lead = await self._lock_unlocked(conn, lead_id)
            if not values:
                return lead
            await repo.record_user(conn, actor)
            return await repo.update_lead(conn, lead_id, **values)

    async def log_activity(
        self, actor: Actor, lead_id: int, kind: ActivityKind, note: str | None
    ) -> Lead:
        require(actor, Permission.LOG_ACTIVITY)
        note = _validate_note(note)
        async with self.engine.begin() as conn:
            await self._lock_unlocked(conn, lead_id)
            await repo.record_user(conn, actor)
            await repo.insert_activity(conn, lead_id, kind, note)
            return await repo.increment_activity_count(conn, lead_id)

    async def analyze(
        self, actor: Actor, lead_id: int, scorer_kind: ScorerKind | None = None
    ) -> Lead:
        """Score with the named scorer (an admin's choice), or the default (CRM_SCORER)."""
        require(actor, Permission.ANALYZE_LEAD)
        if scorer_kind is not None:
            require(actor, Permission.CHOOSE_SCORER)
        scorer = self.scorers.get(scorer_kind)
        # Score outside the transaction: a remote scorer must not hold the row lock. The score
        # records the inputs it saw, so a change made meanwhile shows up as a stale score.
        async with self.engine.connect() as conn:
            current = (await repo.leads_by_ids(conn, [lead_id])).get(lead_id)
            if current is None:
                raise not_found("lead", "leadId")
            if current.locked:
                raise RuleViolation(lead_locked_violation())
            evidence = (
                await repo.lead_evidence(conn, current, RECENT_ACTIVITIES)
                if scorer.needs_evidence
                else None
            )
        score = await scorer.score(current.snapshot, datetime.now(UTC), evidence)
        async with self.engine.begin() as conn:
            await self._lock_unlocked(conn, lead_id)
            await repo.record_user(conn, actor)
            return await repo.update_lead(conn, lead_id, **repo.score_values(score))

    async def advance_stage(self, actor: Actor, lead_id: int, to: LeadStage) -> Lead:
        require(actor, Permission.ADVANCE_LEAD_STAGE)
        async with self.engine.begin() as conn:
            lead = await self._lock(conn, lead_id)
            violation = check_lead_transition(lead.stage, to)
            if violation:
                raise RuleViolation(violation)
            await repo.record_user(conn, actor)
            updated = await repo.update_lead(conn, lead_id, stage=to.value)
            await repo.record_lead_stage_change(conn, lead_id, lead.stage, to, actor.user_id)
            return updated

    async def transfer_to_sales(self, actor: Actor, lead_id: int) -> Transfer:
        require(actor, Permission.TRANSFER_LEAD)
        try:
            async with self.engine.begin() as conn:
                lead = await self._lock(conn, lead_id)
                violations = transfer_violations(lead, self.transfer_threshold)
                if violations:
                    raise RuleViolation(*violations)
                await repo.record_user(conn, actor)
                updated = await repo.update_lead(conn, lead_id, stage=LeadStage.TRANSFERRED.value)
                sale = await repo.insert_sale(conn, lead_id, actor.user_id)
                await repo.record_lead_stage_change(
                    conn, lead_id, lead.stage, LeadStage.TRANSFERRED, actor.user_id
                )
                await repo.record_sale_stage_change(conn, sale.id, None, sale.stage, actor.user_id)
                return Transfer(updated, sale)
        except IntegrityError as error:
            # The row lock serialises transfers; the unique constraint is the last line.
            if "uq_sales_lead_id" in str(error.orig):
                raise RuleViolation(lead_locked_violation()) from error
            raise

    async def assign(self, actor: Actor, lead_id: int, owner_id: str) -> Lead:
        """Make another known user the lead's owner."""
        require(actor, Permission.ASSIGN_LEAD)
        async with self.engine.begin() as conn:
            await self._lock_unlocked(conn, lead_id)
            if owner_id not in await repo.users_by_ids(conn, [owner_id]):
                raise RuleViolation(
                    Violation(
                        ErrorCode.NOT_FOUND,
                        "No user with this ID; a person becomes known with their first change.",
                        ("ownerId",),
                    )
                )
            await repo.record_user(conn, actor)
            return await repo.update_lead(conn, lead_id, owner_id=owner_id)

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
