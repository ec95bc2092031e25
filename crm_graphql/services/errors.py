from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation


def not_found(kind: str, field: str) -> RuleViolation:
    return RuleViolation(Violation(ErrorCode.NOT_FOUND, f"No {kind} with this ID.", (field,)))
