"""The contact validators: stored forms and refusals, each naming its input field."""

import hashlib
import json

import pytest

from crm_graphql.domain.contact import (
    Website,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_website,
)
from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.domain.lead import LeadFields, validate_lead_fields


def refusal(call, *args) -> tuple[ErrorCode, tuple[str, ...] | None, str]:
    with pytest.raises(RuleViolation) as caught:
        call(*args)
    (violation,) = caught.value.violations
    return violation.code, violation.field, violation.message


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ann@acme.com", "ann@acme.com"),
        ("  Ann.Lee@ACME.Com ", "ann.lee@acme.com"),
        ("first+tag@sub.example.org", "first+tag@sub.example.org"),
    ],
)
def test_email_is_stored_trimmed_and_lower_cased(raw, stored):
    assert normalize_email(raw) == stored


@pytest.mark.parametrize(
    "raw", ["ann", "ann@", "@acme.com", "ann@@acme.com", "ann@acme", "a b@acme.com", ""]
)
def test_malformed_email_is_refused_with_its_field(raw):
    code, field, _ = refusal(normalize_email, raw)
    assert (code, field) == (ErrorCode.INVALID_INPUT, ("email",))


def test_overlong_email_and_nul_are_refused():
    assert refusal(normalize_email, "a" * 250 + "@acme.com")[1] == ("email",)
    assert "NUL" in refusal(normalize_email, "ann\x00@acme.com")[2]


def test_absent_values_stay_absent():
    assert normalize_email(None) is None
    assert normalize_phone(None, None) is None
    assert normalize_website(None) is None
    assert normalize_name("contact_name", None) is None


@pytest.mark.parametrize(
    ("raw", "region", "stored"),
    [
        ("+49 30 1234567", None, "+49301234567"),
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("030 1234567", "DE", "+49301234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+44 20 7946 0958", "DE", "+442079460958"),
    ],
)
def test_phone_is_stored_in_e164(raw, region, stored):
    assert normalize_phone(raw, region) == stored


def test_phone_without_country_code_needs_a_default_region():
    code, field, message = refusal(normalize_phone, "030 1234567", None)
    assert (code, field) == (ErrorCode.INVALID_INPUT, ("phone",))
    assert "+country code" in message


@pytest.mark.parametrize("raw", ["+49 1", "+1 555 0000", "call me", "+999 123456789", "1" * 41])
def test_impossible_phone_numbers_are_refused(raw):
    assert refusal(normalize_phone, raw, None)[:2] == (ErrorCode.INVALID_INPUT, ("phone",))


@pytest.mark.parametrize(
    ("raw", "url", "domain"),
    [
        ("acme.com", "https://acme.com", "acme.com"),
        ("WWW.Acme.COM/About?x=1#top", "https://www.acme.com/About?x=1", "acme.com"),
        ("http://shop.acme.co.uk:8080/", "http://shop.acme.co.uk:8080/", "shop.acme.co.uk"),
        ("  https://Bücher.de ", "https://xn--bcher-kva.de", "xn--bcher-kva.de"),
    ],
)
def test_website_gets_a_scheme_a_lower_case_host_and_a_domain_without_www(raw, url, domain):
    assert normalize_website(raw) == Website(url=url, domain=domain)


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://acme.com",
        "localhost",
        "https://",
        "http://user:pw@acme.com",
        "acme",
        "http://a_b.com",
        "https://acme.com:99999",
        "x" * 2049,
        "",
    ],
)
def test_unusable_websites_are_refused(raw):
    assert refusal(normalize_website, raw)[:2] == (ErrorCode.INVALID_INPUT, ("website",))


def test_names_are_trimmed_and_bounded():
    assert normalize_name("contact_name", "  Ann Lee ") == "Ann Lee"
    assert refusal(normalize_name, "contact_name", "   ")[1] == ("contact_name",)
    assert refusal(normalize_name, "company_name", "x" * 201)[1] == ("company_name",)
    assert "NUL" in refusal(normalize_name, "company_name", "Ac\x00me")[2]


def test_validate_lead_fields_reports_every_broken_field_at_once():
    with pytest.raises(RuleViolation) as caught:
        validate_lead_fields(
            {"contact_name": " ", "email": "nope", "phone": "123", "website": "ftp://x"}, None
        )
    assert [v.field for v in caught.value.violations] == [
        ("contact_name",),
        ("email",),
        ("phone",),
        ("website",),
    ]


def test_duplicate_keys_are_email_phone_and_website_domain():
    fields = validate_lead_fields(
        {"email": "Ann@Acme.com", "phone": "+49 30 1234567", "website": "www.acme.com"}, None
    )
    assert fields.duplicate_keys == {
        "email": "ann@acme.com",
        "phone": "+49301234567",
        "website": "acme.com",
    }
    assert LeadFields().duplicate_keys == {}


def test_import_key_depends_on_normalised_content_only():
    def key(**given: str | None) -> str:
        return validate_lead_fields(given, None).import_key

    one = key(business_domain="fintech", email="ANN@acme.com", website="acme.com")
    same = key(business_domain="fintech", email=" ann@acme.com", website="https://ACME.com")
    other = key(business_domain="fintech", email="bob@acme.com", website="acme.com")
    assert one == same
    assert one != other
    assert one != key(email="ANN@acme.com", website="acme.com")


def test_rows_imported_before_later_fields_existed_keep_their_import_key():
    """The key of a row setting only the first six fields is the hash it always had, so a
    rerun of an old file still skips the rows it imported."""
    fields = validate_lead_fields({"business_domain": "fintech", "email": "ann@acme.com"}, None)
    parts = ["fintech", None, None, "ann@acme.com", None, None]
    assert fields.import_key == hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("contact_name", lambda value: normalize_name("contact_name", value)),
        ("company_name", lambda value: normalize_name("company_name", value)),
        ("email", normalize_email),
        ("phone", lambda value: normalize_phone(value, "DE")),
        ("website", normalize_website),
    ],
)
def test_text_postgresql_cannot_store_is_refused_in_every_contact_field(field, call):
    # NUL and a lone surrogate (JSON "\ud800") would fail in the database, not as user errors.
    for unstorable, wording in (("\x00", "NUL"), ("\ud800", "lone surrogate")):
        code, named, message = refusal(call, f"ann{unstorable}acme.com")
        assert (code, named) == (ErrorCode.INVALID_INPUT, (field,))
        assert wording in message
