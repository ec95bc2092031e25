"""db/sql.py: named parameters compiled once to asyncpg's positional form."""

import pytest

from crm_graphql.db.sql import sql


def test_names_are_numbered_in_order_of_first_use_and_reused() -> None:
    statement = sql("SELECT :b, :a, :b::text[] WHERE x = 'a :literal' AND y::int = :c")
    assert statement.text == "SELECT $1, $2, $1::text[] WHERE x = 'a :literal' AND y::int = $3"
    assert statement.names == ("b", "a", "c")
    assert statement.arguments({"a": 1, "b": 2, "c": 3}) == [2, 1, 3]


def test_a_missing_or_unknown_parameter_is_refused() -> None:
    statement = sql("SELECT :a")
    with pytest.raises(TypeError, match="missing parameter 'a'"):
        statement.arguments({})
    with pytest.raises(TypeError, match=r"not parameters of this statement: \['b'\]"):
        statement.arguments({"a": 1, "b": 2})
