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


async def move_checked(
    kind: str,
    move: Callable[[], Awaitable[T | None]] | None,
    why_not: Callable[[], Awaitable[Violation | None]],
) -> T:
    """A stage move whose write checks the stage the rule allows (`move`, None when no stage
    allows it). When the write finds another stage, `why_not` reads the row and names the rule
    that forbids the move; if none does any more, the row has just moved into a stage the rule
    allows, and the write is tried again."""
    for _ in range(WRITE_ATTEMPTS):
        if move is not None and (moved := await move()) is not None:
            return moved
        violation = await why_not()
        if violation:
            raise RuleViolation(violation)
    raise kept_changing(kind)
