"""The endpoint reads JSON (bodies, GET variables, WebSocket messages) with orjson where it
reads it as the standard library does, and with the standard library otherwise
(`OverriddenGraphQL.decode_json`): whatever the text, the value, or the kind of error each
caller answers, is the standard library's."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_graphql.api.schema import create_schema
from crm_graphql.settings import Settings
from crm_graphql.strawberry_overrides import OverriddenGraphQL

VIEW = OverriddenGraphQL(create_schema(Settings()))

SAMPLES = [
    b'{"query": "{ viewer { id } }", "variables": {"id": 1}}',
    b"[1e400]",  # infinity for the standard library, refused by orjson
    b"[NaN, Infinity]",
    b'"\\ud800"',  # a lone surrogate
    b"\xef\xbb\xbf{}",  # a byte order mark
    b'{"a": "\x01"}',
    b'{"a": 1, "a": 2}',
    b"[123456789012345678901234567890]",  # past 64 bits: an int, not a float
    b"[-9223372036854775809, 18446744073709551616, 9223372036854775807]",
    b"[0.30000000000000004, 5e-324, -0.0, 1E2]",
    b"\xff\xfe",
    b"[" * 2000 + b"]" * 2000,  # nested past orjson's limit
    '"\ud800"',
    '{"text": "ünïcode"}',
]


def outcome(read: Any, data: str | bytes) -> tuple[str, str]:
    try:
        return "value", repr(read(data))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        return "error", type(error).__name__


def standard(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise json.JSONDecodeError("", "", 0) from None  # as decode_json words it
    except RecursionError:
        raise json.JSONDecodeError("", "", 0) from None


def check(data: str | bytes) -> None:
    assert outcome(VIEW.decode_json, data) == outcome(standard, data)


def test_what_orjson_reads_otherwise_is_read_by_the_standard_library() -> None:
    for data in SAMPLES:
        check(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=2000, deadline=None)
@given(
    st.binary(max_size=60)
    | JSON_VALUES.map(json.dumps)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
)
def test_any_text_reads_as_the_standard_library_reads_it(data: str | bytes) -> None:
    check(data)
