"""Bearer tokens (JWT, HS256): issuing them for people and checking the ones requests carry."""

import os
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.text import unstorable_text
from crm_graphql.settings import MIN_SECRET_BYTES, Settings

# The only algorithm accepted: `alg: none` and every other algorithm are refused.
ALGORITHM = "HS256"
MAX_SUBJECT_LENGTH = 200
MAX_NAME_LENGTH = 200
SECRET_FILE_NAME = "jwt-secret"
_TTL = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# NumericDate claims: seconds since 1970, before the year 10000 (what datetime can hold).
TIME_CLAIMS = ("exp", "iat", "nbf")
LATEST_TIMESTAMP = 253_402_300_799


class InvalidToken(Exception):
    """The credentials are missing or not acceptable; the message says why."""


class MissingSecret(Exception):
    """No CRM_JWT_SECRET where one is required."""


@dataclass(frozen=True)
class Authentication:
    actor: Actor
    # The token's `exp` plus the leeway: the moment it stops being accepted.
    expires_at: datetime


VERIFIED_TOKENS_KEPT = 4096


class TokenCodec:
    def __init__(self, secret: str, issuer: str, audience: str, leeway_seconds: int = 0) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes long")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        # Clients send the same token with every request: checking its signature and claims
        # once is enough until it expires.
        self._verified: OrderedDict[str, Authentication] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenCodec":
        if settings.jwt_secret is None:
            raise MissingSecret("CRM_JWT_SECRET is not set.")
        return cls(
            settings.jwt_secret.get_secret_value(),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_leeway,
        )

    def issue(self, actor: Actor, ttl: timedelta, now: datetime | None = None) -> str:
        issued_at = now or datetime.now(UTC)
        claims = {
            "sub": actor.user_id,
            "name": actor.name,
            "role": actor.role.value,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued_at,
            "exp": issued_at + ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Authentication:
        known = self._verified.get(token)
        if known is not None and known.expires_at > datetime.now(UTC):
            self._verified.move_to_end(token)
            return known
        authentication = self._verify_signed(token)
        self._verified[token] = authentication
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return authentication

    def _verify_signed(self, token: str) -> Authentication:
        try:
            # The signature first, then the claims' types: PyJWT compares `exp`, `iat` and
            # `nbf` after int(), so "123" or 1e20 would get past it and fail later as a 500.
            unchecked = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_aud": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
            check_claim_types(unchecked)
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The token was issued for another audience.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The token was issued by another issuer.") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(f"Only {ALGORITHM} tokens are accepted.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The token's signature is not valid.") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"The token has no `{error.claim}` claim.") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("The token is malformed or not valid.") from None
        expires_at = datetime.fromtimestamp(claims["exp"] + self.leeway, UTC)
        return Authentication(actor_from_claims(claims), expires_at)


def check_claim_types(claims: dict[str, object]) -> None:
    """InvalidToken naming the first registered claim whose value has the wrong type."""
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= LATEST_TIMESTAMP  # NaN fails this too
        ):
            raise InvalidToken(
                f"The token's `{name}` claim must be a number of seconds since 1970 (before "
                "the year 10000)."
            )
    for name in ("iss", "sub", "name", "role"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken(f"The token's `{name}` claim must be a string.")
    audience = claims.get("aud")
    if audience is not None and not (
        isinstance(audience, str)
        or (isinstance(audience, list) and all(isinstance(item, str) for item in audience))
    ):
        raise InvalidToken("The token's `aud` claim must be a string or a list of strings.")


def actor_from_claims(claims: dict[str, object]) -> Actor:
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise InvalidToken(f"The `sub` claim must be 1 to {MAX_SUBJECT_LENGTH} characters.")
    name = claims.get("name", subject)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise InvalidToken(f"The `name` claim must be 1 to {MAX_NAME_LENGTH} characters.")
    # Both are stored (users table, stage history): text PostgreSQL cannot hold would make
    # every write of this caller fail as an internal error.
    for claim, value in (("sub", subject), ("name", name)):
        if violation := unstorable_text(value, claim):
            raise InvalidToken(violation.named(lambda name: f"The `{name}` claim").message)
    role = next((role for role in Role if role.value == claims.get("role")), None)
    if role is None:
        roles = ", ".join(r.value for r in Role)
        raise InvalidToken(f"The `role` claim must be one of: {roles}.")
    return Actor(user_id=subject, name=name, role=role)


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        raise InvalidToken("Authentication required: send `Authorization: Bearer <token>`.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("The Authorization header must be `Bearer <token>`.")
    return token.strip()


def parse_ttl(text: str) -> timedelta:
    """A lifetime such as 45s, 30m, 8h or 7d."""
    match = _TTL.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a lifetime like 30m, 8h or 7d")
    return timedelta(**{_TTL_UNITS[match.group(2)]: int(match.group(1))})


def development_secret(data_dir: Path) -> str:
    """The secret kept in the data folder for the embedded (development) setup, made once."""
    path = data_dir / SECRET_FILE_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        # Created with mode 0600 in one step, so the secret is never readable by others.
        with open(path, "x", opener=_open_private) as file:
            file.write(secret + "\n")
    except FileExistsError:
        return path.read_text().strip()
    return secret


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
