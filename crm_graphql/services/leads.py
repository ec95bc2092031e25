"""Use cases on leads. Each commits its rules' outcome, the change, its audit row and its event
together or not at all: in one transaction, or in one statement that checks, under the row
lock it takes, what the rules were checked on (the main flow's writes, see db/repository.py)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.driver import Connection
from crm_graphql.db.tables import DUPLICATE_GUARD_PREFIX
from crm_graphql.db.unit_of_work import (
    Database,
    conditional_write,
    optimistic_then_locked,
    retried_transaction,
)
from crm_graphql.domain.access import Actor, Permission, may_own_lead, require, require_merge
from crm_graphql.domain.enums import ActivityKind, LeadSource, LeadStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation
from crm_graphql.domain.lead import (
    LEAD_FIELDS_BY_NAME,
    Lead,
    Sale,
    duplicate_keys,
    merge_violations,
    merged_fields,
    normalize_fields,
    transfer_violations,
    validate_lead_fields,
)
from crm_graphql.domain.lifecycle import (
    UNLOCKED_LEAD_STAGES,
    check_lead_transition,
    lead_locked_violation,
    lead_stages_that_may_move_to,
)
from crm_graphql.domain.scoring import RECENT_ACTIVITIES, LeadEvidence, ScorerKind
from crm_graphql.domain.text import unstorable_text
from crm_graphql.scoring import Scorers
from crm_graphql.services.errors import duplicate, not_found

NOTE_MAX_LENGTH = 10_000
# An insert refused by the duplicate guard names the lead it met; if that lead went LOST in
# between, the insert is simply tried again.
CREATE_ATTEMPTS = 3
MERGED_LOST_REASON = "Merged into another lead as a duplicate."
NO_FIELDS: Mapping[str, Any] = {}
ALLOW_DUPLICATE_HINT = " Pass allowDuplicate: true to create it anyway, or merge the leads."


@dataclass(frozen=True)
class Transfer:
    lead: Lead
    sale: Sale


@dataclass(frozen=True)
class Merge:
    kept: Lead
    merged: Lead


def _is_duplicate_guard(error: Exception) -> bool:
    return repo.is_unique_violation(error, DUPLICATE_GUARD_PREFIX)


class LeadService:
    def __init__(
        self,
        engine: AsyncEngine,
        scorers: Scorers,
        transfer_threshold: float,
        default_phone_region: str | None = None,
    ) -> None:
        self.db = Database(engine)
        self.scorers = scorers
        self.transfer_threshold = transfer_threshold
        self.default_phone_region = default_phone_region

    async def create(
        self,
        actor: Actor,
        source: LeadSource,
        given: Mapping[str, Any] = NO_FIELDS,
        allow_duplicate: bool = False,
    ) -> Lead:
        """A new lead in stage NEW with the `given` fields (name in LeadFields -> value as given;
        absent is null). One whose email, phone or website domain matches an open lead is
        refused with DUPLICATE, unless allow_duplicate: then it is created outside the guard,
        marked as a duplicate of that lead."""
        require(actor, Permission.CREATE_LEAD)
        fields = validate_lead_fields(given, self.default_phone_region)
        keys = fields.duplicate_keys
        if not keys:
            # Nothing the duplicate guard could refuse: the one statement is the use case, and
            # alone it is atomic, so it runs without BEGIN and COMMIT round trips.
            async with self.db.driver_statements() as conn:
                lead = await repo.create_lead(conn, actor, source, fields)
            if lead is None:
                raise RuntimeError("an insert outside the duplicate guard was refused")
            return lead

        async def create_or_refuse(conn: AsyncConnection) -> Lead | None:
            lead = await repo.create_lead(conn, actor, source, fields)
            if lead is not None:
                return lead
            existing = await repo.find_duplicate(conn, keys)
            if existing is None:
                return None  # the lead it met was closed meanwhile: try again
            if not allow_duplicate:
                raise duplicate(existing.field, existing.lead_id, ALLOW_DUPLICATE_HINT)
            lead = await repo.create_lead(conn, actor, source, fields, existing.lead_id)
            if lead is None:  # only the guard's indexes can refuse; it exempts this row
                raise RuntimeError("an insert outside the duplicate guard was refused")
            return lead

        return await retried_transaction(self.db, CREATE_ATTEMPTS, create_or_refuse)

    async def update(self, actor: Actor, lead_id: int, changes: Mapping[str, Any]) -> Lead:
        """Set the fields in `changes` (name in LeadFields -> value as given; None clears it),
        leaving the others as they are."""
        require(actor, Permission.UPDATE_LEAD)
        stored = normalize_fields(changes, self.default_phone_region)
        values = {
            column: value
            for name, given in stored.items()
            for column, value in LEAD_FIELDS_BY_NAME[name].columns(given).items()
        }
        try:
            async with self.db.locked_lead(actor, lead_id) as (conn, lead):
                lead = _open_to_change(lead)
                if not values:
                    return lead
                return await repo.update_lead(conn, lead_id, **values)
        except repo.UNIQUE_VIOLATIONS as error:
            if not _is_duplicate_guard(error):
                raise
            raise await self._duplicate_of(duplicate_keys(stored), lead_id) from error

    async def merge(self, actor: Actor, keep_id: int, merge_id: int) -> Merge:
        """Fold a duplicate into the lead that stays: its activities and history move over,
        the kept lead's empty fields are filled from it, and it ends LOST, pointing to the kept
        lead. One transaction; both rows are locked in id order. An admin merges any leads, a
        manager only leads they own both of."""
        require(actor, Permission.MERGE_LEADS)
        if keep_id == merge_id:
            raise RuleViolation(
                Violation(
                    ErrorCode.INVALID_INPUT, "A lead cannot be merged into itself.", ("merge_id",)
                )
            )
        try:
            async with self.db.locked_leads((keep_id, merge_id)) as (conn, locked):
                keep, other = locked.get(keep_id), locked.get(merge_id)
                if keep is None:
                    raise not_found("lead", "keep_id")
                if other is None:
                    raise not_found("lead", "merge_id")
                # Owners are read under the locks, so a concurrent assignLead cannot slip by.
                require_merge(actor, (keep.owner_id, other.owner_id))
                violations = merge_violations(keep, other)
                if violations:
                    raise RuleViolation(*violations)
                await repo.record_user(conn, actor)
                await repo.move_lead_history(conn, merge_id, keep_id)
                await repo.move_activities(conn, merge_id, keep_id)
                # LOST first: it takes the merged lead out of the duplicate guard, so its email
                # can then be copied onto the kept lead.
                merged = await repo.update_lead(
                    conn,
                    merge_id,
                    stage=LeadStage.LOST.value,
                    merged_into=keep_id,
                    lost_reason=MERGED_LOST_REASON,
                    activity_count=0,
                )
                filled = merged_fields(keep, other)
                kept = await repo.update_lead(
                    conn,
                    keep_id,
                    activity_count=keep.activity_count + other.activity_count,
                    # A duplicate that absorbs its original is no longer a duplicate: it comes
                    # under the guard, which now protects the values it holds.
                    duplicate_of=None if keep.duplicate_of == merge_id else keep.duplicate_of,
                    **filled.columns(),
                )
                # The audit rows last: the lock that orders their ids is then taken after every
                # row and key this merge writes, as createLead and the moves take it.
                await repo.record_lead_stage_change(
                    conn, merge_id, other.stage, actor.user_id, note=MERGED_LOST_REASON
                )
                await repo.record_lead_merge(
                    conn,
                    keep_id,
                    keep.stage,
                    actor.user_id,
                    "A duplicate lead was merged into this one.",
                )
                return Merge(kept=kept, merged=merged)
        except repo.UNIQUE_VIOLATIONS as error:
            if not _is_duplicate_guard(error):
                raise
            # A field copied from the merged lead is held by a third open lead (a write after
            # both leads were found raised it).
            assert keep is not None
            assert other is not None
            keys = merged_fields(keep, other).duplicate_keys
            raise await self._duplicate_of(keys, keep_id) from error

    async def _duplicate_of(self, keys: dict[str, str], lead_id: int) -> RuleViolation:
        async with self.db.single_statement() as conn:
            existing = await repo.find_duplicate(conn, keys, exclude_id=lead_id)
        if existing is None:  # the other lead was closed meanwhile
            return RuleViolation(
                Violation(
                    ErrorCode.DUPLICATE,
                    "Another open lead held one of these values; try again.",
                )
            )
        return duplicate(existing.field, existing.lead_id)

    async def log_activity(
        self, actor: Actor, lead_id: int, kind: ActivityKind, note: str | None
    ) -> Lead:
        require(actor, Permission.LOG_ACTIVITY)
        note = _validate_note(note)
        async with self.db.locked_lead(actor, lead_id) as (conn, lead):
            lead = _open_to_change(lead)
            return await repo.add_activity(conn, lead_id, kind, note)

    async def analyze(
        self, actor: Actor, lead_id: int, scorer_kind: ScorerKind | None = None
    ) -> Lead:
        """Score with the named scorer (an admin's choice), or the default (CRM_SCORER)."""
        require(actor, Permission.ANALYZE_LEAD)
        if scorer_kind is not None:
            require(actor, Permission.CHOOSE_SCORER)
        scorer = self.scorers.get(scorer_kind)
        # Score holding no lock and no connection: a remote scorer may be slow. The score
        # records the inputs it saw, so a change made meanwhile shows up as a stale score.
        current, evidence = await self._scoring_inputs(lead_id, scorer.needs_evidence)
        score = await scorer.score(current.snapshot, datetime.now(UTC), evidence)
        async with self.db.driver_statements() as raw:

            async def why_not() -> Violation | None:
                locked = (await self._current(raw, lead_id)).locked
                return lead_locked_violation() if locked else None

            return await conditional_write(
                "lead",
                partial(repo.save_score, raw, actor, lead_id, score, UNLOCKED_LEAD_STAGES),
                why_not,
            )

    async def _scoring_inputs(
        self, lead_id: int, with_evidence: bool
    ) -> tuple[Lead, LeadEvidence | None]:
        """The lead, refused if locked, and its activities for a scorer that reads them. Without
        them the read is the driver's one statement, on its own pool."""
        if not with_evidence:
            async with self.db.driver_statements() as raw:
                return _open_to_change(await repo.lead_by_id(raw, lead_id)), None
        async with self.db.single_statement() as conn:
            current = _open_to_change(await repo.lead_by_id(conn, lead_id))
            return current, await repo.lead_evidence(conn, current, RECENT_ACTIVITIES)

    async def advance_stage(self, actor: Actor, lead_id: int, to: LeadStage) -> Lead:
        require(actor, Permission.ADVANCE_LEAD_STAGE)
        allowed_from = lead_stages_that_may_move_to(to)
        async with self.db.driver_statements() as conn:

            async def why_not() -> Violation | None:
                return check_lead_transition((await self._current(conn, lead_id)).stage, to)

            return await conditional_write(
                "lead",
                partial(repo.move_lead, conn, actor, lead_id, allowed_from, to)
                if allowed_from
                else None,
                why_not,
            )

    async def transfer_to_sales(self, actor: Actor, lead_id: int) -> Transfer:
        require(actor, Permission.TRANSFER_LEAD)
        try:
            return await optimistic_then_locked(
                self.db, "lead", partial(self._transfer, actor=actor, lead_id=lead_id)
            )
        except repo.UNIQUE_VIOLATIONS as error:
            # The version check serialises transfers; the unique constraint is the last line.
            if repo.is_unique_violation(error, "uq_sales_lead_id"):
                raise RuleViolation(lead_locked_violation()) from error
            raise

    async def _transfer(
        self, conn: Connection, lock: bool, *, actor: Actor, lead_id: int
    ) -> Transfer | None:
        found = await repo.lead_with_version(conn, lead_id, lock=lock)
        if found is None:
            raise not_found("lead", "lead_id")
        lead, version = found
        violations = transfer_violations(lead, self.transfer_threshold)
        if violations:
            raise RuleViolation(*violations)
        transferred = await repo.transfer_lead(conn, actor, lead, version)
        return Transfer(*transferred) if transferred else None

    async def assign(self, actor: Actor, lead_id: int, owner_id: str) -> Lead:
        """Make another known user the lead's owner."""
        require(actor, Permission.ASSIGN_LEAD)
        async with self.db.locked_lead(actor, lead_id) as (conn, lead):
            lead = _open_to_change(lead)
            owner = (await repo.users_by_ids(conn, [owner_id])).get(owner_id)
            if owner is None:
                raise RuleViolation(
                    Violation(
                        ErrorCode.NOT_FOUND,
                        "No user with this ID; a person becomes known with their first change.",
                        ("owner_id",),
                    )
                )
            if not may_own_lead(owner, lead.stage):
                raise RuleViolation(
                    Violation(
                        ErrorCode.OWNER_CANNOT_SEE_LEAD,
                        f"{owner.id} has the role {owner.role}, which cannot see a lead in "
                        f"stage {lead.stage}: sales sees a lead once it is transferred.",
                        ("owner_id",),
                    )
                )
            return await repo.update_lead(conn, lead_id, owner_id=owner_id)

    async def _current(self, conn: Connection, lead_id: int) -> Lead:
        """The lead as it is now, to say why a conditional write found it otherwise."""
        lead = await repo.lead_by_id(conn, lead_id)
        if lead is None:
            raise not_found("lead", "lead_id")
        return lead


def _open_to_change(lead: Lead | None) -> Lead:
    """The locked lead a change may go to: it exists and is not locked by a transfer."""
    if lead is None:
        raise not_found("lead", "lead_id")
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
