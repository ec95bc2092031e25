"""The importer's pure parts: header matching, row parsing, progress bar, rejected-rows file."""

import csv
import io

import pytest

from crm_graphql.domain.enums import LeadSource
from crm_graphql.domain.errors import RuleViolation
from crm_graphql.importer import (
    ImportFileError,
    ImportReport,
    Layout,
    ProgressBar,
    Rejection,
    parse_row,
    summary,
    write_rejected,
)


def test_header_names_match_ignoring_case_spaces_hyphens_and_underscores():
    layout = Layout.from_header(
        ["Contact Name", "COMPANY_NAME", "E-Mail", "Business-Domain", "Notes", "Phone number"]
    )
    assert layout.fields == {
        "contact_name": 0,
        "company_name": 1,
        "email": 2,
        "business_domain": 3,
    }
    assert layout.unknown == ["Notes", "Phone number"]


def test_a_header_without_known_columns_or_with_a_column_twice_is_refused():
    with pytest.raises(ImportFileError, match="none of the known columns"):
        Layout.from_header(["foo", "bar"])
    with pytest.raises(ImportFileError, match="Two columns map to email"):
        Layout.from_header(["email", "E Mail"])


def test_rows_are_parsed_with_create_lead_rules_and_blank_cells_are_absent():
    layout = Layout.from_header(["email", "phone", "source", "website"])
    values = parse_row(
        layout, [" Ann@Acme.com", "", "partner", "www.acme.com"], LeadSource.SCANNER, None
    )
    assert values["email"] == "ann@acme.com"
    assert values["phone"] is None
    assert values["source"] == "PARTNER"
    assert values["website_domain"] == "acme.com"
    assert len(values["import_key"]) == 64
    assert parse_row(layout, ["bob@acme.com"], LeadSource.MANUAL, None)["source"] == "MANUAL"


def test_a_row_reports_all_its_broken_rules_at_once():
    layout = Layout.from_header(["email", "source"])
    with pytest.raises(RuleViolation) as caught:
        parse_row(layout, ["nope", "fax"], LeadSource.SCANNER, None)
    assert [v.field for v in caught.value.violations] == [("source",), ("email",)]


def test_progress_bar_shows_rows_done_and_rate():
    out = io.StringIO()
    bar = ProgressBar(200, stream=out)
    bar(50)
    bar(200)
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("[" + "#" * 7 + "." * 23 + "] 50/200 rows")
    assert frames[1].startswith("[" + "#" * 30 + "] 200/200 rows")
    assert frames[1].endswith(" rows/s")


def test_rejected_rows_keep_their_cells_and_gain_line_and_reason(tmp_path):
    path = tmp_path / "rejected.csv"
    write_rejected(
        path,
        ["email", "notes"],
        [Rejection(7, ["x@", "b"], "email is bad."), Rejection(3, ["y"], "duplicate: lead X.")],
    )
    with path.open(newline="") as stream:
        assert list(csv.reader(stream)) == [
            ["email", "notes", "line", "reason"],
            ["y", "", "3", "duplicate: lead X."],
            ["x@", "b", "7", "email is bad."],
        ]


FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "@SUM(1,2)", "-2+3", "\t=1+1", "\r=1+1"]


def test_rejected_rows_cannot_run_as_spreadsheet_formulas(tmp_path):
    path = tmp_path / "rejected.csv"
    write_rejected(path, ["email", "=HYPERLINK(1)"], [Rejection(2, FORMULAS[:2], "bad.")])
    write_rejected(tmp_path / "more.csv", ["a"] * len(FORMULAS), [Rejection(2, FORMULAS, "-bad.")])
    with path.open(newline="") as stream:
        assert list(csv.reader(stream)) == [
            ["email", "'=HYPERLINK(1)", "line", "reason"],
            ["'=cmd|' /C calc'!A0", "'+SUM(1,2)", "2", "bad."],
        ]
    with (tmp_path / "more.csv").open(newline="") as stream:
        row = list(csv.reader(stream))[1]
    assert row == [*("'" + formula for formula in FORMULAS), "2", "'-bad."]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


def test_a_quoted_cell_is_read_as_it_was_before_quoting():
    layout = Layout.from_header(["phone", "contact name"])
    row = ["'+49 30 1234567", "'Brien"]
    assert layout.value(row, "phone") == "+49 30 1234567"
    assert layout.value(row, "contact_name") == "'Brien"  # not a quote the importer added


def test_unknown_column_names_are_printed_with_control_characters_escaped():
    report = ImportReport(unknown_columns=["notes\x1b[2J\x1b[31m", "a\rb", "x\u202eevil", "ok"])
    report.seconds = 1.0
    line = summary(report, dry_run=False, rejected_file=None).splitlines()[-1]
    assert line == "Unknown columns, ignored: notes\\x1b[2J\\x1b[31m, a\\rb, x\\u202eevil, ok"
