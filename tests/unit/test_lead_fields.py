"""createLead's combined validation and the merge rules, without a database."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from crm_graphql.api.types import UserError
from crm_graphql.domain.contact import Website
from crm_graphql.domain.enums import LeadSource, LeadStage
from crm_graphql.domain.errors import ErrorCode, RuleViolation
from crm_graphql.domain.lead import (
    Lead,
    LeadFields,
    merge_violations,
    merged_fields,
    validate_lead_fields,
)
from crm_graphql.settings import Settings

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def lead(lead_id: int, stage=LeadStage.NEW, **fields) -> Lead:
    return Lead(
        id=lead_id,
        source=LeadSource.MANUAL,
        stage=stage,
        activity_count=0,
        score=None,
        created_at=NOW,
        updated_at=NOW,
        fields=LeadFields(**fields),
    )


def test_the_original_flow_needs_no_contact_fields():
    fields = validate_lead_fields({"business_domain": "fintech"}, None)
    assert fields == LeadFields(business_domain="fintech")


def test_business_domain_and_contact_errors_are_reported_together():
    with pytest.raises(RuleViolation) as caught:
        validate_lead_fields({"business_domain": "   ", "email": "nope"}, None)
    assert [v.field for v in caught.value.violations] == [("business_domain",), ("email",)]


def test_merge_fills_only_the_empty_fields_of_the_kept_lead():
    keep = lead(1, contact_name="Ann", email="ann@acme.com")
    other = lead(
        2,
        business_domain="fintech",
        contact_name="Ann Lee",
        company_name="Acme",
        email="ann.lee@acme.com",
        phone="+49301234567",
        website=Website("https://acme.com", "acme.com"),
    )
    assert merged_fields(keep, other) == LeadFields(
        business_domain="fintech",
        contact_name="Ann",
        company_name="Acme",
        email="ann@acme.com",
        phone="+49301234567",
        website=Website("https://acme.com", "acme.com"),
    )


def test_open_leads_may_be_merged():
    assert merge_violations(lead(1, LeadStage.QUALIFIED), lead(2, LeadStage.CONTACTED)) == []


@pytest.mark.parametrize(
    ("keep_stage", "merge_stage", "expected"),
    [
        (LeadStage.TRANSFERRED, LeadStage.NEW, [(ErrorCode.LEAD_LOCKED, ("keep_id",))]),
        (LeadStage.NEW, LeadStage.TRANSFERRED, [(ErrorCode.LEAD_LOCKED, ("merge_id",))]),
        (LeadStage.NEW, LeadStage.LOST, [(ErrorCode.INVALID_TRANSITION, ("merge_id",))]),
        (
            LeadStage.LOST,
            LeadStage.TRANSFERRED,
            [(ErrorCode.INVALID_TRANSITION, ("keep_id",)), (ErrorCode.LEAD_LOCKED, ("merge_id",))],
        ),
    ],
)
def test_transferred_or_lost_leads_cannot_be_merged(keep_stage, merge_stage, expected):
    violations = merge_violations(lead(1, keep_stage), lead(2, merge_stage))
    assert [(v.code, v.field) for v in violations] == expected


def test_default_phone_region_setting_is_checked_and_upper_cased():
    assert Settings(default_phone_region="de").default_phone_region == "DE"
    assert Settings(default_phone_region="").default_phone_region is None
    with pytest.raises(ValidationError):
        Settings(default_phone_region="XX")


def test_the_domain_names_its_fields_and_the_api_names_them_for_clients():
    with pytest.raises(RuleViolation) as caught:
        validate_lead_fields({"business_domain": " ", "next_follow_up_at": "soon"}, None)
    domain = caught.value.violations
    assert [v.field for v in domain] == [("business_domain",), ("next_follow_up_at",)]
    shown = [UserError.from_violation(v) for v in domain]
    assert [(e.field, e.message) for e in shown] == [
        (
            ["businessDomain"],
            "businessDomain must be 1 to 120 characters after trimming, or null.",
        ),
        (
            ["nextFollowUpAt"],
            "nextFollowUpAt must be an ISO 8601 date and time, e.g. 2026-12-24T09:00:00Z.",
        ),
    ]
