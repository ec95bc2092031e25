"""SQL texts with named parameters, compiled once to asyncpg's positional `$n`.

A statement is written as one text with `:name` placeholders, as SQLAlchemy's `text()` takes
them; `sql()` numbers them at import time and keeps the order, and a call passes the values by
name. A name used twice is one parameter. `::type` casts and quoted literals are left alone.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A quoted literal (kept as it is) or a `:name` that is not the second colon of a `::` cast.
_TOKEN = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Sql:
    """A statement in asyncpg's form and the names of its `$1`, `$2`, ... in order."""

    text: str
    names: tuple[str, ...]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values`; every name must be given, and no other."""
        if len(values) != len(self.names):
            unknown = set(values) - set(self.names)
            if unknown:
                raise TypeError(f"not parameters of this statement: {sorted(unknown)}")
        try:
            return [values[name] for name in self.names]
        except KeyError as missing:
            raise TypeError(f"missing parameter {missing.args[0]!r}") from None


def sql(source: str) -> Sql:
    """Compile a text with `:name` placeholders (done once, where the statement is defined)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Sql(_TOKEN.sub(number, source), tuple(names))
