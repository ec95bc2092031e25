"""What a delivery's body says. docs/webhooks.md shows `example_payloads()`, and a unit test
checks the document against it, so the documented payloads are the ones the code sends."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from crm_graphql.api.ids import encode_global_id
from crm_graphql.domain.webhooks import AuditEvent, WebhookEvent


@dataclass(frozen=True)
class DataField:
    name: str  # in the payload's `data`
    description: str


LEAD_ID = DataField("leadId", "The lead's global ID, as the GraphQL API names it.")
SALE_ID = DataField("saleId", "The sale's global ID.")
FROM = DataField("from", "The stage before the change (null when the sale was just created).")
TO = DataField("to", "The stage after it.")
STAGE = DataField("stage", "The lead's stage.")
BY = DataField("by", "The user (token `sub`) who made the change; null for old rows.")
NOTE = DataField("note", "Why, when the change says (e.g. a merge's LOST), else null.")
MERGED_LEAD_ID = DataField("mergedLeadId", "The duplicate folded into `leadId`, now LOST.")

EVENT_FIELDS: dict[WebhookEvent, tuple[DataField, ...]] = {
    WebhookEvent.LEAD_CREATED: (LEAD_ID, STAGE, BY),
    WebhookEvent.LEAD_STAGE_CHANGED: (LEAD_ID, FROM, TO, BY, NOTE),
    WebhookEvent.LEAD_TRANSFERRED: (LEAD_ID, SALE_ID, FROM, TO, BY),
    WebhookEvent.SALE_STAGE_CHANGED: (SALE_ID, LEAD_ID, FROM, TO, BY),
    WebhookEvent.LEADS_MERGED: (LEAD_ID, MERGED_LEAD_ID, STAGE, BY),
}
EVENT_DESCRIPTIONS: dict[WebhookEvent, str] = {
    WebhookEvent.LEAD_CREATED: "A lead was created (createLead, or a CSV import).",
    WebhookEvent.LEAD_STAGE_CHANGED: "A lead moved along the funnel (advanceStage, a merge's "
    "LOST), other than to TRANSFERRED.",
    WebhookEvent.LEAD_TRANSFERRED: "A lead was handed to sales (transferToSales); its sale "
    "was created with it.",
    WebhookEvent.SALE_STAGE_CHANGED: "A sale was created (from null to NEW) or moved "
    "(advanceSaleStage).",
    WebhookEvent.LEADS_MERGED: "A duplicate was merged into a lead (mergeLeads).",
}


def event_id(audit_id: int) -> str:
    """The same for every attempt and every endpoint: receivers deduplicate on it."""
    return f"evt_{audit_id}"


def _global(type_name: str, pk: int | None) -> str | None:
    return encode_global_id(type_name, pk) if pk is not None else None


def payload(event: AuditEvent) -> dict[str, Any]:
    values: dict[str, Any] = {
        LEAD_ID.name: _global("Lead", event.lead_id),
        SALE_ID.name: _global("Sale", event.sale_id),
        FROM.name: event.from_stage,
        TO.name: event.to_stage,
        STAGE.name: event.to_stage,
        BY.name: event.by,
        NOTE.name: event.note,
        MERGED_LEAD_ID.name: _global("Lead", event.merged_lead_id),
    }
    return {
        "id": event_id(event.id),
        "type": event.event.value,
        "timestamp": event.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {field.name: values[field.name] for field in EVENT_FIELDS[event.event]},
    }


def body(event: AuditEvent) -> bytes:
    return orjson.dumps(payload(event))


_EXAMPLE_AT = datetime(2026, 12, 6, 9, 30, 0, 123456, tzinfo=UTC)
_EXAMPLES: dict[WebhookEvent, AuditEvent] = {
    WebhookEvent.LEAD_CREATED: AuditEvent(
        101, WebhookEvent.LEAD_CREATED, 7, None, None, "NEW", _EXAMPLE_AT, "u-anna", None, None
    ),
    WebhookEvent.LEAD_STAGE_CHANGED: AuditEvent(
        102,
        WebhookEvent.LEAD_STAGE_CHANGED,
        7,
        None,
        "NEW",
        "CONTACTED",
        _EXAMPLE_AT,
        "u-anna",
        None,
        None,
    ),
    WebhookEvent.LEAD_TRANSFERRED: AuditEvent(
        105,
        WebhookEvent.LEAD_TRANSFERRED,
        7,
        3,
        "QUALIFIED",
        "TRANSFERRED",
        _EXAMPLE_AT,
        "u-anna",
        None,
        None,
    ),
    WebhookEvent.SALE_STAGE_CHANGED: AuditEvent(
        106, WebhookEvent.SALE_STAGE_CHANGED, 7, 3, "NEW", "KYC", _EXAMPLE_AT, "u-sam", None, None
    ),
    WebhookEvent.LEADS_MERGED: AuditEvent(
        110,
        WebhookEvent.LEADS_MERGED,
        7,
        None,
        "CONTACTED",
        "CONTACTED",
        _EXAMPLE_AT,
        "u-admin",
        "A duplicate lead was merged into this one.",
        9,
    ),
}


def example_payloads() -> dict[WebhookEvent, dict[str, Any]]:
    return {event: payload(example) for event, example in _EXAMPLES.items()}
