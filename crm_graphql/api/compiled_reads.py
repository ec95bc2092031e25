"""Compiled reads: the queries a front end sends most, answered without the general executor.

A query document is compiled once (per operation, and per value of the variables that shape
it: @skip/@include conditions, nested arguments) into a plan: one SQL statement per root field
(db/lead_reads.py: a page of leads with their score, sale, users, histories and joined leads
in one row each) and one Python function per root field that builds its output from the rows
(a single expression: dict displays, comprehensions, conditionals), with the arguments
converted at compile time. Executing a plan reads the rows, calls that function and encodes
the response once with orjson: no resolver call, no task, no argument conversion per field.

The response is byte for byte the one the general path gives (tests/integration/
test_compiled_reads.py, and the differential test). The plan does not try to reproduce
anything else: a document it does not cover, and any request that meets an error on its way
(unauthenticated, forbidden, invalid arguments or cursors, variables that do not fit, a
database fault), runs on the general path instead, which answers it with its own words.
Reading twice is harmless. Every fallback is counted with its reason (`CompiledReads.counts`,
in /readyz) and named in the request log line (`read_path`).
"""

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any, cast

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

from crm_graphql.api.ids import decode_global_id, decode_id_of
from crm_graphql.db import lead_reads
from crm_graphql.db.engine import pooled
from crm_graphql.db.lead_reads import LeadColumns, global_id_text, iso_text, name_in
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
from crm_graphql.services.pagination import (
    PageArgs,
    SortKey,
    cursor_of,
    decode_cursor,
    encode_cursor,
    page_window,
)
from crm_graphql.services.queries import LEAD_SORT_KEYS, LeadFilter, LeadOrder
from crm_graphql.settings import Settings

# Documents analysed, and plans kept in all (per document, operation and shaping variables):
# bounded in total, so that a client sending ever new variable values costs compile time,
# not memory (a plan is about 8 KiB).
CACHED_PLANS = 512
# Statements kept per page field: one per filter shape (fields given, list lengths), ordering,
# direction, cursor or none, role's visibility.
CACHED_STATEMENTS = 16

Row = Any  # an asyncpg record, read by column name
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


def reformatted_instant(text: str) -> str:
    """A stored ISO 8601 instant as the general path writes it (parsed, then isoformat)."""
    return datetime.fromisoformat(text).isoformat()


def strings(values: list[Any]) -> list[str]:
    if not all(type(value) is str for value in values):
        raise TypeError("not a list of strings")
    return values


def changes_of(arrays: list[list[Any] | None]) -> Any:
    """A history's changes, one tuple each, from its parallel arrays (all NULL for none)."""
    return () if arrays[0] is None else zip(*arrays, strict=True)


class Source:
    """Python source for a builder: one expression per selection (a dict display, a list
    comprehension, a conditional), so building a page is one function call per root field,
    with no call per field. Values the code refers to are named here."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.loops = 0

    def value(self, value: Any) -> str:
        for name, known in self.values.items():
            if known is value:
                return name
        name = f"value_{len(self.values)}"
        self.values[name] = value
        return name

    def loop_variable(self) -> str:
        self.loops += 1
        return f"item_{self.loops}"

    def function(self, parameter: str, expression: str) -> Callable[[Any], Any]:
        code = compile(f"lambda {parameter}: {expression}", "<compiled read>", "eval")
        return cast("Callable[[Any], Any]", eval(code, dict(self.values)))


def display(fields: list[tuple[str, str]]) -> str:
    """A dict display with the keys in selection order."""
    return "{" + ", ".join(f"{key!r}: {expression}" for key, expression in fields) + "}"


def column(row: str, name: str) -> str:
    return f"{row}[{name!r}]"


# --- compiling a selection --------------------------------------------------------------


@dataclass
class Compiler:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: VariableValues
    source: Source = field(default_factory=Source)

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
    ) -> list[tuple[str, str, list[FieldNode]]]:
        """(response key, field name, its nodes) of the fields selected below `nodes`."""
        grouped = self.collect(
            [node.selection_set for node in nodes if node.selection_set], type_name, interfaces
        )
        return [(key, group[0].name.value, group) for key, group in grouped.items()]

    def arguments(self, type_name: str, node: FieldNode) -> dict[str, Any]:
        definition = self.schema.get_type(type_name).fields[node.name.value]  # type: ignore[union-attr]
        return get_argument_values(definition, node, self.variables)

    # --- Lead ------------------------------------------------------------------------------

    def lead(
        self, nodes: list[FieldNode], columns: LeadColumns, row: str, table: str = "leads"
    ) -> str:
        """The expression of a Lead selection over its row: the lead in `table`, `leads` or
        the alias of a lead joined to it."""
        return display(
            [
                (key, self.lead_field(name, group, columns, row, table))
                for key, name, group in self.subfields(nodes, "Lead", ("Node",))
            ]
        )

    def lead_field(
        self, name: str, group: list[FieldNode], columns: LeadColumns, row: str, table: str
    ) -> str:
        source = self.source

        def read(column_name: str, sql_expression: str) -> str:
            return column(row, columns.add(name_in(table, column_name), sql_expression))

        if name == "__typename":
            return repr("Lead")
        if name == "id":
            return read("lead__global_id", global_id_text("Lead", f"{table}.id"))
        if name in ("source", "stage"):
            names = LEAD_SOURCES if name == "source" else LEAD_STAGES
            return f"{source.value(names)}[{column(row, columns.lead(name, table))}]"
        if name in LEAD_COLUMNS:
            return column(row, columns.lead(LEAD_COLUMNS[name], table))
        if name in LEAD_INSTANTS:
            instant = LEAD_INSTANTS[name]
            return read(f"{instant}__iso", iso_text(f"{table}.{instant}"))
        if name in SHOWN_COLUMNS:
            shown = SHOWN_COLUMNS[name]
            return read(f"{shown}__shown", f"NULLIF({table}.{shown}, '')")
        if name == "score":
            return self.score(group, columns, row, table)
        if name == "sale":
            return self.sale(group, columns, row, table)
        if name in ("owner", "createdBy"):
            user_column = "owner_id" if name == "owner" else "created_by"
            alias = name_in(table, f"{user_column}_user")
            fields = [columns.user(alias, f"{table}.{user_column}", c) for c in USER_COLUMNS]
            return self.user(group, *(column(row, f) for f in fields))
        if name == "history":
            include_merged = self.arguments("Lead", group[0])["includeMerged"]
            of = "lead_with_merged" if include_merged else "lead"
            return self.history(group, columns, row, table, of, "LeadStageChange", LEAD_STAGES)
        if name in ("mergedInto", "duplicateOf"):
            # Joined only when the caller may read it: null otherwise, as the loader says.
            lead_column = "merged_into" if name == "mergedInto" else "duplicate_of"
            joined = columns.joined_lead(f"{table}.{lead_column}")
            joined_id = column(row, columns.lead("id", joined))
            return f"(None if {joined_id} is None else {self.lead(group, columns, row, joined)})"
        raise Unsupported(f"Lead.{name}")

    def score(self, nodes: list[FieldNode], columns: LeadColumns, row: str, table: str) -> str:
        source = self.source

        def read(column_name: str, sql_template: str) -> str:
            sql_expression = sql_template.format(lead=table)
            return column(row, columns.add(name_in(table, column_name), sql_expression))

        fields: list[tuple[str, str]] = []
        for key, name, group in self.subfields(nodes, "LeadScore"):
            if name == "__typename":
                expression = repr("LeadScore")
            elif name == "value":
                expression = column(row, columns.lead("score_value", table))
            elif name == "factors":
                factor = source.loop_variable()
                factor_fields = [
                    (
                        factor_key,
                        FACTOR_FIELDS[factor_name].format(factor, float=source.value(float)),
                    )
                    for factor_key, factor_name, _ in self.subfields(group, "ScoreFactor")
                ]
                stored = read("score__factors", "{lead}.score->'factors'")
                expression = f"[{display(factor_fields)} for {factor} in ({stored} or ())]"
            elif name in SCORE_FIELDS:
                sql_template, convert = SCORE_FIELDS[name]
                value = read(f"score__{name.lower()}", sql_template)
                expression = f"{source.value(convert)}({value})" if convert else value
            else:
                raise Unsupported(f"LeadScore.{name}")
            fields.append((key, expression))
        missing = read("score__missing", "({lead}.score IS NULL OR {lead}.score_value IS NULL)")
        return f"(None if {missing} else {display(fields)})"

    def sale(self, nodes: list[FieldNode], columns: LeadColumns, row: str, table: str) -> str:
        sale_id = column(row, columns.sale("id", table))
        sale = name_in(table, "sale")
        fields: list[tuple[str, str]] = []
        for key, name, group in self.subfields(nodes, "Sale", ("Node",)):
            if name == "__typename":
                expression = repr("Sale")
            elif name == "id":
                expression = column(
                    row, columns.add(f"{sale}__global_id", global_id_text("Sale", f"{sale}.id"))
                )
            elif name == "stage":
                stage = column(row, columns.sale("stage", table))
                expression = f"{self.source.value(SALE_STAGES)}[{stage}]"
            elif name == "createdAt":
                expression = column(
                    row, columns.add(f"{sale}__created_at__iso", iso_text(f"{sale}.created_at"))
                )
            elif name == "transferredBy":
                alias = name_in(table, "transferrer")
                user = [columns.user(alias, f"{sale}.transferred_by", c) for c in USER_COLUMNS]
                expression = self.user(group, *(column(row, f) for f in user))
            elif name == "history":
                expression = self.history(
                    group, columns, row, table, "sale", "SaleStageChange", SALE_STAGES
                )
            elif name == "lead":
                # The lead the sale was reached from: the caller reads it already.
                expression = self.lead(group, columns, row, table)
            else:
                raise Unsupported(f"Sale.{name}")
            fields.append((key, expression))
        return f"(None if {sale_id} is None else {display(fields)})"

    def user(self, nodes: list[FieldNode], user_id: str, name: str, role: str) -> str:
        """A User from the expressions of its stored id, name and role (id None: no user)."""
        stored = {"id": user_id, "name": name, "role": f"{self.source.value(ROLES)}[{role}]"}
        fields = [
            (key, repr("User") if field_name == "__typename" else stored[field_name])
            for key, field_name, _ in self.subfields(nodes, "User")
        ]
        return f"(None if {user_id} is None else {display(fields)})"

    def history(
        self,
        nodes: list[FieldNode],
        columns: LeadColumns,
        row: str,
        table: str,
        of: str,
        type_name: str,
        stages: dict[Any, str],
    ) -> str:
        wanted = ["change.id"]
        change = self.source.loop_variable()

        def element(sql_expression: str) -> str:
            if sql_expression not in wanted:
                wanted.append(sql_expression)
            return f"{change}[{wanted.index(sql_expression)}]"

        names = self.source.value(stages)
        fields: list[tuple[str, str]] = []
        for key, name, group in self.subfields(nodes, type_name):
            if name == "__typename":
                expression = repr(type_name)
            elif name == "from":
                # As the domain reads it: an empty from-stage is none.
                from_stage = element("change.from_stage")
                expression = f"({names}[{from_stage}] if {from_stage} else None)"
            elif name == "to":
                expression = f"{names}[{element('change.to_stage')}]"
            elif name == "at":
                expression = element(iso_text("change.at"))
            elif name == "note" and of != "sale":
                expression = element("change.note")
            elif name == "by":
                user = [element(f"by_user.{c}") for c in USER_COLUMNS]
                expression = self.user(group, *user)
            else:
                raise Unsupported(f"{type_name}.{name}")
            fields.append((key, expression))
        arrays = columns.history(f"history_{len(columns.joins)}", of, wanted, table)
        listed = ", ".join(column(row, name) for name in arrays)
        return f"[{display(fields)} for {change} in {self.source.value(changes_of)}([{listed}])]"

    # --- LeadConnection ------------------------------------------------------------------

    def connection(self, nodes: list[FieldNode], columns: LeadColumns) -> "ConnectionPlan":
        """A LeadConnection selection, as a function of its page."""
        columns.lead("id")  # for cursors
        counts = False
        fields: list[tuple[str, str]] = []
        for key, name, group in self.subfields(nodes, "LeadConnection"):
            if name == "__typename":
                expression = repr("LeadConnection")
            elif name == "totalCount":
                counts = True
                expression = "page.total"
            elif name == "pageInfo":
                expression = display(
                    [
                        (info_key, PAGE_INFO_FIELDS[info_name])
                        for info_key, info_name, _ in self.subfields(group, "PageInfo")
                    ]
                )
            elif name == "edges":
                expression = self.edges(group, columns)
            else:
                raise Unsupported(f"LeadConnection.{name}")
            fields.append((key, expression))
        return ConnectionPlan(columns, self.source.function("page", display(fields)), counts)

    def edges(self, nodes: list[FieldNode], columns: LeadColumns) -> str:
        row = self.source.loop_variable()
        fields: list[tuple[str, str]] = []
        for key, name, group in self.subfields(nodes, "LeadEdge"):
            if name == "__typename":
                expression = repr("LeadEdge")
            elif name == "cursor":
                expression = f"page.cursor({row})"
            elif name == "node":
                expression = self.lead(group, columns, row)
            else:
                raise Unsupported(f"LeadEdge.{name}")
            fields.append((key, expression))
        return f"[{display(fields)} for {row} in page.rows]"


USER_COLUMNS = ("id", "name", "role")
# Lead fields read from a column as they are, and instants written as isoformat() does.
LEAD_COLUMNS = {
    "activityCount": "activity_count",
    "lostReason": "lost_reason",
    **{
        to_camel_case(f.name): f.name
        for f in LEAD_FIELDS
        if f.spec.storage is None and f.spec.type is not datetime
    },
}
LEAD_INSTANTS = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    **{
        to_camel_case(f.name): f.name
        for f in LEAD_FIELDS
        if f.spec.storage is None and f.spec.type is datetime
    },
}
# Fields stored in several columns, one of which holds what clients read (others fall back).
SHOWN_COLUMNS = {
    to_camel_case(f.name): f.spec.storage.shown_column
    for f in LEAD_FIELDS
    if f.spec.storage is not None and f.spec.storage.shown_column is not None
}


# LeadScore fields: the SQL that reads each from the stored score, and what converts it.
_INPUTS = "{lead}.score->'inputs'"
SCORE_FIELDS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "recommendation": ("{lead}.score->>'recommendation'", RECOMMENDATIONS.__getitem__),
    "reasons": ("{lead}.score->'reasons'", strings),
    "scorer": ("{lead}.score->>'scorer'", None),
    "scorerVersion": ("{lead}.score->>'scorer_version'", None),
    "scoredAt": ("{lead}.score->>'scored_at'", reformatted_instant),
    # Score.is_stale_for: the inputs it was computed on differ from the lead's.
    "stale": (
        f"(({_INPUTS}->>'source', {_INPUTS}->>'business_domain', "
        f"({_INPUTS}->>'activity_count')::numeric) IS DISTINCT FROM "
        "({lead}.source::text, {lead}.business_domain::text, {lead}.activity_count::numeric))",
        None,
    ),
}
# ScoreFactor fields over a stored factor `{0}`.
FACTOR_FIELDS = {
    "__typename": repr("ScoreFactor"),
    "name": "{0}['name']",
    "contribution": "{float}({0}['contribution'])",
    "explanation": "{0}['explanation']",
}
PAGE_INFO_FIELDS = {
    "__typename": repr("PageInfo"),
    "hasNextPage": "page.has_next_page",
    "hasPreviousPage": "page.has_previous_page",
    "startCursor": "page.start_cursor",
    "endCursor": "page.end_cursor",
}


# --- pages ------------------------------------------------------------------------------


@dataclass
class LeadPage:
    rows: list[Row]
    sort: SortKey
    has_next_page: bool
    has_previous_page: bool
    total: int | None

    def cursor(self, row: Row) -> str:
        if self.sort.kind is datetime:  # selected as isoformat() writes it
            return cursor_of(self.sort, f'"{row["sort_key"]}"', row["id"])
        return encode_cursor(self.sort, row["sort_key"], row["id"])

    @property
    def start_cursor(self) -> str | None:
        return self.cursor(self.rows[0]) if self.rows else None

    @property
    def end_cursor(self) -> str | None:
        return self.cursor(self.rows[-1]) if self.rows else None


@dataclass
class ConnectionPlan:
    columns: LeadColumns
    build: Callable[[LeadPage], Any]
    counts: bool


# --- root fields ------------------------------------------------------------------------


@dataclass
class Request:
    """What executing a plan needs of one request."""

    settings: Settings
    actor: Actor
    variables: VariableValues
    conn: Any = None  # the driver connection the plan's statements run on


RootField = Callable[[Request], Awaitable[Any]]

LEAD_FILTER_FIELDS = {to_camel_case(f.name): f.name for f in fields(LeadFilter)}


def lead_order(value: Mapping[str, Any] | None) -> LeadOrder:
    return LeadOrder(**value) if value else LeadOrder()


def filter_sql(value: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """A `filter` argument's conditions (the general path's, compiled for asyncpg) with
    `:filter_n` parameters, and their values; the same filter sent again (the next page, or
    another caller) is compiled once."""
    given = tuple(
        (name, tuple(v) if isinstance(v, list) else v) for name, v in (value or {}).items()
    )
    return _filter_sql(given)


@lru_cache(maxsize=256)
def _filter_sql(given: tuple[tuple[str, Any], ...]) -> tuple[str | None, dict[str, Any]]:
    fields: dict[str, Any] = {
        LEAD_FILTER_FIELDS[name]: list(v) if isinstance(v, tuple) else v for name, v in given
    }
    conditions = LeadFilter(**fields).conditions()
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
        order = lead_order(args["orderBy"])
        settings = request.settings
        window = page_window(
            PageArgs(args["first"], args["after"], args["last"], args["before"]),
            settings.default_page_size,
            settings.max_page_size,
        )
        conditions, values = [], {}
        filter_text, filter_values = filter_sql(args["filter"])
        if filter_text:
            conditions.append(filter_text)
            values.update(filter_values)
        readable = readable_stages(request.actor)
        if readable is not None:
            conditions.append("leads.stage = ANY(:readable::varchar[])")
        if readable is not None or self.plan.columns.reads_visibility:
            values["readable"] = readable
        sort = LEAD_SORT_KEYS[order.field]
        descending = order.descending != window.backwards
        key = SORT_SQL[order.field]
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
            columns.add("sort_key", iso_text(key) if sort.kind is datetime else key)
            if self.plan.counts:
                where = f" WHERE {' AND '.join(counted)}" if counted else ""
                columns.add("total__count", f"(SELECT count(*) FROM leads{where})")
            statement = lead_reads.lead_statement(
                columns, conditions, f"{key} {direction}, leads.id {direction}", limit=True
            )
            if len(self.statements) < CACHED_STATEMENTS:
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
        return self.plan.build(page)

    async def count(self, request: Request, conditions: list[str], values: dict[str, Any]) -> int:
        """The total of an empty page, which has no row to carry it."""
        columns = LeadColumns({"total__count": "count(*)"})
        statement = lead_reads.lead_statement(columns, conditions)
        rows = await lead_reads.fetch_leads(
            request.conn, statement, {name: values[name] for name in statement.names}
        )
        return int(rows[0]["total__count"])


def readable_stages(actor: Actor) -> list[str] | None:
    """The stages of the leads the actor may read, as a statement takes them (None: all)."""
    readable = readable_lead_stages(actor)
    return None if readable is None else sorted(stage.value for stage in readable)


def sort_sql(sort: SortKey) -> str:
    return str(sort.expression.compile(dialect=ASYNCPG, compile_kwargs={"literal_binds": True}))


SORT_SQL = {field: sort_sql(sort) for field, sort in LEAD_SORT_KEYS.items()}


@dataclass
class LeadByIdField:
    """`lead(id:)`, or `node(id:)` (`any_type`), for an ID of a Lead."""

    definition: GraphQLField
    node: FieldNode
    build: Callable[[Row], Any]
    statement: Sql
    any_type: bool

    async def __call__(self, request: Request) -> Any:
        args = get_argument_values(self.definition, self.node, request.variables)
        if self.any_type:
            decoded = decode_global_id(args["id"])
            if decoded is None or decoded[0] == "Sale":
                raise Unsupported("Query.node: not the ID of a Lead")
            type_name, pk = decoded
            if type_name != "Lead":
                return None
        else:
            pk = decode_id_of("Lead", args["id"], "id")
        readable = readable_stages(request.actor)  # Forbidden for a role that reads no lead
        values = {"id": pk, "readable": readable}  # those of its joined leads
        rows = await lead_reads.fetch_leads(
            request.conn, self.statement, {name: values[name] for name in self.statement.names}
        )
        if not rows or not may_read_lead(request.actor, LeadStage(rows[0]["stage"])):
            return None
        return self.build(rows[0])


@dataclass
class ViewerField:
    build: Callable[[Actor], Any]

    async def __call__(self, request: Request) -> Any:
        return self.build(request.actor)


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
        elif name in ("lead", "node"):
            columns.lead("stage")
            build = compiler.source.function("row", compiler.lead(group, columns, "row"))
            statement = lead_reads.lead_statement(columns, ["leads.id = :id"])
            definition = query_type.fields[name]
            lead = LeadByIdField(definition, group[0], build, statement, any_type=name == "node")
            root.append((key, lead))
        elif name == "viewer":
            # The caller as the token names them.
            user = compiler.user(group, "actor.user_id", "actor.name", "actor.role.value")
            root.append((key, ViewerField(compiler.source.function("actor", user))))
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
        self.plans_kept = 0  # across all analysed documents, at most CACHED_PLANS
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
            evicted = self.analysed.pop(next(iter(self.analysed)))
            self.plans_kept -= len(evicted.plans)
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
            if self.plans_kept < CACHED_PLANS:
                analysed.plans[key] = plan
                self.plans_kept += 1
        if isinstance(plan, str):
            raise Unsupported(plan)
        return plan

    def compilable(
        self, document: DocumentNode, query: str, operation_name: str | None
    ) -> Analysed:
        """The analysis of a query operation; Unsupported for anything else (a mutation, for
        one), decided once per document and before any per-request work."""
        analysed = self.analyse(document, query, operation_name)
        if analysed.operation is None:
            raise Unsupported(analysed.unsupported or "operation")
        return analysed

    async def execute(
        self,
        document: DocumentNode,
        analysed: Analysed,
        operation_name: str | None,
        raw_variables: dict[str, Any] | None,
        actor: Actor,
    ) -> tuple[dict[str, Any], str | None]:
        """The response's `data` and the operation's name (`analysed` from `compilable`);
        Unsupported (or any other error) to fall back."""
        assert analysed.operation is not None, "only compilable operations are executed"
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
        request = Request(self.settings, actor, variables)
        data: dict[str, Any] = {}
        async with pooled(self.engine) as conn:
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
