from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation


def not_found(kind: str, field: str) -> RuleViolation:
    return RuleViolation(Violation(ErrorCode.NOT_FOUND, f"No {kind} with this ID.", (field,)))


def duplicate(field: str, existing_lead_id: int, hint: str = "") -> RuleViolation:
    """The input matches an open lead; the API layer names that lead's global ID."""
    message = f"An open lead already has this {field}.{hint}"
    return RuleViolation(
        Violation(ErrorCode.DUPLICATE, message, (field,), duplicate_of=existing_lead_id)
    )
