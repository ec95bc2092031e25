"""Issuing and checking bearer tokens, without a server."""

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from crm_graphql.domain.access import Actor, Role
from crm_graphql.tokens import (
    InvalidToken,
    TokenCodec,
    bearer_token,
    development_secret,
    parse_ttl,
)

SECRET = "unit-test-secret-" + "0123456789abcdef" * 3  # 64 bytes: enough for HS512 too
CODEC = TokenCodec(SECRET, issuer="crm-graphql", audience="crm-graphql")
ALICE = Actor(user_id="alice", name="Alice", role=Role.MANAGER)


def claims(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "sub": "alice",
        "name": "Alice",
        "role": "manager",
        "iss": "crm-graphql",
        "aud": "crm-graphql",
        "iat": now,
        # A day: the parametrized tokens below are built when pytest collects this module, and
        # the whole suite runs its integration tests (ten minutes, say) before it checks them.
        "exp": now + timedelta(days=1),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_an_issued_token_names_the_actor_and_expires_at_its_ttl():
    now = datetime.now(UTC).replace(microsecond=0)
    authentication = CODEC.verify(CODEC.issue(ALICE, timedelta(hours=8), now=now))
    assert authentication.actor == ALICE
    assert authentication.expires_at == now + timedelta(hours=8)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (jwt.encode(claims(exp=datetime.now(UTC) - timedelta(minutes=1)), SECRET), "expired"),
        (jwt.encode(claims(), "another-secret-of-enough-length-0123456789"), "signature"),
        (jwt.encode(claims(aud="another-api"), SECRET), "audience"),
        (jwt.encode(claims(iss="someone-else"), SECRET), "issuer"),
        (jwt.encode(claims(exp=None), SECRET), "`exp`"),
        (jwt.encode(claims(sub=None), SECRET), "`sub`"),
        (jwt.encode(claims(role="root"), SECRET), "`role`"),
        (jwt.encode(claims(sub=""), SECRET), "`sub`"),
        (jwt.encode(claims(), SECRET, algorithm="HS512"), "Only HS256"),
        (jwt.encode(claims(), None, algorithm="none"), "Only HS256"),
        ("not-a-token", "malformed"),
    ],
    ids=[
        "expired",
        "wrong-secret",
        "wrong-audience",
        "wrong-issuer",
        "no-expiry",
        "no-subject",
        "unknown-role",
        "empty-subject",
        "hs512",
        "alg-none",
        "garbage",
    ],
)
def test_unacceptable_tokens_are_refused_with_the_reason(token: str, message: str):
    with pytest.raises(InvalidToken, match=message):
        CODEC.verify(token)


def test_the_leeway_accepts_a_token_that_expired_within_it():
    codec = TokenCodec(SECRET, "crm-graphql", "crm-graphql", leeway_seconds=60)
    token = jwt.encode(claims(exp=datetime.now(UTC) - timedelta(seconds=10)), SECRET)
    assert codec.verify(token).actor == ALICE
    with pytest.raises(InvalidToken, match="expired"):
        CODEC.verify(token)


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenCodec("too-short", "crm-graphql", "crm-graphql")


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_header(header: str, token: str):
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "abc"])
def test_a_missing_or_other_authorization_header_is_refused(header: str | None):
    with pytest.raises(InvalidToken):
        bearer_token(header)


@pytest.mark.parametrize(
    ("text", "ttl"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("8h", timedelta(hours=8)),
        ("7d", timedelta(days=7)),
    ],
)
def test_ttl(text: str, ttl: timedelta):
    assert parse_ttl(text) == ttl


@pytest.mark.parametrize("text", ["", "8", "h", "0h", "-1h", "8w", "1.5h"])
def test_ttl_refuses_what_is_not_a_lifetime(text: str):
    with pytest.raises(ValueError, match="not a lifetime"):
        parse_ttl(text)


def test_the_development_secret_is_made_once_and_private(tmp_path: Path):
    data_dir = tmp_path / "data"
    first = development_secret(data_dir)
    assert len(first.encode()) >= 32
    assert development_secret(data_dir) == first
    mode = stat.S_IMODE((data_dir / "jwt-secret").stat().st_mode)
    assert mode == 0o600


def test_a_token_checked_once_is_still_refused_once_it_has_expired():
    codec = TokenCodec(SECRET, "crm-graphql", "crm-graphql")
    actor = Actor("alice", "Alice", Role.MANAGER)
    token = codec.issue(actor, timedelta(seconds=1))
    assert codec.verify(token).actor == actor  # now remembered as verified
    time.sleep(1.1)  # waits for the expiry; nothing here is timed
    with pytest.raises(InvalidToken, match="expired"):
        codec.verify(token)


def test_a_remembered_token_is_only_trusted_by_the_codec_that_checked_it():
    token = CODEC.issue(Actor("bob", "Bob", Role.SALES), timedelta(hours=1))
    assert CODEC.verify(token).actor.user_id == "bob"
    other = TokenCodec("another-secret-0123456789-abcdefghijklmnop", "crm-graphql", "crm-graphql")
    with pytest.raises(InvalidToken, match="signature"):
        other.verify(token)


IN_AN_HOUR = int(time.time()) + 3600


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": str(IN_AN_HOUR)}, "`exp` claim must be"),
        ({"exp": "soon"}, "`exp`"),
        ({"exp": 1e20}, "`exp` claim must be"),
        ({"exp": 10**30}, "`exp` claim must be"),
        ({"exp": float("inf")}, "`exp`"),
        ({"exp": True}, "`exp` claim must be"),
        ({"exp": [IN_AN_HOUR]}, "`exp`"),
        ({"exp": {"at": IN_AN_HOUR}}, "`exp`"),
        ({"iat": "yesterday"}, "`iat`"),
        ({"iat": [1]}, "`iat`"),
        ({"iat": 1e20}, "`iat`"),
        ({"nbf": "now"}, "`nbf`"),
        ({"nbf": {"a": 1}}, "`nbf`"),
        ({"nbf": 1e20}, "`nbf`"),
        ({"sub": 5}, "`sub`"),
        ({"sub": ["alice"]}, "`sub`"),
        ({"sub": "al\x00ice"}, "`sub` claim must not contain NUL characters"),
        ({"sub": "al\ud800ice"}, "`sub` claim must be valid Unicode"),
        ({"name": "Al\x00ice"}, "`name` claim must not contain NUL characters"),
        ({"name": "Al\udc00ice"}, "`name` claim must be valid Unicode"),
        ({"name": {"first": "Alice"}}, "`name`"),
        ({"name": None}, None),  # absent: the subject is the name
        ({"role": ["manager"]}, "`role`"),
        ({"role": {"r": 1}}, "`role`"),
        ({"aud": 5}, "`aud` claim must be"),
        ({"aud": [{"x": 1}]}, "`aud` claim must be"),
        ({"iss": 5}, "`iss` claim must be a string"),
        ({"iss": ["crm-graphql"]}, "`iss` claim must be a string"),
    ],
    ids=repr,
)
def test_claims_of_the_wrong_type_are_refused_with_the_reason(
    overrides: dict[str, object], message: str | None
):
    base = claims(exp=IN_AN_HOUR, iat=int(time.time()))
    base.update(overrides)
    # Signed as sent: jwt.encode refuses some of these claims and rewrites others.
    payload = json.dumps({k: v for k, v in base.items() if v is not None}).encode()
    token = jwt.PyJWS().encode(payload, SECRET, algorithm="HS256")
    if message is None:
        assert CODEC.verify(token).actor.name == "alice"
        return
    with pytest.raises(InvalidToken, match=message):
        CODEC.verify(token)
