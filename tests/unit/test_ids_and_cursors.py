"""Relay global IDs (base64 "Type:pk") and keyset cursors (base64url JSON [sort, value, id])."""

import base64
import json
from datetime import UTC, datetime

import pytest

from crm_graphql.api.ids import decode_global_id, decode_id_of, encode_global_id
from crm_graphql.db.tables import MAX_ID
from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.services.pagination import decode_cursor, encode_cursor
from crm_graphql.services.queries import LEAD_SORT_KEYS, LeadOrderField


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def test_a_global_id_is_base64_of_type_and_pk():
    assert encode_global_id("Lead", 42) == b64("Lead:42")
    assert decode_global_id(encode_global_id("Sale", 7)) == ("Sale", 7)
    assert decode_global_id(encode_global_id("Lead", MAX_ID)) == ("Lead", MAX_ID)


@pytest.mark.parametrize(
    "global_id",
    [
        "",
        "!!!",
        "not base64 at all",
        b64("Lead:1")[:-1],  # padding cut off
        b64("Lead"),
        b64("Lead:"),
        b64(":1"),
        b64("Lead:abc"),
        b64("Lead:1.5"),
        b64("Lead:1:2"),
        b64("Lead:0"),
        b64("Lead:-1"),
        b64("Lead:+1"),
        b64("Lead: 1"),
        b64("Lead:01"),
        b64("Lead:\u0661"),  # ARABIC-INDIC DIGIT ONE, which int() would accept
        b64(f"Lead:{MAX_ID + 1}"),
        b64("Lead:" + "9" * 400),
        b64(b"\xff\xfe:1"),
    ],
)
def test_malformed_global_ids_are_refused(global_id: str):
    assert decode_global_id(global_id) is None
    with pytest.raises(RuleViolation) as caught:
        decode_id_of("Lead", global_id, "leadId")
    [violation] = caught.value.violations
    assert violation.code is ErrorCode.INVALID_INPUT
    assert violation.field == ("leadId",)


def test_an_id_of_another_type_is_refused_with_both_types_named():
    with pytest.raises(RuleViolation) as caught:
        decode_id_of("Lead", encode_global_id("Sale", 3), "leadId")
    [violation] = caught.value.violations
    assert violation.code is ErrorCode.INVALID_INPUT
    assert violation.field == ("leadId",)
    assert "Lead" in violation.message
    assert "Sale" in violation.message


CREATED = LEAD_SORT_KEYS[LeadOrderField.CREATED_AT]
SCORE = LEAD_SORT_KEYS[LeadOrderField.SCORE]


def cursor_of(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_cursors_round_trip():
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert decode_cursor(CREATED, encode_cursor(CREATED, at, 9), "after") == (at, 9)
    assert decode_cursor(SCORE, encode_cursor(SCORE, 0.55, 3), "after") == (0.55, 3)


def test_a_cursor_is_base64url_json_of_sort_value_and_id():
    at = datetime(2026, 1, 2, tzinfo=UTC)
    cursor = encode_cursor(CREATED, at, 9)
    padded = cursor + "=" * (-len(cursor) % 4)
    assert json.loads(base64.urlsafe_b64decode(padded)) == ["CREATED_AT", at.isoformat(), 9]


def test_a_cursor_of_another_ordering_is_refused():
    cursor = encode_cursor(SCORE, 0.5, 1)
    with pytest.raises(RuleViolation) as caught:
        decode_cursor(CREATED, cursor, "after")
    [violation] = caught.value.violations
    assert violation.code is ErrorCode.INVALID_INPUT
    assert violation.field == ("after",)
    assert "SCORE" in violation.message
    assert "CREATED_AT" in violation.message


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "bm90IGpzb24",  # "not json"
        cursor_of(None),
        cursor_of({}),
        cursor_of(["CREATED_AT", "2026-01-02T00:00:00+00:00"]),
        cursor_of(["CREATED_AT", "yesterday", 1]),
        cursor_of(["CREATED_AT", 5, 1]),
        cursor_of(["CREATED_AT", None, 1]),
        cursor_of(["CREATED_AT", "2026-01-02T00:00:00+00:00", "1"]),
        cursor_of(["CREATED_AT", "2026-01-02T00:00:00+00:00", 1.5]),
        cursor_of(["CREATED_AT", "2026-01-02T00:00:00+00:00", True]),
        cursor_of(["CREATED_AT", "2026-01-02T00:00:00+00:00", 2**63]),
        cursor_of(["CREATED_AT", "2026-01-02T00:00:00", 1]),  # no time zone
    ],
)
def test_garbage_cursors_are_refused(cursor: str):
    with pytest.raises(RuleViolation) as caught:
        decode_cursor(CREATED, cursor, "before")
    [violation] = caught.value.violations
    assert violation.code is ErrorCode.INVALID_INPUT
    assert violation.field == ("before",)


@pytest.mark.parametrize(
    "cursor",
    [cursor_of(["SCORE", "high", 1]), cursor_of(["SCORE", [1], 1]), cursor_of(["SCORE", None, 1])],
)
def test_garbage_score_cursors_are_refused(cursor: str):
    with pytest.raises(RuleViolation):
        decode_cursor(SCORE, cursor, "after")


@pytest.mark.parametrize("wire", ["NaN", "Infinity"])
def test_non_finite_score_cursors_are_refused(wire: str):
    raw = f'["SCORE", {wire}, 1]'.encode()
    with pytest.raises(RuleViolation):
        decode_cursor(SCORE, base64.urlsafe_b64encode(raw).decode(), "after")
