"""One statement for a page of leads (or one lead) with everything a compiled read selects of
each: its columns, its sale, the users it names and its histories, as one row per lead.

The general path reads a page in three statements or more (the page, then a DataLoader batch
per kind of nested object); here the nested objects are joins and lateral aggregates, so a
page costs one round trip and its rows are decoded once, by asyncpg. A history arrives as
parallel arrays (one per column, ordered alike), which asyncpg decodes without a record type.

Columns are read by the names given here (`LeadColumns.add`), so a statement's select list is
built from what the selection needs and nothing else.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from crm_graphql.db import driver
from crm_graphql.db.sql import Sql, sql
from crm_graphql.db.tables import POSTGRESQL, STAGE_CHANGE_ORIGIN

_ORIGIN = str(STAGE_CHANGE_ORIGIN.compile(dialect=POSTGRESQL)).replace("stage_changes.", "change.")


def iso_text(instant: str) -> str:
    """SQL writing a timestamptz as Python's isoformat() writes the datetime asyncpg reads: in
    UTC, microseconds only when there are any; the infinities as asyncpg reads them
    (datetime.min and datetime.max, without a zone)."""
    return (
        f"CASE WHEN {instant} = '-infinity' THEN '0001-01-01T00:00:00' "
        f"WHEN {instant} = 'infinity' THEN '9999-12-31T23:59:59.999999' "
        f"ELSE replace(to_char({instant} AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '.000000+', '+') END"
    )


def global_id_text(type_name: str, primary_key: str) -> str:
    """SQL writing api/ids.py's global ID: base64 of "Type:pk" (short: no line breaks)."""
    return f"encode(convert_to('{type_name}:' || {primary_key}, 'UTF8'), 'base64')"


_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def name_in(table: str, name: str) -> str:
    """The name of a column (or an alias) of the lead in `table`: `leads` keeps plain names."""
    return name if table == "leads" else f"{table}__{name}"


@dataclass
class LeadColumns:
    """The select list and joins of a statement over `leads` (the table keeps its own name, so
    conditions written for it apply unchanged). A lead joined to it (`joined_lead`) has an
    alias of its own; its columns' names start with it."""

    expressions: dict[str, str] = field(default_factory=dict)  # name -> SQL expression
    joins: dict[str, str] = field(default_factory=dict)  # alias -> join clause

    def add(self, name: str, expression: str) -> str:
        """Select `expression` as `name` (once); returns the name to read it by."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r}: a column name is lower case (PostgreSQL folds it)")
        self.expressions.setdefault(name, expression)
        return name

    @property
    def reads_visibility(self) -> bool:
        """Whether the statement takes `:readable` (the stages the caller may read, or NULL
        for all) for the leads it joins."""
        return any(clause.startswith("LEFT JOIN leads ") for clause in self.joins.values())

    def lead(self, column: str, table: str = "leads") -> str:
        return self.add(name_in(table, column), f"{table}.{column}")

    def sale(self, column: str, table: str = "leads") -> str:
        """A column of the lead's sale (NULL when it has none)."""
        alias = name_in(table, "sale")
        self.joins.setdefault(alias, f"LEFT JOIN sales AS {alias} ON {alias}.lead_id = {table}.id")
        return self.add(f"{alias}__{column}", f"{alias}.{column}")

    def user(self, alias: str, user_id: str, column: str) -> str:
        """A column of the user whose id is the SQL expression `user_id` (NULL for none)."""
        self.joins.setdefault(alias, f"LEFT JOIN users AS {alias} ON {alias}.id = {user_id}")
        return self.add(f"{alias}__{column}", f"{alias}.{column}")

    def joined_lead(self, lead_id: str) -> str:
        """The alias of the lead whose id is the SQL expression `lead_id`, joined when the
        caller may read it (its columns are NULL otherwise, as for no lead)."""
        alias = f"lead_{len(self.joins)}"
        self.joins[alias] = (
            f"LEFT JOIN leads AS {alias} ON {alias}.id = {lead_id} AND "
            "(CAST(:readable AS varchar[]) IS NULL "
            f"OR {alias}.stage = ANY(CAST(:readable AS varchar[])))"
        )
        return alias

    def history(
        self, alias: str, of: str, columns: Sequence[str], table: str = "leads"
    ) -> list[str]:
        """Arrays of `columns` of stage_changes (`change.<column>`, `by_user.<column>`), one
        element per change, in order: `of` is "lead", "lead_with_merged" or "sale" (of the
        lead in `table`). Each array is NULL for no changes."""
        if of == "lead":
            where = f"change.lead_id IS NOT NULL AND {_ORIGIN} = {table}.id"
            order = "change.id"
        elif of == "lead_with_merged":
            where = (
                f"change.lead_id IS NOT NULL "
                f"AND ({_ORIGIN} = {table}.id OR change.lead_id = {table}.id)"
            )
            order = "change.at, change.id"
        else:
            self.sale("id", table)
            where, order = f"change.sale_id = {name_in(table, 'sale')}.id", "change.id"
        names = [f"{alias}__{index}" for index in range(len(columns))]
        aggregates = ", ".join(
            f"array_agg({column} ORDER BY {order}) AS {name}"
            for name, column in zip(names, columns, strict=True)
        )
        users = (
            "LEFT JOIN users AS by_user ON by_user.id = change.by"
            if any(column.startswith("by_user.") for column in columns)
            else ""
        )
        self.joins.setdefault(
            alias,
            f"LEFT JOIN LATERAL (SELECT {aggregates} FROM stage_changes AS change {users} "
            f"WHERE {where}) AS {alias} ON TRUE",
        )
        return [self.add(name, f"{alias}.{name}") for name in names]

    def select(self) -> str:
        listed = ", ".join(f"{sql_text} AS {name}" for name, sql_text in self.expressions.items())
        return f"SELECT {listed} FROM leads {' '.join(self.joins.values())}"


def lead_statement(
    columns: LeadColumns, conditions: Sequence[str], order_by: str = "", limit: bool = False
) -> Sql:
    """The statement reading `columns` of the leads meeting `conditions` (SQL over `leads`
    with `:name` parameters), in `order_by`, up to `:limit` rows."""
    text = columns.select()
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    if order_by:
        text += f" ORDER BY {order_by}"
    if limit:
        text += " LIMIT :limit"
    return sql(text)


async def fetch_leads(
    raw: asyncpg.Connection, statement: Sql, values: dict[str, Any]
) -> list[driver.Row]:
    """The rows of a statement on a driver connection (`engine.pooled`)."""
    arguments = statement.arguments(values)
    return await driver.run_on(
        raw, asyncpg.Connection.fetch, statement.text, *arguments, record_class=driver.Row
    )
