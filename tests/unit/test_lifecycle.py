"""Every (from, to) pair of both lifecycles, checked against the rules as DESIGN.md states them."""

import itertools

import pytest

from crm_graphql.domain.enums import LeadStage, SaleStage
from crm_graphql.domain.errors import ErrorCode
from crm_graphql.domain.lifecycle import (
    LEAD_TRANSITIONS,
    UNLOCKED_LEAD_STAGES,
    check_lead_transition,
    check_sale_transition,
    lead_stages_that_may_move_to,
    sale_stages_that_may_move_to,
)

# Moves a manager may make with advanceStage. QUALIFIED -> TRANSFERRED is in the lifecycle but
# only transferToSales may make it.
MANUAL_LEAD_MOVES = {
    (LeadStage.NEW, LeadStage.CONTACTED),
    (LeadStage.NEW, LeadStage.LOST),
    (LeadStage.CONTACTED, LeadStage.QUALIFIED),
    (LeadStage.CONTACTED, LeadStage.LOST),
    (LeadStage.QUALIFIED, LeadStage.LOST),
}
SALE_MOVES = {
    (SaleStage.NEW, SaleStage.KYC),
    (SaleStage.KYC, SaleStage.AGREEMENT),
    (SaleStage.AGREEMENT, SaleStage.PAID),
    (SaleStage.NEW, SaleStage.LOST),
    (SaleStage.KYC, SaleStage.LOST),
    (SaleStage.AGREEMENT, SaleStage.LOST),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(LeadStage, LeadStage)))
def test_every_lead_stage_pair(current: LeadStage, target: LeadStage):
    violation = check_lead_transition(current, target)
    if current is LeadStage.TRANSFERRED:
        assert violation is not None
        assert violation.code is ErrorCode.LEAD_LOCKED
    elif (current, target) in MANUAL_LEAD_MOVES:
        assert violation is None
    else:
        assert violation is not None
        assert violation.code is ErrorCode.INVALID_TRANSITION
        assert violation.field == ("to",)
        assert str(target) in violation.message
        if target is not LeadStage.TRANSFERRED:  # that message points to transferToSales instead
            assert str(current) in violation.message


@pytest.mark.parametrize("current", [s for s in LeadStage if s is not LeadStage.TRANSFERRED])
def test_transferred_is_never_reached_by_a_manual_move(current: LeadStage):
    violation = check_lead_transition(current, LeadStage.TRANSFERRED)
    assert violation is not None
    assert violation.code is ErrorCode.INVALID_TRANSITION
    assert "transferToSales" in violation.message


def test_the_lifecycle_reaches_transferred_from_qualified_only():
    sources = {s for s, targets in LEAD_TRANSITIONS.items() if LeadStage.TRANSFERRED in targets}
    assert sources == {LeadStage.QUALIFIED}


def test_terminal_lead_stages_have_no_way_out():
    assert LEAD_TRANSITIONS[LeadStage.TRANSFERRED] == frozenset()
    assert LEAD_TRANSITIONS[LeadStage.LOST] == frozenset()


@pytest.mark.parametrize(("current", "target"), list(itertools.product(SaleStage, SaleStage)))
def test_every_sale_stage_pair(current: SaleStage, target: SaleStage):
    violation = check_sale_transition(current, target)
    if (current, target) in SALE_MOVES:
        assert violation is None
    else:
        assert violation is not None
        assert violation.code is ErrorCode.INVALID_TRANSITION
        assert violation.field == ("to",)
        assert str(current) in violation.message


# The writes check these sets under the row lock (db/repository.py), so they must say exactly
# what the checks say.
@pytest.mark.parametrize("target", list(LeadStage))
def test_the_stages_a_lead_may_move_from_are_the_manual_moves(target: LeadStage):
    expected = {current for current, to in MANUAL_LEAD_MOVES if to is target}
    assert lead_stages_that_may_move_to(target) == expected


@pytest.mark.parametrize("target", list(SaleStage))
def test_the_stages_a_sale_may_move_from_are_the_pipeline_s(target: SaleStage):
    assert sale_stages_that_may_move_to(target) == {c for c, to in SALE_MOVES if to is target}


def test_every_lead_stage_but_transferred_is_unlocked():
    assert set(LeadStage) - {LeadStage.TRANSFERRED} == UNLOCKED_LEAD_STAGES
