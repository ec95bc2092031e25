"""Use cases whose write is one statement checking, under the row lock it takes, what the rules
were checked on (db/repository.py): no transaction and no separate lock."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from crm_graphql.domain.errors import RuleViolation, Violation

T = TypeVar("T")

# A conditional write finds its row otherwise than it was read only when another write to the
# same row landed in between; after this many in a row, the use case gives up.
WRITE_ATTEMPTS = 5


def kept_changing(kind: str) -> RuntimeError:
    return RuntimeError(f"the {kind} changed under each of {WRITE_ATTEMPTS} conditional writes")


async def write_checked(
    kind: str,
    write: Callable[[], Awaitable[T | None]] | None,
    why_not: Callable[[], Awaitable[Violation | None]],
) -> T:
    """A write that checks, under its row lock, the stages the rule allows (`write`, None when
    no stage allows it). When the write finds the row otherwise, `why_not` reads it and names
    the rule that forbids the write; if none does any more, the row has just changed into a
    state the rule allows, and the write is tried again."""
    for _ in range(WRITE_ATTEMPTS):
        if write is not None and (written := await write()) is not None:
            return written
        violation = await why_not()
        if violation:
            raise RuleViolation(violation)
    raise kept_changing(kind)
