"""Compiled reads: the queries a front end sends most, answered without the general executor.

A query document is compiled once (per operation, and per value of the variables that shape
it: @skip/@include conditions, nested arguments) into a plan: one SQL statement per root field
(db/lead_reads.py: a page of leads with their score, sale, users and histories in one row
each), and for every selected field a function from that row to its output value, with the
arguments converted at compile time. Executing a plan reads the rows, builds the response in
plain loops and encodes it once with orjson: no resolver call, no task, no argument
conversion per field.

The response is byte for byte the one the general path gives (tests/integration/
test_compiled_reads.py, and the differential test). The plan does not try to reproduce
anything else: a document it does not cover, and any request that meets an error on its way
(unauthenticated, forbidden, invalid arguments or cursors, variables that do not fit, a
database fault), runs on the general path instead, which answers it with its own words.
Reading twice is harmless. Every fallback is counted with its reason (`CompiledReads.counts`,
in /readyz) and named in the request log line (`read_path`).
"""

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Any

import orjson
from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.language import Visitor, visit
from sqlalchemy import and_
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.utils.str_converters import to_camel_case

from crm_graphql.api.ids import decode_id_of, encode_global_id
from crm_graphql.db import lead_reads
from crm_graphql.db.lead_reads import LeadColumns
from crm_graphql.db.sql import Sql
from crm_graphql.domain.access import (
    Actor,
    Permission,
    Role,
    may_read_lead,
    readable_lead_stages,
)
from crm_graphql.domain.enums import LeadSource, LeadStage, SaleStage, ScoreRecommendation
from crm_graphql.domain.lead import LEAD_FIELDS
from crm_graphql.services.pagination import PageArgs, SortKey, decode_cursor, encode_cursor
from crm_graphql.services.pagination import page_window as window_of
from crm_graphql.services.queries import LEAD_SORT_KEYS, LeadFilter, LeadOrder
from crm_graphql.settings import Settings

logger = logging.getLogger(__name__)

# Plans kept, per distinct document, operation and shaping variables.
CACHED_PLANS = 512

Row = Any  # an asyncpg record, read by column name
Build = Callable[[Any], Any]
ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]


class Unsupported(Exception):
    """The plan cannot reproduce this request; the message is the fallback's reason."""


def enum_names(enum: type[Enum]) -> dict[Any, str]:
    """Stored value -> the GraphQL name a client reads (Strawberry names enum values by their
    Python names)."""
    return {member.value: member.name for member in enum}


LEAD_SOURCES = enum_names(LeadSource)
LEAD_STAGES = enum_names(LeadStage)
SALE_STAGES = enum_names(SaleStage)
RECOMMENDATIONS = enum_names(ScoreRecommendation)
ROLES = enum_names(Role)


def iso(value: datetime) -> str:
    return value.isoformat()


def iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def obj(fields: list[tuple[str, Build]], source: Any) -> dict[str, Any]:
    return {key: build(source) for key, build in fields}


# --- compiling a selection --------------------------------------------------------------


@dataclass
class Compiler:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: VariableValues

    def included(self, node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                raise Unsupported(f"directive @{name}")
            value = (directive.arguments or ())[0].value
            if isinstance(value, VariableNode):
                condition = self.variables.coerced.get(value.name.value)
            elif isinstance(value, BooleanValueNode):
                condition = value.value
            else:
                raise Unsupported("directive argument")
            if condition is (name == "skip"):
                return False
        return True

    def collect(
        self,
        selection_sets: Iterable[SelectionSetNode],
        type_name: str,
        interfaces: tuple[str, ...],
    ) -> dict[str, list[FieldNode]]:
        """The fields selected on an object of `type_name` by response key, in the order the
        general executor writes them (first appearance), fragments applied."""
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        applies = {type_name, *interfaces}

        def walk(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if not self.included(selection):  # type: ignore[arg-type]
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    grouped.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    if condition is None or condition.name.value in applies:
                        walk(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in visited:
                        continue
                    visited.add(name)
                    fragment = self.fragments[name]
                    if fragment.type_condition.name.value in applies:
                        walk(fragment.selection_set)

        for selection_set in selection_sets:
            walk(selection_set)
        return grouped

    def subfields(
        self, nodes: list[FieldNode], type_name: str, interfaces: tuple[str, ...] = ()
    ) -> dict[str, list[FieldNode]]:
        return self.collect(
            [node.selection_set for node in nodes if node.selection_set], type_name, interfaces
        )

    def arguments(self, type_name: str, node: FieldNode) -> dict[str, Any]:
        definition = self.schema.get_type(type_name).fields[node.name.value]  # type: ignore[union-attr]
        return get_argument_values(definition, node, self.variables)

    # --- Lead ------------------------------------------------------------------------------

    def lead(self, nodes: list[FieldNode], columns: LeadColumns) -> list[tuple[str, Build]]:
        built: list[tuple[str, Build]] = []
        for key, group in self.subfields(nodes, "Lead", ("Node",)).items():
            name = group[0].name.value
            built.append((key, self.lead_field(name, group, columns)))
        return built

    def lead_field(self, name: str, group: list[FieldNode], columns: LeadColumns) -> Build:
        if name == "__typename":
            return constant("Lead")
        if name == "id":
            return partial(global_id, "Lead", columns.lead("id"))
        if name in PLAIN_LEAD_FIELDS:
            return PLAIN_LEAD_FIELDS[name](columns)
        if name == "score":
            return self.score(group, columns)
        if name == "sale":
            return self.sale(group, columns)
        if name in ("owner", "createdBy"):
            column = "owner_id" if name == "owner" else "created_by"
            return self.user(group, columns, f"{column}_user", f"leads.{column}")
        if name == "history":
            include_merged = self.arguments("Lead", group[0])["includeMerged"]
            of = "lead_with_merged" if include_merged else "lead"
            return self.history(group, columns, of, "LeadStageChange", LEAD_STAGES)
        raise Unsupported(f"Lead.{name}")

    def score(self, nodes: list[FieldNode], columns: LeadColumns) -> Build:
        value, data = columns.lead("score_value"), columns.lead("score")
        current = (
            columns.lead("source"),
            columns.lead("business_domain"),
            columns.lead("activity_count"),
        )
        built: list[tuple[str, Build]] = []
        for key, group in self.subfields(nodes, "LeadScore").items():
            name = group[0].name.value
            if name == "factors":
                factor = [
                    (factor_key, FACTOR_FIELDS[factor_group[0].name.value])
                    for factor_key, factor_group in self.subfields(group, "ScoreFactor").items()
                ]
                built.append((key, partial(factors, factor)))
            elif name == "stale":
                built.append((key, partial(stale, current)))
            else:
                built.append((key, SCORE_FIELDS[name]))
        return partial(score, value, data, built)

    def sale(self, nodes: list[FieldNode], columns: LeadColumns) -> Build:
        sale_id = columns.sale("id")
        built: list[tuple[str, Build]] = []
        for key, group in self.subfields(nodes, "Sale", ("Node",)).items():
            name = group[0].name.value
            if name == "__typename":
                built.append((key, constant("Sale")))
            elif name == "id":
                built.append((key, partial(global_id, "Sale", sale_id)))
            elif name == "stage":
                built.append((key, partial(named, SALE_STAGES, columns.sale("stage"))))
            elif name == "createdAt":
                built.append((key, partial(read, iso, columns.sale("created_at"))))
            elif name == "transferredBy":
                built.append((key, self.user(group, columns, "transferrer", "sale.transferred_by")))
            elif name == "history":
                built.append(
                    (key, self.history(group, columns, "sale", "SaleStageChange", SALE_STAGES))
                )
            else:
                raise Unsupported(f"Sale.{name}")
        return partial(present_if, sale_id, built)

    def user(self, nodes: list[FieldNode], columns: LeadColumns, alias: str, user_id: str) -> Build:
        names = [columns.user(alias, user_id, column) for column in ("id", "name", "role")]
        built = self.user_fields(nodes)
        return partial(user_of_row, names, built)

    def user_fields(self, nodes: list[FieldNode]) -> list[tuple[str, Build]]:
        """Over (id, name, role) as stored."""
        return [
            (key, USER_FIELDS[group[0].name.value])
            for key, group in self.subfields(nodes, "User").items()
        ]

    def history(
        self,
        nodes: list[FieldNode],
        columns: LeadColumns,
        of: str,
        type_name: str,
        stages: dict[Any, str],
    ) -> Build:
        wanted = ["change.id"]

        def position(column: str) -> int:
            if column not in wanted:
                wanted.append(column)
            return wanted.index(column)

        built: list[tuple[str, Build]] = []
        for key, group in self.subfields(nodes, type_name).items():
            name = group[0].name.value
            if name == "__typename":
                built.append((key, constant(type_name)))
            elif name == "from":
                built.append((key, partial(stage_or_none, stages, position("change.from_stage"))))
            elif name == "to":
                built.append((key, partial(named, stages, position("change.to_stage"))))
            elif name == "at":
                built.append((key, partial(read, iso, position("change.at"))))
            elif name == "note" and of != "sale":
                built.append((key, partial(item, position("change.note"))))
            elif name == "by":
                user = [position(f"by_user.{column}") for column in ("id", "name", "role")]
                built.append((key, partial(user_of_row, user, self.user_fields(group))))
            else:
                raise Unsupported(f"{type_name}.{name}")
        alias = f"history_{len(columns.joins)}"
        arrays = columns.history(alias, of, wanted)
        return partial(changes, arrays, built)

    # --- LeadConnection ------------------------------------------------------------------

    def connection(self, nodes: list[FieldNode], columns: LeadColumns) -> "ConnectionPlan":
        plan = ConnectionPlan(columns)
        columns.lead("id")
        for key, group in self.subfields(nodes, "LeadConnection").items():
            name = group[0].name.value
            if name == "__typename":
                plan.fields.append((key, constant("LeadConnection")))
            elif name == "totalCount":
                plan.counts = True
                plan.fields.append((key, total_count))
            elif name == "pageInfo":
                info = [
                    (info_key, PAGE_INFO_FIELDS[info_group[0].name.value])
                    for info_key, info_group in self.subfields(group, "PageInfo").items()
                ]
                plan.fields.append((key, partial(obj, info)))
            elif name == "edges":
                plan.fields.append((key, self.edges(group, columns)))
            else:
                raise Unsupported(f"LeadConnection.{name}")
        return plan

    def edges(self, nodes: list[FieldNode], columns: LeadColumns) -> Build:
        built: list[tuple[str, Callable[[LeadPage, Row], Any]]] = []
        for key, group in self.subfields(nodes, "LeadEdge").items():
            name = group[0].name.value
            if name == "__typename":
                built.append((key, edge_typename))
            elif name == "cursor":
                built.append((key, LeadPage.cursor))
            elif name == "node":
                node = self.lead(group, columns)
                built.append((key, partial(edge_node, node)))
            else:
                raise Unsupported(f"LeadEdge.{name}")
        return partial(edges, built)


def constant(value: str) -> Build:
    return lambda _: value


def read(convert: Callable[[Any], Any], column: Any, row: Row) -> Any:
    return convert(row[column])


def item(column: Any, row: Row) -> Any:
    return row[column]


def named(names: dict[Any, str], column: Any, row: Row) -> str:
    return names[row[column]]


def stage_or_none(names: dict[Any, str], column: Any, row: Row) -> str | None:
    # As the domain reads it: an empty or missing from-stage is none.
    value = row[column]
    return names[value] if value else None


def global_id(type_name: str, column: str, row: Row) -> str:
    return encode_global_id(type_name, row[column])


def present_if(column: str, built: list[tuple[str, Build]], row: Row) -> dict[str, Any] | None:
    return None if row[column] is None else obj(built, row)


def user_of_row(
    columns: list[Any], built: list[tuple[str, Build]], row: Row
) -> dict[str, Any] | None:
    user_id, name, role = (row[column] for column in columns)
    return None if user_id is None else obj(built, (user_id, name, role))


USER_FIELDS: dict[str, Build] = {
    "__typename": constant("User"),
    "id": lambda user: user[0],
    "name": lambda user: user[1],
    "role": lambda user: ROLES[user[2]],
}


def changes(arrays: list[str], built: list[tuple[str, Build]], row: Row) -> list[dict[str, Any]]:
    columns = [row[name] for name in arrays]
    if columns[0] is None:
        return []
    return [obj(built, change) for change in zip(*columns, strict=True)]


def plain_lead_field(column: str, kind: str) -> Callable[[LeadColumns], Build]:
    def compile_field(columns: LeadColumns) -> Build:
        name = columns.lead(column)
        if kind == "datetime":
            return partial(read, iso, name)
        if kind == "datetime?":
            return partial(read, iso_or_none, name)
        if kind == "source":
            return partial(named, LEAD_SOURCES, name)
        if kind == "stage":
            return partial(named, LEAD_STAGES, name)
        return partial(item, name)

    return compile_field


def stored_lead_field(lead_field: Any) -> Callable[[LeadColumns], Build]:
    """A field stored in several columns: read as the domain reads and shows it."""
    storage = lead_field.spec.storage

    def compile_field(columns: LeadColumns) -> Build:
        for column in lead_field.columns(None):
            columns.lead(column)
        return lambda row: storage.shown(storage.from_row(row))

    return compile_field


PLAIN_LEAD_FIELDS: dict[str, Callable[[LeadColumns], Build]] = {
    "source": plain_lead_field("source", "source"),
    "stage": plain_lead_field("stage", "stage"),
    "activityCount": plain_lead_field("activity_count", "int"),
    "createdAt": plain_lead_field("created_at", "datetime"),
    "updatedAt": plain_lead_field("updated_at", "datetime"),
    "lostReason": plain_lead_field("lost_reason", "str"),
    **{
        to_camel_case(f.name): (
            stored_lead_field(f)
            if f.spec.storage is not None
            else plain_lead_field(f.name, "datetime?" if f.spec.type is datetime else "str")
        )
        for f in LEAD_FIELDS
    },
}


# A score is (value, its stored data, the lead's row).
def score(value: str, data: str, built: list[tuple[str, Build]], row: Row) -> dict[str, Any] | None:
    stored_value, stored = row[value], row[data]
    if stored_value is None or stored is None:
        return None
    return obj(built, (stored_value, stored, row))


def stale(current: tuple[str, str, str], score: tuple[float, Any, Row]) -> bool:
    inputs, row = score[1]["inputs"], score[2]
    source, business_domain, activity_count = current
    return (inputs["source"], inputs["business_domain"], inputs["activity_count"]) != (
        row[source],
        row[business_domain],
        row[activity_count],
    )


def strings(values: list[Any]) -> list[str]:
    if not all(type(value) is str for value in values):
        raise TypeError("not a list of strings")
    return list(values)


SCORE_FIELDS: dict[str, Build] = {
    "__typename": constant("LeadScore"),
    "value": lambda score: float(score[0]),
    "recommendation": lambda score: RECOMMENDATIONS[score[1]["recommendation"]],
    "reasons": lambda score: strings(score[1]["reasons"]),
    "scorer": lambda score: score[1]["scorer"],
    "scorerVersion": lambda score: score[1].get("scorer_version"),
    "scoredAt": lambda score: datetime.fromisoformat(score[1]["scored_at"]).isoformat(),
}
FACTOR_FIELDS: dict[str, Build] = {
    "__typename": constant("ScoreFactor"),
    "name": lambda factor: factor["name"],
    "contribution": lambda factor: float(factor["contribution"]),
    "explanation": lambda factor: factor["explanation"],
}


def factors(built: list[tuple[str, Build]], score: tuple[float, Any, Row]) -> list[Any]:
    return [obj(built, factor) for factor in score[1].get("factors", ())]


# --- pages ------------------------------------------------------------------------------


@dataclass
class LeadPage:
    rows: list[Row]
    sort: SortKey
    has_next_page: bool
    has_previous_page: bool
    total: int | None

    def cursor(self, row: Row) -> str:
        return encode_cursor(self.sort, row["sort_key"], row["id"])


def edge_typename(page: LeadPage, row: Row) -> str:
    return "LeadEdge"


def edge_node(node: list[tuple[str, Build]], page: LeadPage, row: Row) -> dict[str, Any]:
    return obj(node, row)


def edges(built: list[tuple[str, Callable[[LeadPage, Row], Any]]], page: LeadPage) -> list[Any]:
    return [{key: build(page, row) for key, build in built} for row in page.rows]


def total_count(page: LeadPage) -> int:
    assert page.total is not None, "counted when selected"
    return page.total


PAGE_INFO_FIELDS: dict[str, Build] = {
    "__typename": constant("PageInfo"),
    "hasNextPage": lambda page: page.has_next_page,
    "hasPreviousPage": lambda page: page.has_previous_page,
    "startCursor": lambda page: page.cursor(page.rows[0]) if page.rows else None,
    "endCursor": lambda page: page.cursor(page.rows[-1]) if page.rows else None,
}


@dataclass
class ConnectionPlan:
    columns: LeadColumns
    fields: list[tuple[str, Build]] = field(default_factory=list)
    counts: bool = False


# --- root fields ------------------------------------------------------------------------


@dataclass
class Request:
    """What executing a plan needs of one request."""

    engine: AsyncEngine
    settings: Settings
    actor: Actor
    variables: VariableValues
    conn: Any = None  # the connection, taken on first use


RootField = Callable[[Request], Awaitable[Any]]

LEAD_FILTER_FIELDS = {to_camel_case(f.name): f.name for f in fields(LeadFilter)}


def lead_filter(value: Mapping[str, Any] | None) -> LeadFilter:
    return LeadFilter(**{LEAD_FILTER_FIELDS[name]: v for name, v in (value or {}).items()})


def lead_order(value: Mapping[str, Any] | None) -> LeadOrder:
    return LeadOrder(**value) if value else LeadOrder()


def filter_sql(lead_filter: LeadFilter) -> tuple[str | None, dict[str, Any]]:
    """The filter's conditions (the general path's, compiled for asyncpg) with `:filter_n`
    parameters, and their values."""
    conditions = lead_filter.conditions()
    if not conditions:
        return None, {}
    compiled = and_(*conditions).compile(
        dialect=ASYNCPG, compile_kwargs={"render_postcompile": True}
    )
    positions = compiled.positiontup or []
    text = compiled.string
    # Highest first, so $1 does not match the start of $10.
    for index in range(len(positions), 0, -1):
        text = text.replace(f"${index}", f":filter_{index}")
    params = compiled.params
    return text, {f"filter_{index}": params[name] for index, name in enumerate(positions, 1)}


@dataclass
class LeadsField:
    definition: GraphQLField
    node: FieldNode
    plan: ConnectionPlan
    statements: dict[tuple[Any, ...], Sql] = field(default_factory=dict)

    async def __call__(self, request: Request) -> Any:
        args = get_argument_values(self.definition, self.node, request.variables)
        filter_given = lead_filter(args["filter"])
        order = lead_order(args["orderBy"])
        settings = request.settings
        window = window_of(
            PageArgs(args["first"], args["after"], args["last"], args["before"]),
            settings.default_page_size,
            settings.max_page_size,
        )
        conditions, values = [], {}
        filter_text, filter_values = filter_sql(filter_given)
        if filter_text:
            conditions.append(filter_text)
            values.update(filter_values)
        readable = readable_lead_stages(request.actor)
        if readable is not None:
            conditions.append("leads.stage = ANY(:readable::varchar[])")
            values["readable"] = sorted(stage.value for stage in readable)
        sort = LEAD_SORT_KEYS[order.field]
        descending = order.descending != window.backwards
        key = sort_sql(sort)
        counted = list(conditions)
        if window.cursor is not None:
            value, row_id = decode_cursor(sort, window.cursor, window.cursor_field)
            kind = "timestamptz" if sort.kind is datetime else "float8"
            comparison = "<" if descending else ">"
            conditions.append(
                f"({key}, leads.id) {comparison} (:cursor_value::{kind}, :cursor_id::bigint)"
            )
            values.update(cursor_value=value, cursor_id=row_id)
        direction = "DESC" if descending else "ASC"
        shape = (filter_text, readable is not None, order.field, descending, window.cursor is None)
        statement = self.statements.get(shape)
        if statement is None:
            columns = LeadColumns(
                dict(self.plan.columns.expressions), dict(self.plan.columns.joins)
            )
            columns.add("sort_key", key)
            if self.plan.counts:
                where = f" WHERE {' AND '.join(counted)}" if counted else ""
                columns.add("total__count", f"(SELECT count(*) FROM leads{where})")
            statement = lead_reads.lead_statement(
                columns, conditions, f"{key} {direction}, leads.id {direction}", limit=True
            )
            if filter_text is None:  # a filter's text holds its values' count: not kept
                self.statements[shape] = statement
        values["limit"] = window.limit + 1
        rows = await lead_reads.fetch_leads(request.conn, statement, values)
        has_more = len(rows) > window.limit
        rows = rows[: window.limit]
        if window.backwards:
            rows.reverse()
        has_next, has_previous = window.has_next_and_previous(has_more)
        total: int | None = None
        if self.plan.counts:
            total = rows[0]["total__count"] if rows else await self.count(request, counted, values)
        page = LeadPage(rows, sort, has_next, has_previous, total)
        return obj(self.plan.fields, page)

    async def count(self, request: Request, conditions: list[str], values: dict[str, Any]) -> int:
        """The total of an empty page, which has no row to carry it."""
        columns = LeadColumns({"total__count": "count(*)"})
        names = [name for name in values if name not in ("cursor_value", "cursor_id", "limit")]
        statement = lead_reads.lead_statement(columns, conditions)
        rows = await lead_reads.fetch_leads(
            request.conn, statement, {name: values[name] for name in names}
        )
        return int(rows[0]["total__count"])


def sort_sql(sort: SortKey) -> str:
    return str(sort.expression.compile(dialect=ASYNCPG, compile_kwargs={"literal_binds": True}))


@dataclass
class LeadField:
    definition: GraphQLField
    node: FieldNode
    fields: list[tuple[str, Build]]
    statement: Sql

    async def __call__(self, request: Request) -> Any:
        args = get_argument_values(self.definition, self.node, request.variables)
        pk = decode_id_of("Lead", args["id"], "id")
        readable_lead_stages(request.actor)  # Forbidden for a role that reads no lead
        rows = await lead_reads.fetch_leads(request.conn, self.statement, {"id": pk})
        if not rows or not may_read_lead(request.actor, LeadStage(rows[0]["stage"])):
            return None
        return obj(self.fields, rows[0])


@dataclass
class Plan:
    """A compiled query: its root fields in response order."""

    root: list[tuple[str, RootField | str]]
    needs_sales: bool


def compile_plan(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues,
) -> Plan:
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    compiler = Compiler(schema, fragments, variables)
    query_type = schema.query_type
    assert query_type is not None
    root: list[tuple[str, RootField | str]] = []
    needs_sales = False
    for key, group in compiler.collect([operation.selection_set], "Query", ()).items():
        name = group[0].name.value
        if name == "__typename":
            root.append((key, "Query"))
            continue
        columns = LeadColumns()
        if name == "leads":
            plan = compiler.connection(group, columns)
            root.append((key, LeadsField(query_type.fields[name], group[0], plan)))
        elif name == "lead":
            columns.lead("stage")
            built = compiler.lead(group, columns)
            statement = lead_reads.lead_statement(columns, ["leads.id = :id"])
            root.append((key, LeadField(query_type.fields[name], group[0], built, statement)))
        else:
            raise Unsupported(f"Query.{name}")
        needs_sales = needs_sales or "sale" in columns.joins
    return Plan(root, needs_sales)


# --- the cache and the entry point ------------------------------------------------------


class ShapingVariables(Visitor):
    """The variables a plan is compiled for: all but those only the root fields' arguments
    use (those are read per request)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.names.add(node.name.value)


def shaping_variables(document: DocumentNode, operation: OperationDefinitionNode) -> frozenset[str]:
    finder = ShapingVariables()
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            for directive in selection.directives or ():
                visit(directive, finder)
            if selection.selection_set:
                visit(selection.selection_set, finder)
        else:
            visit(selection, finder)
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            visit(definition, finder)
    return frozenset(finder.names)


@dataclass
class Analysed:
    """A document's operation, checked once: the operation and its shaping variables, or why
    it is not compiled."""

    operation: OperationDefinitionNode | None
    shaping: frozenset[str] = frozenset()
    unsupported: str | None = None
    plans: dict[tuple[Any, ...], Plan | str] = field(default_factory=dict)


class CompiledReads:
    """The plans of the documents seen, and the counts of requests served and fallen back."""

    def __init__(self, schema: GraphQLSchema, engine: AsyncEngine, settings: Settings) -> None:
        self.schema = schema
        self.engine = engine
        self.settings = settings
        self.analysed: dict[tuple[str, str | None], Analysed] = {}
        self.counts: Counter[str] = Counter()

    def analyse(self, document: DocumentNode, query: str, operation_name: str | None) -> Analysed:
        key = (query, operation_name)
        found = self.analysed.get(key)
        if found is not None:
            return found
        operations = [
            definition
            for definition in document.definitions
            if isinstance(definition, OperationDefinitionNode)
        ]
        chosen = [
            op
            for op in operations
            if operation_name is None or (op.name is not None and op.name.value == operation_name)
        ]
        if len(chosen) != 1 or (operation_name is None and len(operations) != 1):
            analysed = Analysed(None, unsupported="operation not chosen")
        elif chosen[0].operation is not OperationType.QUERY:
            analysed = Analysed(None, unsupported=chosen[0].operation.value)
        else:
            analysed = Analysed(chosen[0], shaping_variables(document, chosen[0]))
        if len(self.analysed) >= CACHED_PLANS:
            self.analysed.pop(next(iter(self.analysed)))
        self.analysed[key] = analysed
        return analysed

    def plan(self, document: DocumentNode, analysed: Analysed, variables: VariableValues) -> Plan:
        assert analysed.operation is not None
        key = tuple(sorted((name, repr(variables.coerced.get(name))) for name in analysed.shaping))
        plan = analysed.plans.get(key)
        if plan is None:
            try:
                plan = compile_plan(self.schema, document, analysed.operation, variables)
            except Unsupported as unsupported:
                plan = str(unsupported)
            if len(analysed.plans) < CACHED_PLANS:
                analysed.plans[key] = plan
        if isinstance(plan, str):
            raise Unsupported(plan)
        return plan

    async def execute(
        self,
        document: DocumentNode,
        query: str,
        operation_name: str | None,
        raw_variables: dict[str, Any] | None,
        actor: Actor,
    ) -> tuple[dict[str, Any], str | None]:
        """The response's `data` and the operation's name; Unsupported (or any other error)
        to fall back."""
        analysed = self.analyse(document, query, operation_name)
        if analysed.operation is None:
            raise Unsupported(analysed.unsupported or "operation")
        variables = get_variable_values(
            self.schema,
            analysed.operation.variable_definitions or (),
            raw_variables or {},
            hide_suggestions=self.settings.production,
        )
        if isinstance(variables, list):
            raise Unsupported("variables")
        plan = self.plan(document, analysed, variables)
        if plan.needs_sales and not actor.may(Permission.READ_SALES):
            raise Unsupported("forbidden")
        request = Request(self.engine, self.settings, actor, variables)
        data: dict[str, Any] = {}
        async with self.engine.connect() as conn:
            request.conn = conn
            for key, root in plan.root:
                data[key] = root if isinstance(root, str) else await root(request)
        name = analysed.operation.name
        return data, operation_name or (name.value if name else None)

    def count(self, outcome: str) -> None:
        self.counts[outcome] += 1


def encode(data: dict[str, Any], extensions: dict[str, Any] | None = None) -> bytes:
    response: dict[str, Any] = {"data": data}
    if extensions:
        response["extensions"] = extensions
    return orjson.dumps(response)
