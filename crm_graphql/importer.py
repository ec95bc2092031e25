"""Bulk import of leads from CSV (`crm-graphql import`).

Every row passes createLead's own validation. Valid rows are inserted in batches, one
transaction per batch, by one multi-row INSERT ... ON CONFLICT DO NOTHING: the duplicate guard's
unique indexes skip rows that match an open lead, and the unique import key (a hash of the
normalised row) skips rows imported before, so an interrupted import can simply be run again.

Attribution: the import itself is the author. Every imported lead and its (none -> NEW) history
row are by IMPORT_ACTOR, a system user; the lead's owner is `--owner` (a known user) or, without
it, IMPORT_ACTOR too, until an admin assigns the lead.
"""

import asyncio
import csv
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.api.ids import encode_global_id
from crm_graphql.api.types import for_client
from crm_graphql.db.engine import create_engine
from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.errors import RuleViolation, invalid_input, run_checks
from crm_graphql.domain.lead import (
    DUPLICATE_KEY_FIELDS,
    LEAD_FIELDS,
    LeadFields,
    validate_lead_fields,
)
from crm_graphql.services.imports import (
    IMPORT_ACTOR,
    ImportService,
    LeadImport,
    duplicate_key,
    imported_lead_row,
)
from crm_graphql.settings import get_settings

DEFAULT_BATCH_SIZE = 1_000
# Header names are matched ignoring case, spaces, hyphens and underscores: header key -> field.
COLUMNS = {"source": "source", **{f.name.replace("_", ""): f.name for f in LEAD_FIELDS}}


# What makes a spreadsheet read a cell as a formula (OWASP, CSV injection): a cell the
# importer writes that starts with one of these gets a leading quote, which spreadsheets show
# as text; reading a file, the importer takes that quote off again, so a rejected-rows file
# can be corrected and imported as it is.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def unquoted(cell: str) -> str:
    """A cell as it was before spreadsheet_safe quoted it."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def terminal_safe(text: str) -> str:
    """Text from the file as the terminal should print it: control and format characters
    (escape sequences, carriage returns, bidirectional overrides) escaped as \\x1b, \\u202e."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class ImportFileError(Exception):
    """The import cannot start (no usable header, an unknown owner); nothing was written."""


def _column_key(header: str) -> str:
    return re.sub(r"[\s_-]", "", header.strip().lower())


@dataclass(frozen=True)
class Layout:
    """Which CSV column feeds which lead field, and the columns nobody reads."""

    header: list[str]
    fields: dict[str, int]  # lead field -> column index
    unknown: list[str]

    @classmethod
    def from_header(cls, header: list[str]) -> "Layout":
        fields: dict[str, int] = {}
        unknown: list[str] = []
        for index, name in enumerate(header):
            lead_field = COLUMNS.get(_column_key(name))
            if lead_field is None:
                unknown.append(name)
            elif lead_field in fields:
                raise ImportFileError(f"Two columns map to {lead_field}: use one.")
            else:
                fields[lead_field] = index
        if not fields:
            known = ", ".join(COLUMNS.values())
            raise ImportFileError(f"The header names none of the known columns ({known}).")
        return cls(header, fields, unknown)

    def value(self, row: list[str], lead_field: str) -> str | None:
        """The cell, or None when the column is absent or the cell is blank."""
        index = self.fields.get(lead_field)
        if index is None or index >= len(row) or not row[index].strip():
            return None
        return unquoted(row[index])


@dataclass(frozen=True)
class Rejection:
    line: int
    row: list[str]
    reason: str
    duplicate: bool = False  # valid, but an open lead already holds its email, phone or site


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    already_imported: int = 0  # by an earlier run, or the same row earlier in this file
    rejected: list[Rejection] = field(default_factory=list)  # invalid rows and duplicates
    unknown_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return sum(r.duplicate for r in self.rejected)


@dataclass
class Chunk:
    rows: int = 0
    valid: list["ValidRow"] = field(default_factory=list)
    invalid: list[Rejection] = field(default_factory=list)
    repeats: int = 0  # rows identical to an earlier row of the file


@dataclass(frozen=True)
class ValidRow:
    line: int
    row: list[str]
    values: dict[str, Any]  # the leads row to insert, import key included

    @property
    def import_key(self) -> str:
        key: str = self.values["import_key"]
        return key


def parse_row(
    layout: Layout, row: list[str], default_source: LeadSource, phone_region: str | None
) -> dict[str, Any]:
    """The leads row for a CSV row, by createLead's rules; RuleViolation when it breaks one."""
    checked = run_checks(
        {
            "source": lambda: _source(layout.value(row, "source"), default_source),
            "fields": lambda: validate_lead_fields(
                {f.name: layout.value(row, f.name) for f in LEAD_FIELDS}, phone_region
            ),
        }
    )
    fields: LeadFields = checked["fields"]  # type: ignore[assignment]
    source: LeadSource = checked["source"]  # type: ignore[assignment]
    return imported_lead_row(source, fields)


def _source(value: str | None, default: LeadSource) -> LeadSource:
    if value is None:
        return default
    try:
        return LeadSource(value.strip().upper())
    except ValueError:
        allowed = ", ".join(LeadSource)
        raise invalid_input("source", f"source {value!r} is not one of {allowed}.") from None


def _reason(violation: RuleViolation, field: str | None = None) -> str:
    """The rules a row broke, naming fields as the API does (the CSV's headers are those names
    in any case and spacing), or as `field`."""
    return " ".join(
        (v.named(lambda _: field) if field else for_client(v)).message for v in violation.violations
    )


class Importer:
    def __init__(
        self,
        engine: AsyncEngine,
        source: LeadSource = LeadSource.SCANNER,
        phone_region: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
        owner_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.owner_id = owner_id or IMPORT_ACTOR.user_id
        self.source = source
        self.phone_region = phone_region
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.progress = progress
        self.created_lines: dict[int, int] = {}  # lead id -> the line it was created from

    async def run(self, stream: TextIO) -> ImportReport:
        started = time.perf_counter()
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise ImportFileError("The file is empty; it needs a header row.")
        layout = Layout.from_header(header)
        report = ImportReport(unknown_columns=layout.unknown)
        chunks = self._chunks(reader, layout)
        try:
            async with ImportService(self.engine).run(self.owner_id, self.dry_run) as run:
                await self._import_chunks(run, chunks, report)
        except RuleViolation as violation:  # the owner is not a known user
            raise ImportFileError(_reason(violation, "--owner")) from None
        report.seconds = time.perf_counter() - started
        return report

    async def _import_chunks(
        self, run: LeadImport, chunks: Iterator["Chunk"], report: ImportReport
    ) -> None:
        # Validation is CPU work in this process and the insert is work in PostgreSQL: the
        # next chunk is validated in a thread while the current one is written.
        upcoming = asyncio.create_task(asyncio.to_thread(next, chunks, None))
        while (chunk := await upcoming) is not None:
            upcoming = asyncio.create_task(asyncio.to_thread(next, chunks, None))
            report.rows += chunk.rows
            report.already_imported += chunk.repeats
            report.rejected.extend(chunk.invalid)
            if chunk.valid:
                await self._import_batch(run, chunk.valid, report)
            if self.progress:
                self.progress(report.rows)

    def _chunks(self, reader: Iterator[list[str]], layout: Layout) -> Iterator["Chunk"]:
        """The file, validated, in chunks of up to batch_size valid rows. Runs in a worker
        thread: it touches nothing but its own state."""
        chunk = Chunk()
        seen: set[str] = set()
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank lines are not rows
            chunk.rows += 1
            line = reader.line_num  # type: ignore[attr-defined]
            try:
                values = parse_row(layout, row, self.source, self.phone_region)
            except RuleViolation as violation:
                chunk.invalid.append(Rejection(line, row, _reason(violation)))
                continue
            if values["import_key"] in seen:
                chunk.repeats += 1
                continue
            seen.add(values["import_key"])
            chunk.valid.append(ValidRow(line, row, values))
            if len(chunk.valid) >= self.batch_size:
                yield chunk
                chunk = Chunk()
        if chunk.rows:
            yield chunk

    async def _import_batch(
        self, run: LeadImport, batch: list[ValidRow], report: ImportReport
    ) -> None:
        outcome = await run.insert([r.values for r in batch])
        created = outcome.created
        self.created_lines.update(
            (created[r.import_key], r.line) for r in batch if r.import_key in created
        )
        skipped = [r for r in batch if r.import_key not in created]
        duplicates = [r for r in skipped if r.import_key not in outcome.imported_before]
        report.created += len(created)
        report.already_imported += len(skipped) - len(duplicates)
        report.rejected.extend(
            Rejection(row.line, row.row, self._duplicate_reason(row, outcome.held), duplicate=True)
            for row in duplicates
        )

    def _duplicate_reason(self, row: ValidRow, held: dict[tuple[str, str], int]) -> str:
        for f in DUPLICATE_KEY_FIELDS:
            lead_field, value = f.name, duplicate_key(row.values, f)
            lead_id = held.get((lead_field, value)) if value else None
            if lead_id is None:
                continue
            line = self.created_lines.get(lead_id)
            if line is None:
                return f"duplicate: lead {encode_global_id('Lead', lead_id)} has this {lead_field}."
            if self.dry_run:  # that lead is not kept, so only its line can be named
                return f"duplicate: line {line} has this {lead_field}."
            lead = encode_global_id("Lead", lead_id)
            return f"duplicate: line {line} (now lead {lead}) has this {lead_field}."
        return "duplicate: an open lead held one of its values during the import."


def write_rejected(path: Path, header: list[str], rejected: list[Rejection]) -> None:
    """The rejected rows as they were in the file, plus `line` and `reason` columns."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([spreadsheet_safe(name) for name in [*header, "line", "reason"]])
        for rejection in sorted(rejected, key=lambda r: r.line):
            cells = rejection.row + [""] * (len(header) - len(rejection.row))
            writer.writerow(
                [*map(spreadsheet_safe, cells), rejection.line, spreadsheet_safe(rejection.reason)]
            )


def rejected_path_for(source: Path) -> Path:
    return source.with_name(f"{source.stem}.rejected.csv")


def count_rows(path: Path) -> int:
    """Rows after the header, for the progress bar (a quick pass over the file)."""
    with path.open(newline="", encoding="utf-8-sig") as stream:
        return max(sum(1 for _ in csv.reader(stream)) - 1, 0)


class ProgressBar:
    """`[#####.....] 45,000/100,000 rows  12,345 rows/s` on stderr, redrawn in place."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.started = time.perf_counter()

    def __call__(self, done: int) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        filled = min(self.WIDTH, self.WIDTH * done // self.total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done:,}/{self.total:,} rows  {done / elapsed:,.0f} rows/s")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def summary(report: ImportReport, dry_run: bool, rejected_file: Path | None) -> str:
    rate = report.rows / report.seconds if report.seconds else 0.0
    verb = "would be created" if dry_run else "created"
    lines = [
        f"{'Dry run: nothing was written. ' if dry_run else ''}"
        f"{report.rows:,} rows read in {report.seconds:.1f} s ({rate:,.0f} rows/s)",
        f"  {report.created:,} leads {verb}",
        f"  {report.already_imported:,} skipped as already imported",
        f"  {report.duplicates:,} skipped as duplicates of open leads",
        f"  {len(report.rejected) - report.duplicates:,} rejected as invalid",
    ]
    if report.unknown_columns:
        unknown = ", ".join(map(terminal_safe, report.unknown_columns))
        lines.append(f"Unknown columns, ignored: {unknown}")
    if rejected_file:
        lines.append(f"Rejected rows with their reasons: {rejected_file}")
    return "\n".join(lines)


def run_import(
    url: str,
    path: Path,
    *,
    source: LeadSource,
    dry_run: bool,
    rejected_file: Path | None,
    batch_size: int,
    phone_region: str | None,
    owner: str | None = None,
) -> int:
    """`crm-graphql import`: the exit status; the summary goes to stdout, errors to stderr."""
    if not path.is_file():
        print(f"No such file: {path}", file=sys.stderr)
        return 2
    bar = ProgressBar(count_rows(path)) if sys.stderr.isatty() else None

    async def import_file(stream: TextIO) -> ImportReport:
        engine = create_engine(get_settings(), url)
        try:
            importer = Importer(
                engine, source, phone_region, batch_size, dry_run, progress=bar, owner_id=owner
            )
            return await importer.run(stream)
        finally:
            await engine.dispose()

    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            header = next(csv.reader(stream), [])
            stream.seek(0)
            report = asyncio.run(import_file(stream))
    except (ImportFileError, UnicodeDecodeError, csv.Error) as error:
        print(f"Cannot import {path}: {error}", file=sys.stderr)
        return 2
    finally:
        if bar:
            bar.close()
    written = None
    if report.rejected:
        written = rejected_file or rejected_path_for(path)
        write_rejected(written, header, report.rejected)
    print(summary(report, dry_run, written))
    return 0
