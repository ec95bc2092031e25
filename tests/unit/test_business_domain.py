import pytest

from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.domain.lead import normalize_business_domain


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, None),
        ("fintech", "fintech"),
        ("  fintech \t\n", "fintech"),
        ("health care", "health care"),
        ("x" * 120, "x" * 120),
        ("  " + "x" * 120 + "  ", "x" * 120),
        ("é" * 120, "é" * 120),
    ],
)
def test_accepted_values_are_trimmed(given: str | None, stored: str | None):
    assert normalize_business_domain(given) == stored


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("", "1 to 120"),
        ("   ", "1 to 120"),
        ("\t\n", "1 to 120"),
        ("x" * 121, "1 to 120"),
        ("fin\x00tech", "NUL"),
        ("fin\ud800tech", "surrogate"),  # valid in a JSON escape, but has no UTF-8 form
    ],
)
def test_refused_values_name_the_field(given: str, words: str):
    with pytest.raises(RuleViolation) as caught:
        normalize_business_domain(given)
    [violation] = caught.value.violations
    assert violation.code is ErrorCode.INVALID_INPUT
    assert violation.field == ("business_domain",)
    assert words in violation.message
