"""Relay global IDs: base64 of "Type:pk", opaque to clients."""

import base64
import binascii

from crm_graphql.db.tables import MAX_ID
from crm_graphql.domain.errors import ErrorCode, RuleViolation, Violation


def encode_global_id(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def decode_global_id(global_id: str) -> tuple[str, int] | None:
    """(type name, primary key), or None when the string is not an ID this API issued."""
    try:
        type_name, _, raw_pk = base64.b64decode(global_id, validate=True).decode().partition(":")
        pk = int(raw_pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    # Only the spelling this API issues: no sign, spaces, leading zeros or non-ASCII digits.
    if not type_name or raw_pk != str(pk) or not 0 < pk <= MAX_ID:
        return None
    return type_name, pk


def decode_id_of(type_name: str, global_id: str, field: str) -> int:
    """The primary key behind a global ID that must name a `type_name`, or a user error."""
    decoded = decode_global_id(global_id)
    if decoded is None:
        raise RuleViolation(
            Violation(ErrorCode.INVALID_INPUT, f"`{field}` is not a valid ID.", (field,))
        )
    actual_type, pk = decoded
    if actual_type != type_name:
        raise RuleViolation(
            Violation(
                ErrorCode.INVALID_INPUT,
                f"`{field}` must be the ID of a {type_name}, not of a {actual_type}.",
                (field,),
            )
        )
    return pk
