"""Who may do what: roles, permissions as data, and the checks the services apply.

Authentication (is this token genuine?) happens at the edge; authorization (may this person do
this?) happens here, so every path to the data (a mutation, `node(id:)`, a nested field, a
subscription) meets the same rules.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from crm_graphql.domain.enums import LeadStage


class Role(StrEnum):
    MANAGER = "manager"
    SALES = "sales"
    ADMIN = "admin"


class Permission(StrEnum):
    READ_LEADS = "read_leads"
    # Sales sees a lead once it is handed over, never the funnel before that.
    READ_TRANSFERRED_LEADS = "read_transferred_leads"
    READ_SALES = "read_sales"
    CREATE_LEAD = "create_lead"
    UPDATE_LEAD = "update_lead"
    LOG_ACTIVITY = "log_activity"
    ANALYZE_LEAD = "analyze_lead"
    ADVANCE_LEAD_STAGE = "advance_lead_stage"
    TRANSFER_LEAD = "transfer_lead"
    ADVANCE_SALE_STAGE = "advance_sale_stage"
    ASSIGN_LEAD = "assign_lead"
    # Asking for a specific scorer (analyzeLead's `scorer`) instead of the deployment's default.
    CHOOSE_SCORER = "choose_scorer"
    # mergeLeads on leads the actor owns both of; MERGE_ANY_LEADS lifts the ownership condition.
    MERGE_LEADS = "merge_leads"
    MERGE_ANY_LEADS = "merge_any_leads"
    # pipelineStats: the whole funnel's figures, which sales (who sees only handed-over leads)
    # may not read.
    READ_ANALYTICS = "read_analytics"
    # Webhook endpoints and their deliveries (admins only: a webhook sends data out).
    MANAGE_WEBHOOKS = "manage_webhooks"


_LEAD_WORK = frozenset(
    {
        Permission.READ_LEADS,
        Permission.READ_SALES,
        Permission.CREATE_LEAD,
        Permission.UPDATE_LEAD,
        Permission.LOG_ACTIVITY,
        Permission.ANALYZE_LEAD,
        Permission.ADVANCE_LEAD_STAGE,
        Permission.TRANSFER_LEAD,
        Permission.MERGE_LEADS,
    }
)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.MANAGER: _LEAD_WORK | {Permission.READ_ANALYTICS},
    Role.SALES: frozenset(
        {
            Permission.READ_TRANSFERRED_LEADS,
            Permission.READ_SALES,
            Permission.ADVANCE_SALE_STAGE,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True)
class Actor:
    """The authenticated person behind a request: the token's `sub`, `name` and `role`."""

    user_id: str
    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


@dataclass(frozen=True)
class User:
    """A person the server has seen; `role` is the one of their latest write."""

    id: str
    name: str
    role: Role


class Forbidden(Exception):
    """The actor's role does not allow the operation; nothing was read or changed."""

    def __init__(self, actor: Actor, permission: Permission, what: str | None = None) -> None:
        """`what` words the refused action when the permission's name alone would mislead."""
        action = what or permission.replace("_", " ")
        super().__init__(f"The role {actor.role} may not {action}.")
        self.permission = permission


def require(actor: Actor, permission: Permission) -> None:
    """Raise Forbidden unless the actor's role grants the permission."""
    if not actor.may(permission):
        raise Forbidden(actor, permission)


def require_merge(actor: Actor, owner_ids: Iterable[str | None]) -> None:
    """mergeLeads: an admin merges any leads, a manager only leads they own both of."""
    require(actor, Permission.MERGE_LEADS)
    if actor.may(Permission.MERGE_ANY_LEADS):
        return
    if any(owner_id != actor.user_id for owner_id in owner_ids):
        raise Forbidden(actor, Permission.MERGE_ANY_LEADS, "merge leads owned by someone else")


def readable_lead_stages(actor: Actor) -> frozenset[LeadStage] | None:
    """The stages of the leads the actor may read: None for all of them.

    A lead outside them behaves as if it did not exist, so its existence does not leak.
    """
    if actor.may(Permission.READ_LEADS):
        return None
    if actor.may(Permission.READ_TRANSFERRED_LEADS):
        return frozenset({LeadStage.TRANSFERRED})
    raise Forbidden(actor, Permission.READ_LEADS)


def may_read_lead(actor: Actor, stage: LeadStage) -> bool:
    stages = readable_lead_stages(actor)
    return stages is None or stage in stages


def may_own_lead(owner: User, stage: LeadStage) -> bool:
    """Whether a person may be made a lead's owner: only if their role lets them read it, so
    no lead is owned by someone for whom it does not exist (a sales user before transfer)."""
    return may_read_lead(Actor(owner.id, owner.name, owner.role), stage)


def may_see_lead_stage_change(actor: Actor, to_stage: LeadStage, lead_stage: LeadStage) -> bool:
    """Whether a leadStageChanged event goes to the actor: they may read the lead both in the
    stage the change put it in and in the stage it is in when the event goes out. A sales user
    thus gets the transfers (QUALIFIED to TRANSFERRED) and none of the funnel before them."""
    return may_read_lead(actor, to_stage) and may_read_lead(actor, lead_stage)
