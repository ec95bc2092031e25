"""`crm-graphql import` against the test database: once as the console runs it, in a process of
its own; otherwise the same command in this process."""

import asyncio
import csv
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from crm_graphql.cli import build_parser
from crm_graphql.db.engine import create_engine
from crm_graphql.domain.enums import LeadSource
from crm_graphql.importer import Importer
from crm_graphql.settings import Settings, get_settings
from tests.support.graphql import GraphQLClient

HEADER = "Contact Name,COMPANY_NAME,Email,phone,Web-Site,business domain,Notes,source\n"
ROWS = [
    "Ann Lee,Acme,Ann@Acme.com,+49 30 1234567,acme.com,fintech,met at fair,\n",
    "Bob Stone,Beta,bob@beta.io,,beta.io,,,partner\n",
    "Bad Row,Bad,not-an-email,123,,,,\n",
    "Ann Again,Acme 2,ann@acme.com,,,,,\n",  # same email as line 2
    "Ann Lee,Acme,Ann@Acme.com,+49 30 1234567,acme.com,fintech,second copy,\n",
    "Cora,,,,,,no contact at all,\n",
    "Dan,Delta,dan@delta.org,,,,,nonsense\n",
    "Eve,Existing,eve@existing.com,,,,,\n",  # duplicate of a lead made through the API
]
LEADS = """{ leads(first: 100, orderBy: {field: CREATED_AT, direction: ASC}) {
  totalCount edges { node { source contactName email phone website businessDomain
                            history { from to } } } } }"""
CREATE = """mutation($input: CreateLeadInput!) {
  createLead(input: $input) { lead { id } errors { code } } }"""


@pytest.fixture
def import_process(database_url: str):
    """`crm-graphql import` as the console runs it, in a process of its own."""

    def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crm_graphql", "import", str(path), *args],
            env={**os.environ, "CRM_DATABASE_URL": database_url, "CRM_LOG_LEVEL": "warning"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run


@pytest.fixture
def run_import(database_url: str, monkeypatch: pytest.MonkeyPatch):
    """The same command run in this process (its own thread and event loop): what it prints
    and returns, without the cost of starting Python for each run."""
    monkeypatch.setenv("CRM_DATABASE_URL", database_url)
    get_settings.cache_clear()

    def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["import", str(path), *args]
        command = build_parser().parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        with ThreadPoolExecutor(1) as thread, redirect_stdout(out), redirect_stderr(err):
            code = thread.submit(command.handler, command).result()
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

    yield run
    get_settings.cache_clear()


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


async def existing_eve(gql: GraphQLClient) -> str:
    created = await gql(CREATE, {"input": {"source": "MANUAL", "email": "eve@existing.com"}})
    return created["createLead"]["lead"]["id"]


async def test_import_reports_a_summary_and_writes_rejected_rows_with_reasons(
    gql: GraphQLClient, import_process, tmp_path: Path
):
    eve = await existing_eve(gql)
    source = write_csv(tmp_path / "leads.csv", ROWS)
    result = import_process(source, "--source", "scanner", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "8 rows read" in out
    assert "3 leads created" in out
    assert "1 skipped as already imported" in out
    assert "2 skipped as duplicates of open leads" in out
    assert "2 rejected as invalid" in out
    assert "Unknown columns, ignored: Notes" in out
    rejected_file = tmp_path / "leads.rejected.csv"
    assert str(rejected_file) in out

    with rejected_file.open(newline="") as stream:
        rejected = list(csv.DictReader(stream))
    by_line = {row["line"]: row for row in rejected}
    assert sorted(by_line) == ["4", "5", "8", "9"]
    assert by_line["4"]["Contact Name"] == "Bad Row"  # the original cells are kept
    assert "email is not a valid address" in by_line["4"]["reason"]
    assert "phone" in by_line["4"]["reason"]
    assert by_line["5"]["reason"].startswith("duplicate: line 2 ")
    assert "email" in by_line["5"]["reason"]
    assert "source 'nonsense' is not one of" in by_line["8"]["reason"]
    assert by_line["9"]["reason"] == f"duplicate: lead {eve} has this email."

    leads = (await gql(LEADS))["leads"]
    assert leads["totalCount"] == 4
    imported = [edge["node"] for edge in leads["edges"][1:]]
    assert [(n["contactName"], n["source"]) for n in imported] == [
        ("Ann Lee", "SCANNER"),
        ("Bob Stone", "PARTNER"),
        ("Cora", "SCANNER"),
    ]
    ann = imported[0]
    assert (ann["email"], ann["phone"], ann["website"], ann["businessDomain"]) == (
        "ann@acme.com",
        "+49301234567",
        "https://acme.com",
        "fintech",
    )
    assert all(n["history"] == [{"from": None, "to": "NEW"}] for n in imported)


async def test_rerunning_the_same_file_creates_nothing_new(
    gql: GraphQLClient, run_import, tmp_path: Path, db
):
    source = write_csv(tmp_path / "leads.csv", ROWS)
    assert run_import(source).returncode == 0
    first = await db.fetch("SELECT id, import_key FROM leads ORDER BY id")
    audit_rows = await db.fetchval("SELECT count(*) FROM stage_changes")

    again = run_import(source)
    assert again.returncode == 0, again.stderr
    assert "0 leads created" in again.stdout
    assert "5 skipped as already imported" in again.stdout  # 4 created before, 1 repeat
    assert await db.fetch("SELECT id, import_key FROM leads ORDER BY id") == first
    assert await db.fetchval("SELECT count(*) FROM stage_changes") == audit_rows


async def test_an_interrupted_import_can_be_run_again(
    gql: GraphQLClient, run_import, tmp_path: Path, db
):
    rows = [f"Person {n},Company {n},,,,,,\n" for n in range(50)]  # no email, phone or site
    # The first run stopped after 20 rows: its committed batches are what an interrupted
    # run leaves behind.
    assert (
        run_import(write_csv(tmp_path / "part.csv", rows[:20]), "--batch-size", "5").returncode == 0
    )
    result = run_import(write_csv(tmp_path / "all.csv", rows), "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    assert "30 leads created" in result.stdout
    assert "20 skipped as already imported" in result.stdout
    assert await db.fetchval("SELECT count(DISTINCT contact_name) FROM leads") == 50
    assert await db.fetchval("SELECT count(*) FROM leads") == 50


async def test_a_dry_run_halfway_through_its_file_does_not_hold_up_the_api(
    gql: GraphQLClient, database_url: str, db
):
    """A dry run keeps one transaction open to its end. Paused after its first batch, with
    that transaction open, it must not make a lead created through the API meanwhile wait (the
    lock that orders audit ids would have, until the API's statement timed out). The importer
    runs in this process, reading a file that stops until the test lets it go on."""
    go_on = threading.Event()

    def paused_file() -> Iterator[str]:
        yield from [HEADER, ROWS[0], ROWS[1], ROWS[5]]
        go_on.wait(60)

    engine = create_engine(Settings(), database_url)
    importer = Importer(engine, LeadSource.SCANNER, batch_size=2, dry_run=True)
    try:
        run = asyncio.create_task(importer.run(paused_file()))  # type: ignore[arg-type]
        for _ in range(100):  # until the first batch is written, its transaction open
            if await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND state = 'idle in transaction'"
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the dry run did not open its transaction")
        created = await gql(CREATE, {"input": {"source": "MANUAL"}})
        assert created["createLead"]["errors"] == []
        go_on.set()
        report = await run
    finally:
        go_on.set()
        await engine.dispose()
    assert report.rows == 3
    assert await db.fetchval("SELECT count(*) FROM leads") == 1


async def test_dry_run_writes_nothing_but_reports_what_would_happen(
    gql: GraphQLClient, run_import, tmp_path: Path, db
):
    source = write_csv(tmp_path / "leads.csv", ROWS)
    rejected_file = tmp_path / "report" / "rejected.csv"
    rejected_file.parent.mkdir()
    result = run_import(source, "--dry-run", "--batch-size", "2", "--rejected", str(rejected_file))
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing was written." in result.stdout
    assert "4 leads would be created" in result.stdout
    assert "1 skipped as duplicates of open leads" in result.stdout
    assert await db.fetchval("SELECT count(*) FROM leads") == 0
    assert await db.fetchval("SELECT count(*) FROM stage_changes") == 0
    reasons = [row["reason"] for row in csv.DictReader(rejected_file.open(newline=""))]
    assert "duplicate: line 2 has this email." in reasons


async def test_unusable_files_and_options_are_refused(
    gql: GraphQLClient, run_import, tmp_path: Path, db
):
    no_known_columns = write_csv(tmp_path / "odd.csv", ["1,2\n"], header="foo,bar\n")
    result = run_import(no_known_columns)
    assert result.returncode == 2
    assert "none of the known columns" in result.stderr

    missing = run_import(tmp_path / "missing.csv")
    assert missing.returncode == 2
    assert "No such file" in missing.stderr

    for dry_run in ((), ("--dry-run",)):
        owner = run_import(write_csv(tmp_path / "leads.csv", ROWS), "--owner", "alice", *dry_run)
        assert owner.returncode == 2
        assert "--owner 'alice' is not a known user" in owner.stderr
    assert await db.fetchval("SELECT count(*) FROM leads") == 0
    assert await db.fetchval("SELECT count(*) FROM users") == 0
    assert not (tmp_path / "leads.rejected.csv").exists()


ATTRIBUTION = """{ leads(first: 10) { edges { node {
  createdBy { id name } owner { id } history { to by { id } } } } } }"""


async def test_imported_leads_are_by_the_import_and_owned_by_the_owner_given(
    gql: GraphQLClient, run_import, tmp_path: Path
):
    # A person becomes known with their first change through the API.
    await existing_eve(gql.as_role("manager", sub="alice", name="Alice"))
    result = run_import(write_csv(tmp_path / "a.csv", ROWS[:2]), "--owner", "alice")
    assert result.returncode == 0, result.stderr
    unowned = run_import(write_csv(tmp_path / "b.csv", ROWS[5:6]))
    assert unowned.returncode == 0, unowned.stderr

    leads = [e["node"] for e in (await gql(ATTRIBUTION))["leads"]["edges"]]
    imported = [lead for lead in leads if lead["createdBy"]["id"] == "crm-graphql-import"]
    assert len(imported) == 3
    assert all(lead["createdBy"]["name"] == "CSV import" for lead in imported)
    assert all(
        lead["history"] == [{"to": "NEW", "by": {"id": "crm-graphql-import"}}] for lead in imported
    )
    assert sorted(lead["owner"]["id"] for lead in imported) == [
        "alice",
        "alice",
        "crm-graphql-import",
    ]
