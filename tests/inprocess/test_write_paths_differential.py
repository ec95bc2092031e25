"""The compiled write path answers exactly as the general (graphql-core) path does (issue 18).

Two apps on one database, one with CRM_COMPILED_WRITES on and one with it off, run the same
scenarios: each makes its own leads and changes them step by step, as one role or another,
with documents in many shapes (every plain field, scores with factors, sales, errors,
aliases, fragments, `__typename`, operation names, both media types) and requests the
compiled path must leave to the general one (loader fields, directives, variables that do not
fit, several root fields, no token). Each step's status, content type and request log line
must be identical on both paths, and so must the body, once the IDs and instants that differ
between two runs (the leads are not the same rows) are replaced by their order of appearance.
"""

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from crm_graphql.api.types import LeadScore
from crm_graphql.services.leads import LeadService
from tests.inprocess.test_read_paths_differential import TOKENS, Answer, request_log
from tests.support.inprocess import app_client

LEAD_PLAIN = """id source stage businessDomain activityCount createdAt updatedAt contactName
  companyName email phone website lostReason nextFollowUpAt"""
SCORE = """score { value recommendation reasons factors { name contribution explanation }
  scorer scorerVersion scoredAt stale __typename }"""
ERRORS = "errors { code message field __typename }"

CREATE = f"""mutation Create($input: CreateLeadInput!) {{
  createLead(input: $input) {{ lead {{ {LEAD_PLAIN} {SCORE} }} {ERRORS} }} }}"""
CREATE_SHORT = """mutation($input: CreateLeadInput!) {
  createLead(input: $input) { lead { id stage } errors { code } } }"""
ANALYZE = f"""mutation($input: AnalyzeLeadInput!) {{
  analyzeLead(input: $input) {{ __typename lead {{ ...Scored }} {ERRORS} }} }}
  fragment Scored on Lead {{ id stage {SCORE} }}"""
ANALYZE_SHORT = """mutation($input: AnalyzeLeadInput!) {
  analyzeLead(input: $input) { lead { id score { value recommendation } } errors { code } } }"""
ADVANCE = """mutation Move($input: AdvanceStageInput!) {
  moved: advanceStage(input: $input) {
    lead { ... on Node { nodeId: id } ... on Lead { stage updatedAt } id }
    problems: errors { code message field } } }
  query Other { viewer { id } }"""
ADVANCE_SHORT = """mutation($input: AdvanceStageInput!) {
  advanceStage(input: $input) { lead { id stage } errors { code } } }"""
TRANSFER = f"""mutation($input: TransferToSalesInput!) {{
  transferToSales(input: $input) {{
    lead {{ id stage {SCORE} }} sale {{ __typename id stage createdAt }} {ERRORS} }} }}"""
TRANSFER_SHORT = """mutation($input: TransferToSalesInput!) {
  transferToSales(input: $input) { lead { id stage } sale { id stage } errors { code } } }"""
LOG_ACTIVITY = f"""mutation($input: LogActivityInput!) {{
  logActivity(input: $input) {{ lead {{ {LEAD_PLAIN} }} {ERRORS} }} }}"""
UPDATE = f"""mutation($input: UpdateLeadInput!) {{
  updateLead(input: $input) {{ lead {{ {LEAD_PLAIN} {SCORE} }} {ERRORS} }} }}"""
ASSIGN = """mutation($input: AssignLeadInput!) {
  assignLead(input: $input) { lead { id stage } errors { code message field } } }"""
# The general path's: a loader field, a directive, two root fields, an inline argument.
WITH_HISTORY = """mutation($input: AdvanceStageInput!) {
  advanceStage(input: $input) { lead { id stage history { from to } } errors { code } } }"""
WITH_DIRECTIVE = """mutation($input: AdvanceStageInput!, $skip: Boolean!) {
  advanceStage(input: $input) { lead { id stage @skip(if: $skip) } errors { code } } }"""
WITH_DUPLICATE_OF = """mutation($input: CreateLeadInput!) {
  createLead(input: $input) { lead { id } duplicateOf { id } errors { code message } } }"""
TWO_ROOTS = """mutation($input: AnalyzeLeadInput!) {
  a: analyzeLead(input: $input) { lead { id } }
  b: analyzeLead(input: $input) { lead { id } } }"""
INLINE = """mutation { createLead(input: {source: PARTNER}) { lead { stage } errors { code } } }"""

LEAD = "<lead>"  # replaced by the scenario's lead ID at each step
GRAPHQL_RESPONSE = "application/graphql-response+json"


@dataclass(frozen=True)
class Step:
    document: str
    variables: dict[str, Any] | None
    caller: str | None = "manager"
    accept: str | None = None
    operation_name: str | None = None


def lead_input(**values: Any) -> dict[str, Any]:
    return {"input": {"leadId": LEAD, **values}}


MAIN_FLOW = [
    Step(CREATE, {"input": {"source": "PARTNER", "businessDomain": "fintech"}}),
    Step(ANALYZE, lead_input()),
    Step(ADVANCE, lead_input(to="CONTACTED"), operation_name="Move"),
    Step(ADVANCE, lead_input(to="QUALIFIED"), accept=GRAPHQL_RESPONSE, operation_name="Move"),
    Step(TRANSFER, lead_input()),
    # Refused by the rules, as each role.
    Step(TRANSFER, lead_input()),
    Step(ADVANCE_SHORT, lead_input(to="LOST")),
    Step(ANALYZE_SHORT, lead_input(), caller="admin"),
    Step(LOG_ACTIVITY, {"input": {"leadId": LEAD, "kind": "CALL", "note": "n"}}),
]
SCENARIOS: dict[str, list[Step]] = {
    "the main flow, full selections": MAIN_FLOW,
    "the main flow, the benchmark's selections": [
        Step(CREATE_SHORT, {"input": {"source": "PARTNER", "businessDomain": "x"}}),
        Step(ANALYZE_SHORT, lead_input()),
        Step(ADVANCE_SHORT, lead_input(to="CONTACTED")),
        Step(ADVANCE_SHORT, lead_input(to="QUALIFIED")),
        Step(TRANSFER_SHORT, lead_input()),
    ],
    "every field, changed and refused": [
        Step(
            CREATE,
            {
                "input": {
                    "source": "MANUAL",
                    "contactName": "Ann Lee",
                    "companyName": "Acme GmbH",
                    "email": "ann@acme.example",
                    "phone": "+4930123456",
                    "website": "HTTPS://Acme.Example/path",
                    "nextFollowUpAt": "2027-01-05T09:00:00+01:00",
                }
            },
        ),
        Step(UPDATE, lead_input(businessDomain="saas", contactName=None)),
        Step(ANALYZE, lead_input()),
        Step(UPDATE, lead_input(businessDomain="retail")),  # the score goes stale
        Step(TRANSFER, lead_input()),  # several rules broken at once
        Step(ADVANCE, lead_input(to="QUALIFIED"), operation_name="Move"),  # not allowed
        Step(ADVANCE, lead_input(to="TRANSFERRED"), operation_name="Move"),
        Step(UPDATE, lead_input(email="not an email", phone="12")),
        Step(ASSIGN, lead_input(ownerId="nobody-known"), caller="admin"),
        Step(ASSIGN, lead_input(ownerId="test-manager"), caller="admin"),
        Step(CREATE, {"input": {"source": "MANUAL", "email": "ann@acme.example"}}),
        Step(
            CREATE,
            {"input": {"source": "MANUAL", "email": "ann@acme.example", "allowDuplicate": True}},
        ),
        Step(CREATE, {"input": {"source": "SCANNER", "contactName": "x" * 10_001}}),
        Step(ADVANCE_SHORT, lead_input(to="LOST"), caller="manager-2"),
    ],
    "refusals before and after the resolver runs": [
        Step(CREATE_SHORT, {"input": {"source": "PARTNER"}}),
        Step(ADVANCE_SHORT, lead_input(to="CONTACTED"), caller="sales"),  # FORBIDDEN
        Step(CREATE_SHORT, {"input": {"source": "PARTNER"}}, caller="sales"),
        Step(ADVANCE_SHORT, lead_input(to="CONTACTED"), caller=None),  # UNAUTHENTICATED
        Step(ADVANCE_SHORT, {"input": {"leadId": "nonsense", "to": "CONTACTED"}}),
        Step(ADVANCE_SHORT, {"input": {"leadId": "U2FsZTox", "to": "CONTACTED"}}),
        Step(ADVANCE_SHORT, {"input": {"leadId": "TGVhZDo5OTk5OTk=", "to": "CONTACTED"}}),
        Step(ADVANCE_SHORT, lead_input(to="SOMEWHERE")),
        Step(ADVANCE_SHORT, lead_input()),
        Step(ADVANCE_SHORT, {"input": {"leadId": LEAD, "to": "CONTACTED", "extra": 1}}),
        Step(ADVANCE_SHORT, None),
        Step(CREATE_SHORT, {"input": {"source": "PARTNER", "nextFollowUpAt": "tomorrow"}}),
        Step(WITH_HISTORY, lead_input(to="CONTACTED")),
        Step(WITH_DIRECTIVE, {**lead_input(to="QUALIFIED"), "skip": True}),
        Step(WITH_DUPLICATE_OF, {"input": {"source": "MANUAL"}}),
        Step(TWO_ROOTS, lead_input()),
        Step(INLINE, None),
        Step(ADVANCE, lead_input(to="LOST"), operation_name="Other"),
        Step(ADVANCE, lead_input(to="LOST")),  # two operations, none named
        Step(ADVANCE, lead_input(to="LOST"), operation_name="Move", accept=GRAPHQL_RESPONSE),
    ],
}

# The scenarios' leads and sales are other rows on either path, made at other instants.
GLOBAL_ID = re.compile(r"(?:TGVhZDo|U2FsZTo)[A-Za-z0-9+/=]*")
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")


def normalised(bodies: list[bytes]) -> list[str]:
    """The bodies with each distinct ID named by its order of first appearance across the
    scenario, and every instant alike."""
    names: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return names.setdefault(match.group(), f"<id {len(names)}>")

    return [INSTANT.sub("<instant>", GLOBAL_ID.sub(name, body.decode())) for body in bodies]


def with_lead(value: Any, lead_id: str) -> Any:
    if value == LEAD:
        return lead_id
    if isinstance(value, dict):
        return {key: with_lead(item, lead_id) for key, item in value.items()}
    return value


async def run(
    http: httpx.AsyncClient, steps: list[Step], log: Callable[[], tuple[Any, ...]]
) -> list[Answer]:
    """The steps in order, on the lead the first one creates."""
    answers: list[Answer] = []
    lead_id = ""
    for step in steps:
        headers = {"Authorization": f"Bearer {TOKENS[step.caller]}"} if step.caller else {}
        if step.accept:
            headers["Accept"] = step.accept
        body: dict[str, Any] = {"query": step.document}
        if step.variables is not None:
            body["variables"] = with_lead(step.variables, lead_id)
        if step.operation_name:
            body["operationName"] = step.operation_name
        response = await http.post("/graphql", json=body, headers=headers)
        if not lead_id:
            lead_id = response.json()["data"]["createLead"]["lead"]["id"]
        answers.append(
            Answer(
                response.status_code,
                response.headers.get("content-type"),
                response.content,
                log(),
            )
        )
    return answers


@asynccontextmanager
async def two_apps(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        app_client(database_url, compiled_writes=False) as general,
        app_client(database_url, compiled_writes=True) as compiled,
    ):
        yield general, compiled


async def test_the_compiled_path_answers_every_write_as_the_general_path(empty: str):
    mismatches = []
    read_paths: list[str | None] = []
    async with two_apps(empty) as (general, compiled):
        with request_log() as log:

            def compiled_log() -> tuple[Any, ...]:
                read_paths.append(log.read_path)
                return log.last

            for name, steps in SCENARIOS.items():
                expected = await run(general, steps, lambda: log.last)
                actual = await run(compiled, steps, compiled_log)
                bodies = zip(
                    normalised([a.body for a in expected]),
                    normalised([a.body for a in actual]),
                    strict=True,
                )
                for step, want, got, (want_body, got_body) in zip(
                    steps, expected, actual, bodies, strict=True
                ):
                    if (want.status, want.content_type, want.logged, want_body) != (
                        got.status,
                        got.content_type,
                        got.logged,
                        got_body,
                    ):
                        mismatches.append(
                            f"{name}: {step}\n  general:  {want.status} {want.logged} "
                            f"{want_body}\n  compiled: {got.status} {got.logged} {got_body}"
                        )
        counts = (await compiled.get("/readyz")).json()["compiledWrites"]
    assert not mismatches, "\n\n".join(mismatches[:3])
    # Not vacuous: the covered steps took the compiled path, the others did not.
    assert counts["compiled"] >= 30, counts
    for reason in (
        "resolver history",
        "resolver duplicate_of",
        "directive",
        "root fields",
        "variables",
        "arguments",
        "UNAUTHENTICATED",
    ):
        assert counts.get(f"general: {reason}"), (reason, counts)
        # The request log names the write compiler's reason, not the read compiler's.
        assert f"general: {reason}" in read_paths, (reason, read_paths)
    assert "general: mutation" not in read_paths


async def test_a_failing_use_case_is_answered_as_the_general_path_answers_it(
    empty: str, monkeypatch: pytest.MonkeyPatch
):
    """Once the resolver runs, a write cannot go to the general path any more: what it raises
    is answered here, masked (ours) or coded (the database's), as the general path does."""

    failures: list[Exception] = []

    async def fails(*_: Any) -> None:
        raise failures[-1]

    monkeypatch.setattr(LeadService, "advance_stage", fails)
    steps = [
        Step(CREATE_SHORT, {"input": {"source": "PARTNER"}}),
        Step(ADVANCE, lead_input(to="CONTACTED"), operation_name="Move"),
        Step(ADVANCE_SHORT, lead_input(to="CONTACTED"), accept=GRAPHQL_RESPONSE),
    ]
    async with two_apps(empty) as (general, compiled):
        with request_log() as log:
            for failure in (RuntimeError("a defect"), ConnectionRefusedError("no database")):
                failures.append(failure)
                expected = await run(general, steps, lambda: log.last)
                actual = await run(compiled, steps, lambda: log.last)
                assert [(a.status, a.content_type, a.logged) for a in actual] == [
                    (a.status, a.content_type, a.logged) for a in expected
                ]
                assert normalised([a.body for a in actual]) == normalised(
                    [a.body for a in expected]
                )
                assert b'"data":null' in actual[-1].body
        counts = (await compiled.get("/readyz")).json()["compiledWrites"]
    assert counts == {"compiled": 6}


async def test_a_payload_field_failing_after_the_write_is_answered_with_partial_data(
    empty: str, monkeypatch: pytest.MonkeyPatch
):
    """The write has committed by the time its payload is built: a field that fails then is
    null with an error at its own path, and the rest of the data stays, as on the general
    path. A client shown `data: null` instead might send the write again."""

    def fails(*_: Any) -> None:
        raise RuntimeError("a defect in a payload field")

    monkeypatch.setattr(LeadScore, "from_domain", fails)
    steps = [Step(CREATE_SHORT, {"input": {"source": "PARTNER"}}), Step(ANALYZE, lead_input())]
    async with two_apps(empty) as (general, compiled):
        with request_log() as log:
            expected = await run(general, steps, lambda: log.last)
            actual = await run(compiled, steps, lambda: log.last)
        counts = (await compiled.get("/readyz")).json()["compiledWrites"]
    assert [(a.status, a.content_type, a.logged) for a in actual] == [
        (a.status, a.content_type, a.logged) for a in expected
    ]
    assert normalised([a.body for a in actual]) == normalised([a.body for a in expected])
    analyzed = orjson.loads(actual[-1].body)
    assert analyzed["data"]["analyzeLead"]["lead"]["score"] is None
    assert analyzed["data"]["analyzeLead"]["lead"]["stage"] == "NEW"
    assert [error["path"] for error in analyzed["errors"]] == [["analyzeLead", "lead", "score"]]
    assert counts == {"compiled": 2}
