"""The lead and sale lifecycles as data, and the checks that apply them."""

from collections.abc import Mapping
from functools import cache

from crm_graphql.domain.enums import LeadStage, SaleStage
from crm_graphql.domain.errors import ErrorCode, Violation

LEAD_TRANSITIONS: Mapping[LeadStage, frozenset[LeadStage]] = {
    LeadStage.NEW: frozenset({LeadStage.CONTACTED, LeadStage.LOST}),
    LeadStage.CONTACTED: frozenset({LeadStage.QUALIFIED, LeadStage.LOST}),
    LeadStage.QUALIFIED: frozenset({LeadStage.TRANSFERRED, LeadStage.LOST}),
    LeadStage.TRANSFERRED: frozenset(),
    LeadStage.LOST: frozenset(),
}

# Transfer creates a Sale and is a human decision with its own guard: advanceStage may not do it.
TRANSFER_ONLY_TARGETS: frozenset[LeadStage] = frozenset({LeadStage.TRANSFERRED})

SALE_TRANSITIONS: Mapping[SaleStage, frozenset[SaleStage]] = {
    SaleStage.NEW: frozenset({SaleStage.KYC, SaleStage.LOST}),
    SaleStage.KYC: frozenset({SaleStage.AGREEMENT, SaleStage.LOST}),
    SaleStage.AGREEMENT: frozenset({SaleStage.PAID, SaleStage.LOST}),
    SaleStage.PAID: frozenset(),
    SaleStage.LOST: frozenset(),
}


def lead_locked_violation() -> Violation:
    return Violation(
        ErrorCode.LEAD_LOCKED,
        "The lead was transferred to sales and can no longer be changed.",
    )


def is_lead_locked(stage: LeadStage) -> bool:
    return stage is LeadStage.TRANSFERRED


def check_lead_transition(current: LeadStage, target: LeadStage) -> Violation | None:
    """The violation that forbids a manual move from current to target, or None if allowed."""
    if is_lead_locked(current):
        return lead_locked_violation()
    if target in TRANSFER_ONLY_TARGETS:
        return Violation(
            ErrorCode.INVALID_TRANSITION,
            "A lead reaches TRANSFERRED only through transferToSales.",
            ("to",),
        )
    if target not in LEAD_TRANSITIONS[current]:
        return Violation(
            ErrorCode.INVALID_TRANSITION,
            _transition_message(current, target, LEAD_TRANSITIONS[current]),
            ("to",),
        )
    return None


def check_sale_transition(current: SaleStage, target: SaleStage) -> Violation | None:
    if target not in SALE_TRANSITIONS[current]:
        return Violation(
            ErrorCode.INVALID_TRANSITION,
            _transition_message(current, target, SALE_TRANSITIONS[current]),
            ("to",),
        )
    return None


@cache
def lead_stages_that_may_move_to(target: LeadStage) -> frozenset[LeadStage]:
    """The stages a lead may be in for a manual move to target: the rule as a set, so a write
    can check it against the stage it finds under the row lock."""
    return frozenset(stage for stage in LeadStage if check_lead_transition(stage, target) is None)


@cache
def sale_stages_that_may_move_to(target: SaleStage) -> frozenset[SaleStage]:
    return frozenset(stage for stage in SaleStage if check_sale_transition(stage, target) is None)


UNLOCKED_LEAD_STAGES: frozenset[LeadStage] = frozenset(
    stage for stage in LeadStage if not is_lead_locked(stage)
)


def _transition_message(
    current: LeadStage | SaleStage,
    target: LeadStage | SaleStage,
    allowed: frozenset[LeadStage] | frozenset[SaleStage],
) -> str:
    if not allowed:
        return f"{current} is a terminal stage; it cannot move to {target}."
    names = ", ".join(sorted(allowed))
    return f"Cannot move from {current} to {target}; allowed from {current}: {names}."
