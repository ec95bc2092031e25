"""The role table and the read rules, without a database."""

import pytest

from crm_graphql.domain.access import (
    ROLE_PERMISSIONS,
    Actor,
    Forbidden,
    Permission,
    Role,
    may_read_lead,
    readable_lead_stages,
    require,
)
from crm_graphql.domain.enums import LeadStage

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
