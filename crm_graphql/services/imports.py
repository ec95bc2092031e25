"""The bulk import's use cases (`crm-graphql import`, importer.py): the importer reads and
validates the file; writing its batches of valid leads goes through here."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.driver import unit_of_work
from crm_graphql.db.unit_of_work import Database
from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.errors import FIELD, ErrorCode, RuleViolation, Violation
from crm_graphql.domain.lead import DUPLICATE_KEY_FIELDS, LeadField, LeadFields

# Who `createdBy` and history `by` name for imported leads. The role is the one that creates
# leads; no token ever needs to carry this sub.
IMPORT_ACTOR = Actor(user_id="crm-graphql-import", name="CSV import", role=Role.MANAGER)


@dataclass(frozen=True)
class BatchOutcome:
    created: dict[str, int]  # import key -> the new lead's id
    imported_before: set[str]  # keys of rows an earlier run imported
    # (field, value) -> the open lead holding it, for the other rows the guard skipped
    held: dict[tuple[str, str], int]


class LeadImport:
    """One run of the import, on one connection: each batch is one transaction."""

    def __init__(self, conn: AsyncConnection, owner_id: str, dry_run: bool) -> None:
        self.conn = conn
        self.owner_id = owner_id
        self.dry_run = dry_run

    async def prepare(self) -> None:
        """Record the import's system user (attribution references it) and check the owner."""
        async with unit_of_work(self.conn):
            await repo.record_user(self.conn, IMPORT_ACTOR)
            if not await repo.users_by_ids(self.conn, [self.owner_id]):
                raise RuleViolation(
                    Violation(
                        ErrorCode.NOT_FOUND,
                        f"{FIELD} {self.owner_id!r} is not a known user; a person becomes known "
                        "with their first change through the API.",
                        ("owner",),
                    )
                )

    async def insert(self, rows: Sequence[dict[str, Any]]) -> BatchOutcome:
        """Insert the leads (`leads` rows with their import keys) in one transaction, with
        their audit rows and one notification; rows imported before or held by the duplicate
        guard are skipped, and the outcome says which is which."""
        conn = self.conn
        async with unit_of_work(conn):
            created = await repo.insert_imported_leads(
                conn, rows, IMPORT_ACTOR.user_id, self.owner_id
            )
            if created:
                # A dry run holds its locks until its final rollback; the lock that orders
                # audit ids would stall every audited write for the whole run, and what it
                # writes never commits, so it needs no order.
                await repo.record_lead_creations(
                    conn, list(created.values()), IMPORT_ACTOR.user_id, ordered=not self.dry_run
                )
            skipped = [row for row in rows if row["import_key"] not in created]
            if not skipped:
                return BatchOutcome(created, set(), {})
            imported_before = await repo.leads_by_import_keys(
                conn, [row["import_key"] for row in skipped]
            )
            duplicates = [row for row in skipped if row["import_key"] not in imported_before]
            held = await repo.open_leads_by_duplicate_keys(
                conn,
                {
                    f.name: [value for row in duplicates if (value := duplicate_key(row, f))]
                    for f in DUPLICATE_KEY_FIELDS
                },
            )
        return BatchOutcome(created, set(imported_before), held)


def imported_lead_row(source: LeadSource, fields: LeadFields) -> dict[str, Any]:
    """The `leads` row of a valid CSV row, with its import key."""
    return {**repo.new_lead_values(source, fields), "import_key": fields.import_key}


def duplicate_key(row: dict[str, Any], lead_field: LeadField) -> str | None:
    """The value of a `leads` row the duplicate guard compares for this field."""
    key: str | None = row[lead_field.spec.duplicate_column or lead_field.name]
    return key


class ImportService:
    def __init__(self, engine: AsyncEngine) -> None:
        self.db = Database(engine)

    @asynccontextmanager
    async def run(self, owner_id: str | None, dry_run: bool) -> AsyncIterator[LeadImport]:
        """A run owned by `owner_id` (a known user), or by IMPORT_ACTOR. A dry run is the real
        run in one transaction rolled back at the end, so it reports exactly what the import
        would do, duplicates across batches included; each batch is then a savepoint in it."""
        mode = self.db.rehearsal() if dry_run else self.db.single_statement()
        async with mode as conn:
            run = LeadImport(conn, owner_id or IMPORT_ACTOR.user_id, dry_run)
            await run.prepare()
            yield run
