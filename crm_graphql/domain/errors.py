from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum


class ErrorCode(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    LEAD_LOCKED = "LEAD_LOCKED"
    NOT_QUALIFIED = "NOT_QUALIFIED"
    DOMAIN_REQUIRED = "DOMAIN_REQUIRED"
    SCORE_REQUIRED = "SCORE_REQUIRED"
    SCORE_TOO_LOW = "SCORE_TOO_LOW"
    SCORE_STALE = "SCORE_STALE"
    DUPLICATE = "DUPLICATE"
    # assignLead: the new owner's role may not read the lead (sales, before the transfer).
    OWNER_CANNOT_SEE_LEAD = "OWNER_CANNOT_SEE_LEAD"


# In a message, where the name of the field at fault goes: the layer that shows the message
# puts the name its reader knows there (the API: the GraphQL input field's name).
FIELD = "{field}"


@dataclass(frozen=True)
class Violation:
    """One broken business rule, reported to the client as a UserError. `field` is the path to
    the field at fault in domain names (`business_domain`, `keep_id`)."""

    code: ErrorCode
    message: str
    field: tuple[str, ...] | None = None
    # For DUPLICATE: the open lead this input duplicates, so a client can go to it.
    duplicate_of: int | None = None

    def named(self, name: Callable[[str], str]) -> "Violation":
        """This violation with each part of its field path named by `name`, and FIELD in its
        message replaced by the last of them."""
        if self.field is None:
            return self
        path = tuple(name(part) for part in self.field)
        return replace(self, message=self.message.replace(FIELD, path[-1]), field=path)


class RuleViolation(Exception):
    """Raised by a use case when its input breaks one or more rules; nothing was changed."""

    def __init__(self, *violations: Violation) -> None:
        if not violations:
            raise ValueError("RuleViolation needs at least one violation")
        super().__init__("; ".join(v.message for v in violations))
        self.violations = violations


def invalid_input(field: str, message: str) -> RuleViolation:
    return RuleViolation(Violation(ErrorCode.INVALID_INPUT, message, (field,)))


def run_checks(checks: Mapping[str, Callable[[], object]]) -> dict[str, object]:
    """Run every check and return the values by name; if any fail, raise all their violations
    together, so a client fixes its input in one round trip."""
    values: dict[str, object] = {}
    violations: list[Violation] = []
    for name, check in checks.items():
        try:
            values[name] = check()
        except RuleViolation as violation:
            violations.extend(violation.violations)
    if violations:
        raise RuleViolation(*violations)
    return values
