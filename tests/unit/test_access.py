"""The role table and the read rules, without a database."""

import pytest

from crm_graphql.domain.access import (
    ROLE_PERMISSIONS,
    Actor,
    Forbidden,
    Permission,
    Role,
    may_read_lead,
    may_see_lead_stage_change,
    readable_lead_stages,
    require,
    require_merge,
)
from crm_graphql.domain.enums import LeadStage
from crm_graphql.domain.lifecycle import LEAD_TRANSITIONS

P = Permission
EXPECTED = {
    Role.MANAGER: {
        P.READ_LEADS,
        P.READ_SALES,
        P.CREATE_LEAD,
        P.UPDATE_LEAD,
        P.LOG_ACTIVITY,
        P.ANALYZE_LEAD,
        P.ADVANCE_LEAD_STAGE,
        P.TRANSFER_LEAD,
        P.MERGE_LEADS,
        P.READ_ANALYTICS,
    },
    Role.SALES: {P.READ_TRANSFERRED_LEADS, P.READ_SALES, P.ADVANCE_SALE_STAGE},
    Role.ADMIN: set(Permission),
}


def actor(role: Role) -> Actor:
    return Actor(user_id=f"u-{role}", name=str(role), role=role)


@pytest.mark.parametrize(("role", "permission"), [(r, p) for r in Role for p in Permission])
def test_require_grants_exactly_the_permissions_of_the_role(role: Role, permission: Permission):
    if permission in EXPECTED[role]:
        require(actor(role), permission)
    else:
        with pytest.raises(Forbidden, match=f"The role {role} may not") as raised:
            require(actor(role), permission)
        assert raised.value.permission is permission


def test_every_role_has_a_row_in_the_table():
    assert set(ROLE_PERMISSIONS) == set(Role)


@pytest.mark.parametrize("stage", list(LeadStage))
def test_sales_reads_only_transferred_leads_the_others_read_all(stage: LeadStage):
    assert may_read_lead(actor(Role.SALES), stage) is (stage is LeadStage.TRANSFERRED)
    assert may_read_lead(actor(Role.MANAGER), stage)
    assert may_read_lead(actor(Role.ADMIN), stage)


def test_readable_stages_are_all_for_readers_of_every_lead():
    assert readable_lead_stages(actor(Role.MANAGER)) is None
    assert readable_lead_stages(actor(Role.SALES)) == {LeadStage.TRANSFERRED}


# Every change a lead can make, with every stage the lead may be in when its event goes out:
# the target itself or a stage one step on from it.
CHANGES_AND_LATER_STAGES = [
    (to, later)
    for to in LeadStage
    for later in LeadStage
    if later is to or later in LEAD_TRANSITIONS[to]
]


@pytest.mark.parametrize(("to", "lead_stage"), CHANGES_AND_LATER_STAGES)
def test_sales_sees_the_transfers_and_no_other_stage_change(to: LeadStage, lead_stage: LeadStage):
    sees = may_see_lead_stage_change(actor(Role.SALES), to, lead_stage)
    assert sees is (to is LeadStage.TRANSFERRED)
    assert may_see_lead_stage_change(actor(Role.MANAGER), to, lead_stage)
    assert may_see_lead_stage_change(actor(Role.ADMIN), to, lead_stage)


def test_a_stage_change_is_hidden_when_the_lead_is_now_out_of_sight():
    # Not reachable today (TRANSFERRED is final); the event must still never show such a lead.
    assert not may_see_lead_stage_change(actor(Role.SALES), LeadStage.TRANSFERRED, LeadStage.LOST)


@pytest.mark.parametrize(
    ("owners", "admin_may", "manager_may"),
    [
        (("u-manager", "u-manager"), True, True),
        (("u-manager", "someone-else"), True, False),
        (("someone-else", "u-manager"), True, False),
        (("someone-else", "someone-else"), True, False),
        ((None, "u-manager"), True, False),  # a lead from before authentication has no owner
    ],
)
def test_an_admin_merges_any_leads_a_manager_only_leads_they_own_both_of(
    owners: tuple[str | None, str | None], admin_may: bool, manager_may: bool
):
    for role, may in ((Role.ADMIN, admin_may), (Role.MANAGER, manager_may)):
        if may:
            require_merge(actor(role), owners)
        else:
            with pytest.raises(Forbidden, match="may not merge leads owned by someone else"):
                require_merge(actor(role), owners)


def test_sales_never_merges_not_even_leads_it_owns():
    with pytest.raises(Forbidden, match="The role sales may not merge leads") as raised:
        require_merge(actor(Role.SALES), ("u-sales", "u-sales"))
    assert raised.value.permission is Permission.MERGE_LEADS
