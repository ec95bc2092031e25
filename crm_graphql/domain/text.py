"""Free text the client sends must be storable: PostgreSQL text holds neither NUL characters
nor lone UTF-16 surrogates (which JSON escapes like "\\ud800" can carry)."""

from crm_graphql.domain.errors import FIELD, ErrorCode, Violation


def unstorable_text(value: str, field: str) -> Violation | None:
    if "\x00" in value:
        return Violation(
            ErrorCode.INVALID_INPUT, f"{FIELD} must not contain NUL characters.", (field,)
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return Violation(
            ErrorCode.INVALID_INPUT,
            f"{FIELD} must be valid Unicode text (it contains a lone surrogate).",
            (field,),
        )
    return None
