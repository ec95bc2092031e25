"""Contact details of a lead: validation and the normal forms used to store and compare them.

Every validator returns the stored form or raises RuleViolation(INVALID_INPUT) naming the input
field; domain/lead.py declares which field each one checks, so createLead, updateLead and the
CSV import apply exactly the same rules.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from crm_graphql.domain.errors import FIELD, RuleViolation, invalid_input
from crm_graphql.domain.text import unstorable_text

NAME_MAX_LENGTH = 200
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit
PHONE_INPUT_MAX_LENGTH = 40
WEBSITE_MAX_LENGTH = 2048

# A host name: dot-separated labels of letters, digits and inner hyphens, ending in a TLD.
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


def _refuse_unstorable(field: str, value: str) -> None:
    violation = unstorable_text(value, field)
    if violation:
        raise RuleViolation(violation)


def normalize_name(field: str, value: str | None) -> str | None:
    """A free-text name as stored: trimmed, 1 to NAME_MAX_LENGTH characters, or None."""
    if value is None:
        return None
    _refuse_unstorable(field, value)
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= NAME_MAX_LENGTH:
        raise invalid_input(
            field, f"{FIELD} must be 1 to {NAME_MAX_LENGTH} characters after trimming, or null."
        )
    return trimmed


def normalize_email(value: str | None) -> str | None:
    """The address in lower case, after a syntax check (no DNS look-up: imports stay offline)."""
    if value is None:
        return None
    _refuse_unstorable("email", value)
    trimmed = value.strip()
    if len(trimmed) > EMAIL_MAX_LENGTH:
        raise invalid_input("email", f"email must be at most {EMAIL_MAX_LENGTH} characters.")
    try:
        checked = validate_email(trimmed, check_deliverability=False)
    except EmailNotValidError as error:
        raise invalid_input("email", f"email is not a valid address: {error}") from None
    return checked.normalized.lower()


def normalize_phone(value: str | None, default_region: str | None) -> str | None:
    """The number in E.164 (+4930123456). Without a default region it must start with +country."""
    if value is None:
        return None
    _refuse_unstorable("phone", value)
    if len(value) > PHONE_INPUT_MAX_LENGTH:
        raise invalid_input("phone", f"phone must be at most {PHONE_INPUT_MAX_LENGTH} characters.")
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        hint = "" if default_region else " with its +country code"
        raise invalid_input("phone", f"phone is not a phone number; give it{hint}.") from None
    if not phonenumbers.is_valid_number(number):
        raise invalid_input("phone", "phone is not a valid number for its country.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Website:
    url: str  # as stored and shown: scheme added, host lower-cased
    domain: str  # the host without `www.`: what duplicate detection compares


def normalize_website(value: str | None) -> Website | None:
    if value is None:
        return None
    _refuse_unstorable("website", value)
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= WEBSITE_MAX_LENGTH:
        raise invalid_input(
            "website", f"website must be 1 to {WEBSITE_MAX_LENGTH} characters, or null."
        )
    if "://" not in trimmed:
        trimmed = "https://" + trimmed
    try:
        parts = urlsplit(trimmed)
        port = parts.port
    except ValueError:
        raise invalid_input("website", "website is not a valid URL.") from None
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme.lower() not in ("http", "https") or parts.username or parts.password:
        raise invalid_input(
            "website", "website must be an http or https address without credentials."
        )
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise invalid_input("website", "website has an invalid host name.") from None
    if not _HOST.match(host):
        raise invalid_input("website", "website must name a host such as example.com.")
    netloc = host if port is None else f"{host}:{port}"
    url = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))
    domain = host.removeprefix("www.")
    return Website(url=url, domain=domain)
