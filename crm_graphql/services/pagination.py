"""Relay-style keyset pagination: opaque cursors over (sort key, id), stable under inserts."""

import base64
import binascii
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db.repository import count_rows, fetch_rows
from crm_graphql.db.tables import MAX_ID
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation
from crm_graphql.domain.lead import Columns

T = TypeVar("T")


@dataclass(frozen=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True)
class SortKey:
    """A column expression to order by; `kind` says how its values travel in a cursor."""

    name: str
    expression: ColumnElement[Any]
    kind: type[datetime] | type[float]


@dataclass(frozen=True)
class Edge(Generic[T]):
    node: T
    cursor: str


@dataclass(frozen=True)
class Page(Generic[T]):
    edges: list[Edge[T]]
    has_next_page: bool
    has_previous_page: bool
    total_count: Callable[[], Awaitable[int]]


def _invalid(message: str, field: str) -> RuleViolation:
    return RuleViolation(Violation(ErrorCode.INVALID_INPUT, message, (field,)))


def encode_cursor(sort: SortKey, value: Any, row_id: int) -> str:
    # Names are identifiers and ISO dates need no escaping; json.dumps writes floats by repr.
    wire = f'"{value.isoformat()}"' if isinstance(value, datetime) else json.dumps(value)
    return cursor_of(sort, wire, row_id)


def cursor_of(sort: SortKey, wire: str, row_id: int) -> str:
    """The cursor of a row whose sort key is `wire` in JSON: the compact JSON of [name, value,
    id], written out (every edge of every page has one), in unpadded URL-safe base64."""
    raw = f'["{sort.name}",{wire},{row_id}]'.encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_value(sort: SortKey, wire: Any) -> datetime | float:
    if sort.kind is datetime:
        value = datetime.fromisoformat(wire)
        if value.tzinfo is None:
            raise ValueError(wire)
        value.astimezone(UTC)  # OverflowError for instants PostgreSQL cannot hold either
        return value
    number = float(wire)
    if not math.isfinite(number):
        raise ValueError(wire)
    return number


def decode_cursor(sort: SortKey, cursor: str, field: str) -> tuple[Any, int]:
    not_issued = _invalid(f"`{field}` is not a cursor this API issued.", field)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, wire, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise not_issued from None
    if isinstance(name, str) and name != sort.name:
        raise _invalid(f"`{field}` was issued for ordering by {name}, not by {sort.name}.", field)
    try:
        value = _cursor_value(sort, wire)
    except (ValueError, TypeError, OverflowError):
        raise not_issued from None
    # bool is an int subclass; an id out of bigint range would fail in the database instead.
    if name != sort.name or type(row_id) is not int or not 0 < row_id <= MAX_ID:
        raise not_issued
    return value, row_id


def _page_size(value: int | None, field: str, maximum: int) -> int | None:
    if value is not None and not 0 <= value <= maximum:
        raise _invalid(f"`{field}` must be between 0 and {maximum}; got {value}.", field)
    return value


@dataclass(frozen=True)
class Window:
    """The rows a page asks for: up to `limit` from `cursor` on, walking backwards or not."""

    limit: int
    backwards: bool
    cursor: str | None
    cursor_field: str  # the argument the cursor came in: "after" or "before"

    def has_next_and_previous(self, has_more: bool) -> tuple[bool, bool]:
        """hasNextPage and hasPreviousPage, given whether rows beyond `limit` exist."""
        if self.backwards:
            return self.cursor is not None, has_more
        return has_more, self.cursor is not None


def page_window(args: PageArgs, default_page_size: int, max_page_size: int) -> Window:
    """The window `args` describe, or INVALID_INPUT for arguments that do not make one."""
    first = _page_size(args.first, "first", max_page_size)
    last = _page_size(args.last, "last", max_page_size)
    if first is not None and last is not None:
        raise _invalid("Pass either `first` or `last`, not both.", "last")
    backwards = last is not None or (args.before is not None and first is None)
    limit = last if backwards else first
    other_cursor = args.after if backwards else args.before
    if other_cursor is not None:
        raise _invalid(
            "Use `after` with `first` and `before` with `last`.",
            "after" if backwards else "before",
        )
    return Window(
        limit=default_page_size if limit is None else limit,
        backwards=backwards,
        cursor=args.before if backwards else args.after,
        cursor_field="before" if backwards else "after",
    )


@dataclass(frozen=True)
class KeysetQuery(Generic[T]):
    engine: AsyncEngine
    table: Table
    sort: SortKey
    descending: bool
    conditions: Sequence[ColumnElement[bool]]
    to_node: Callable[[Columns], T]
    default_page_size: int
    max_page_size: int

    async def page(self, args: PageArgs) -> Page[T]:
        window = page_window(args, self.default_page_size, self.max_page_size)
        limit, backwards, cursor = window.limit, window.backwards, window.cursor

        # Walking backwards is walking forwards in the opposite order, then reversing.
        descending = self.descending != backwards
        id_column = self.table.c.id
        key = self.sort.expression
        statement = select(*self.table.c, key.label("sort_key")).where(*self.conditions)
        if cursor is not None:
            value, row_id = decode_cursor(self.sort, cursor, window.cursor_field)
            position = tuple_(key, id_column)
            bound = tuple_(value, row_id)
            statement = statement.where(position < bound if descending else position > bound)
        if descending:
            statement = statement.order_by(key.desc(), id_column.desc())
        else:
            statement = statement.order_by(key.asc(), id_column.asc())
        statement = statement.limit(limit + 1)

        async with self.engine.connect() as conn:
            rows = await fetch_rows(conn, statement)
        has_more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        edges = [
            Edge(self.to_node(row._mapping), encode_cursor(self.sort, row.sort_key, row.id))
            for row in rows
        ]
        has_next_page, has_previous_page = window.has_next_and_previous(has_more)
        return Page(
            edges=edges,
            has_next_page=has_next_page,
            has_previous_page=has_previous_page,
            total_count=self.count,
        )

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return await count_rows(conn, self.table, self.conditions)
