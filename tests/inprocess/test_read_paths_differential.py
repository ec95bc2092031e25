"""The compiled read path answers exactly as the general (graphql-core) path does (issue 18).

Two apps on one seeded database, one with CRM_COMPILED_READS on and one with it off, get the
same generated read requests (tests/support/read_documents.py) as each role and without a
token; status, content type, body bytes and the request log's outcome must be identical.

CRM_DIFFERENTIAL_DOCUMENTS sets how many documents hypothesis-graphql generates (default 450,
what CI runs); each is varied three ways, and each request sent as two or three callers
(docs/testing.md).
"""

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given

from crm_graphql.web.middleware import access_logger
from tests.support.fuzz import fuzzing
from tests.support.graphql import (
    ADVANCE_SALE,
    ASSIGN_LEAD,
    CREATE_LEAD,
    LOG_ACTIVITY,
    MERGE_LEADS,
    UPDATE_LEAD,
    GraphQLClient,
    token_for,
)
from tests.support.inprocess import app_client
from tests.support.leads import advance, analyze, ok, transfer
from tests.support.read_documents import ReadRequest, SeededData, read_requests

DOCUMENTS = int(os.environ.get("CRM_DIFFERENTIAL_DOCUMENTS", "450"))
VARIANTS = 3
# Where every mismatch is written (markdown), when set; the assertion shows the first few.
REPORT = os.environ.get("CRM_DIFFERENTIAL_REPORT")

TOKENS = {
    "admin": token_for("admin"),
    "manager": token_for("manager"),
    "manager-2": token_for("manager", sub="test-manager-2", name="Second Manager"),
    "sales": token_for("sales"),
}


async def create(gql: GraphQLClient, **fields: Any) -> str:
    data = await gql(CREATE_LEAD, {"input": {"source": "PARTNER", **fields}})
    return str(ok(data["createLead"])["lead"]["id"])


async def seed(gql: GraphQLClient) -> SeededData:
    """Leads in every state a read can meet, by three people, so that pages hold nulls of
    every kind and each role sees a different part of them. The plain leads come first: pages
    are newest first, so the default page (20) holds the others."""
    admin = gql.as_role("admin")
    sales = gql.as_role("sales")
    other_manager = gql.with_token(TOKENS["manager-2"])
    for index in range(12):
        filler = await create(
            gql, source=("SCANNER", "MANUAL", "PARTNER")[index % 3], contactName=f"Filler {index}"
        )
        if index % 4 == 0:
            await analyze(gql, filler)
    # Another manager's leads, one scored.
    for index in range(3):
        theirs = await create(other_manager, source="MANUAL", contactName=f"Other {index}")
        if index == 0:
            await analyze(other_manager, theirs)

    full = await create(
        gql,
        businessDomain="fintech",
        contactName="Ann Lee",
        companyName="Acme GmbH",
        email="ann@acme.example",
        phone="+4930123456",
        website="acme.example",
        nextFollowUpAt="2027-01-05T09:00:00+01:00",
    )
    await analyze(gql, full)
    await create(gql, source="SCANNER", businessDomain=None)  # unscored, no domain, no contact
    # Scores made stale three ways: another domain, none, one more activity.
    for change in ({"businessDomain": "retail"}, {"businessDomain": None}, None):
        stale = await create(gql, source="MANUAL", businessDomain="saas", contactName="Bo")
        await analyze(gql, stale)
        await advance(gql, stale, "CONTACTED")
        if change is None:
            await gql(LOG_ACTIVITY, {"input": {"leadId": stale, "kind": "CALL"}})
        else:
            updated = await gql(UPDATE_LEAD, {"input": {"leadId": stale, **change}})
            ok(updated["updateLead"])
    busy = await create(gql, businessDomain="fintech", companyName="Busy AG")
    for kind in ("CALL", "EMAIL", "MEETING"):
        await gql(LOG_ACTIVITY, {"input": {"leadId": busy, "kind": kind, "note": "n"}})
    await analyze(gql, busy)
    await advance(gql, busy, "CONTACTED", "QUALIFIED")
    lost = await create(gql, source="SCANNER", businessDomain="saas")
    await advance(gql, lost, "CONTACTED", "LOST")

    sale_ids = []
    for sale_stages in ((), ("KYC",), ("KYC", "AGREEMENT", "PAID"), ("LOST",)):
        sale_id = await transfer(gql, await create(gql, businessDomain="fintech"))
        sale_ids.append(sale_id)
        for stage in sale_stages:
            advanced = await sales(ADVANCE_SALE, {"input": {"saleId": sale_id, "to": stage}})
            ok(advanced["advanceSaleStage"])

    # A duplicate merged into the lead it duplicates (LOST, mergedInto, lostReason) ...
    original = await create(gql, email="dup@acme.example", businessDomain="fintech")
    duplicate = await create(gql, email="dup@acme.example", allowDuplicate=True)
    merged = await gql(MERGE_LEADS, {"input": {"keepId": original, "mergeId": duplicate}})
    ok(merged["mergeLeads"])
    # ... and a transferred duplicate of an open lead, which sales sees and its original not.
    duplicate = await create(
        gql, email="ann@acme.example", businessDomain="fintech", allowDuplicate=True
    )
    sale_ids.append(await transfer(gql, duplicate))
    # A kept lead transferred after a merge: its merged history names a lead sales cannot see.
    kept = await create(gql, businessDomain="fintech", website="kept.example")
    gone = await create(gql, source="MANUAL", contactName="Gone")
    ok((await gql(MERGE_LEADS, {"input": {"keepId": kept, "mergeId": gone}}))["mergeLeads"])
    sale_ids.append(await transfer(gql, kept))

    # Owners other than the creator: an admin's lead assigned to the first manager, a
    # manager's lead to the admin.
    assigned = await create(admin, source="SCANNER", businessDomain="saas")
    for lead_id, owner in ((assigned, "test-manager"), (full, "test-admin")):
        data = await admin(ASSIGN_LEAD, {"input": {"leadId": lead_id, "ownerId": owner}})
        ok(data["assignLead"])

    return SeededData(
        lead_ids=await every_id(admin, "leads"),
        sale_ids=sale_ids,
        cursors=await every_cursor(admin),
        search_terms=("acme", "ANN", "Filler 1", "%", "_", "", "zz", "x" * 300),
    )


async def every_id(gql: GraphQLClient, connection: str) -> list[str]:
    data = await gql(f"{{ {connection}(first: 100) {{ edges {{ node {{ id }} }} }} }}")
    return [edge["node"]["id"] for edge in data[connection]["edges"]]


async def every_cursor(gql: GraphQLClient) -> dict[str, list[str]]:
    """The cursors of every lead in each ordering, and of every sale."""
    cursors = {}
    for field in ("CREATED_AT", "UPDATED_AT", "SCORE"):
        order = f"{{field: {field}}}"
        data = await gql(f"{{ leads(first: 100, orderBy: {order}) {{ edges {{ cursor }} }} }}")
        cursors[field] = [edge["cursor"] for edge in data["leads"]["edges"]]
    data = await gql("{ sales(first: 100) { edges { cursor } } }")
    cursors["sales"] = [edge["cursor"] for edge in data["sales"]["edges"]]
    return cursors


def generated_requests(data: SeededData) -> list[ReadRequest]:
    """DOCUMENTS generated documents, VARIANTS requests each, the same every run; repeats
    (Hypothesis mutates earlier examples) sent once."""
    requests: dict[str, ReadRequest] = {}

    @fuzzing(DOCUMENTS)
    @given(variants=read_requests(data, VARIANTS))
    def collect(variants: list[ReadRequest]) -> None:
        for request in variants:
            requests.setdefault(json.dumps(vars(request), sort_keys=True), request)

    collect()
    return list(requests.values())


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes
    # The request log line's operation name, type and outcome (the same on either path).
    logged: tuple[Any, ...]


class RequestLogLines(logging.Handler):
    """The last request log line's fields, and which path answered it (`read_path`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: tuple[Any, ...] = ()
        self.read_path: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        fields = ("operation_name", "operation_type", "status", "outcome")
        self.last = tuple(getattr(record, name, None) for name in fields)
        self.read_path = getattr(record, "read_path", None)


@contextmanager
def request_log() -> Iterator[RequestLogLines]:
    """The access log's lines, kept from pytest's capture (thousands of them)."""
    handler = RequestLogLines()
    level, propagate = access_logger.level, access_logger.propagate
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False
    try:
        yield handler
    finally:
        access_logger.removeHandler(handler)
        access_logger.setLevel(level)
        access_logger.propagate = propagate


async def send(
    http: httpx.AsyncClient, log: RequestLogLines, request: ReadRequest, caller: str | None
) -> Answer:
    headers = {"Authorization": f"Bearer {TOKENS[caller]}"} if caller else {}
    if request.accept:
        headers["Accept"] = request.accept
    body: dict[str, Any] = {"query": request.document}
    if request.variables is not None:
        body["variables"] = request.variables
    if request.operation_name is not None:
        body["operationName"] = request.operation_name
    if request.method == "GET":
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        response = await http.get("/graphql", params=params, headers=headers)
    else:
        response = await http.post("/graphql", json=body, headers=headers)
    return Answer(
        response.status_code, response.headers.get("content-type"), response.content, log.last
    )


def shortened(text: str | bytes, limit: int = 600) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def first_difference(general: bytes, compiled: bytes) -> str:
    """Where the bodies part, with some context."""
    at = next(
        (i for i, (a, b) in enumerate(zip(general, compiled, strict=False)) if a != b),
        min(len(general), len(compiled)),
    )
    start = max(at - 120, 0)
    return (
        f"bodies differ from byte {at}: general `...{shortened(general[start : at + 120])}`, "
        f"compiled `...{shortened(compiled[start : at + 120])}`"
    )


def describe(request: ReadRequest, caller: str | None, general: Answer, compiled: Answer) -> str:
    return "\n".join(
        (
            f"### as {caller or 'nobody (no token)'}, {request.method}, Accept {request.accept}",
            f"```graphql\n{request.document}\n```",
            f"variables: `{json.dumps(request.variables)}`, "
            f"operationName: `{request.operation_name}`",
            f"- general:  {general.status} {general.content_type} {general.logged} "
            f"`{shortened(general.body)}`",
            f"- compiled: {compiled.status} {compiled.content_type} {compiled.logged} "
            f"`{shortened(compiled.body)}`",
            f"- {first_difference(general.body, compiled.body)}",
        )
    )


def write_report(path: Path, mismatches: list[str]) -> None:
    path.write_text(f"{len(mismatches)} mismatches\n\n" + "\n\n".join(mismatches))


@asynccontextmanager
async def seeded_apps(
    database_url: str, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, SeededData]]:
    """An app on the general path only and one with compiled reads, on one seeded database."""
    async with (
        app_client(database_url, compiled_reads=False, **settings) as general,
        app_client(database_url, compiled_reads=True, **settings) as compiled,
    ):
        yield general, compiled, await seed(GraphQLClient(general, TOKENS["manager"]))


async def test_the_compiled_path_answers_every_generated_read_as_the_general_path(empty: str):
    paths: Counter[str | None] = Counter()
    mismatches = []
    async with seeded_apps(empty, expose_sql_count=False) as (general, compiled, data):
        requests = await asyncio.to_thread(generated_requests, data)
        with request_log() as log:
            for request in requests:
                for caller in request.callers:
                    expected = await send(general, log, request, caller)
                    actual = await send(compiled, log, request, caller)
                    paths[log.read_path] += 1
                    if actual != expected:
                        mismatches.append(describe(request, caller, expected, actual))
    if REPORT:
        write_report(Path(REPORT), mismatches)
    compared = sum(len(request.callers) for request in requests)
    print(f"{len(requests)} generated requests, {compared} comparisons; paths: {paths}")
    assert len(requests) >= DOCUMENTS
    assert not mismatches, f"{len(mismatches)} mismatches, the first:\n" + "\n\n".join(
        mismatches[:3]
    )
    # Not vacuous: a good part of the requests did take the compiled path.
    assert paths["compiled"] >= compared // 8, sorted(paths.items(), key=str)


# Shapes the compiled path covers (the front end's lists and detail view, the benchmark's).
COVERED = {
    "page": """query { leads(first: 50) { totalCount edges { cursor node {
      id stage source businessDomain activityCount createdAt updatedAt
      score { value recommendation reasons stale scorer scorerVersion scoredAt
              factors { name contribution explanation } }
      sale { id stage createdAt history { from to at } }
      owner { id name role } createdBy { id }
      history { from to at note by { id name } } } } pageInfo { hasNextPage endCursor } } }""",
    "filtered": """query($filter: LeadFilter, $order: LeadOrder) {
      leads(first: 20, filter: $filter, orderBy: $order) {
        totalCount edges { node { id contactName companyName email phone website } } } }""",
    "lead": """query($id: ID!) { lead(id: $id) {
      ...Detail history(includeMerged: true) { from to note } } }
      fragment Detail on Lead { id stage nextFollowUpAt lostReason score { value }
                                sale { transferredBy { id } } }""",
}


async def test_covered_reads_run_compiled_in_no_more_statements(empty: str):
    """Each covered shape, as each role, is answered by the compiled path with the general
    path's data and at most as many SQL statements (statement counting on)."""
    async with seeded_apps(empty) as (general, compiled, _):
        # A transferred lead (sales sees it) with a merged lead's history.
        (transferred, *_) = await every_id(GraphQLClient(general, TOKENS["sales"]), "leads")
        variables = {
            "page": {},
            "filtered": {"filter": {"search": "acme"}, "order": {"field": "SCORE"}},
            "lead": {"id": transferred},
        }
        with request_log() as log:
            for shape, document in COVERED.items():
                roles = ("admin", "manager", "sales")
                request = ReadRequest(document, variables[shape], None, None, "POST", roles)
                for caller in request.callers:
                    expected = json.loads((await send(general, log, request, caller)).body)
                    actual = json.loads((await send(compiled, log, request, caller)).body)
                    assert log.read_path == "compiled", (shape, caller, log.read_path)
                    statements = actual.pop("extensions")["sqlStatements"]
                    assert statements <= expected.pop("extensions")["sqlStatements"], shape
                    assert actual == expected, (shape, caller)
