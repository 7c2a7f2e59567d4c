"""Multi-offer plans: split a demand over several offers by weights, or fill one to its limit and overflow.

Costs are blended in one currency, so every plan in a mix must already show its money in the same currency
(the planner asks for a display currency when offers differ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from models.cost import Demand
from models.errors import InputError
from models.money import Money
from models.plan import Plan, json_number

Strategy = Literal["weights", "overflow"]


@dataclass(frozen=True, slots=True)
class MixShare:
    label: str
    share: Decimal  # of the peak demand
    peak_per_minute: Decimal
    keys: int  # keys (accounts, projects) this offer needs (weights) or is given (overflow)
    capacity_per_minute: Decimal | None  # what those keys carry; None: unbounded
    cost_per_question: Money | None


@dataclass(frozen=True)
class Mix:
    strategy: Strategy
    shares: tuple[MixShare, ...]
    unserved_per_minute: Decimal  # demand no offer in the mix can carry (overflow only)
    cost_per_question: Money | None  # blended; None if any used offer is unpriced
    monthly_cost: Money | None

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "shares": [
                {
                    "offer": s.label,
                    "share": json_number(s.share),
                    "peak_per_minute": json_number(s.peak_per_minute),
                    "keys": s.keys,
                    "capacity_per_minute": json_number(s.capacity_per_minute),
                    "cost_per_question": None
                    if s.cost_per_question is None
                    else s.cost_per_question.to_json(8),
                }
                for s in self.shares
            ],
            "unserved_per_minute": json_number(self.unserved_per_minute),
            "cost_per_question": None
            if self.cost_per_question is None
            else self.cost_per_question.to_json(8),
            "monthly_cost": None if self.monthly_cost is None else self.monthly_cost.to_json(2),
        }


def _blend(
    plans: Sequence[Plan], shares: Sequence[Decimal], demand: Demand
) -> tuple[Money | None, Money | None]:
    used = [(plan, share) for plan, share in zip(plans, shares, strict=True) if share > 0]
    if not used or any(plan.cost is None for plan, _ in used):
        return None, None
    currencies = {plan.cost.per_question.currency for plan, _ in used if plan.cost is not None}
    if len(currencies) > 1:
        raise InputError(
            f"the offers in this mix are priced in {', '.join(sorted(currencies))}: choose a display currency"
        )
    served = sum((share for _, share in used), Decimal(0))
    currency = currencies.pop()
    blended = Money.zero(currency)
    for plan, share in used:
        assert plan.cost is not None
        blended = blended + plan.cost.per_question * (share / served)
    # the unserved part of the demand costs nothing: it was not answered
    return blended, blended * (demand.questions_per_month * served)


def mix_by_weights(plans: Sequence[Plan], weights: Sequence[Decimal], demand: Demand) -> Mix:
    if len(plans) != len(weights):
        raise InputError(f"{len(plans)} offers but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) == 0:
        raise InputError("mix weights must be zero or more and not all zero")
    total = sum(weights, Decimal(0))
    shares = [w / total for w in weights]
    rows = []
    for plan, share in zip(plans, shares, strict=True):
        peak = demand.peak_per_minute * share
        rate = plan.capacity.questions_per_minute
        keys = 0 if peak == 0 else (1 if rate is None else max(1, math.ceil(peak / rate)))
        capacity = None if rate is None else rate * keys
        rows.append(
            MixShare(
                plan.label, share, peak, keys, capacity, None if plan.cost is None else plan.cost.per_question
            )
        )
    cost, monthly = _blend(plans, shares, demand)
    return Mix("weights", tuple(rows), Decimal(0), cost, monthly)


def mix_by_overflow(plans: Sequence[Plan], keys: Sequence[int], demand: Demand) -> Mix:
    """Fill the first offer up to what its keys carry, send the rest to the next, and so on."""
    if len(plans) != len(keys):
        raise InputError(f"{len(plans)} offers but {len(keys)} key counts")
    if any(k < 1 for k in keys):
        raise InputError("each offer in an overflow mix needs at least one key")
    remaining = demand.peak_per_minute
    rows = []
    shares = []
    for plan, n in zip(plans, keys, strict=True):
        rate = plan.capacity.questions_per_minute
        capacity = None if rate is None else rate * n
        taken = remaining if capacity is None else min(remaining, capacity)
        remaining -= taken
        share = taken / demand.peak_per_minute
        shares.append(share)
        rows.append(
            MixShare(
                plan.label, share, taken, n, capacity, None if plan.cost is None else plan.cost.per_question
            )
        )
    cost, monthly = _blend(plans, shares, demand)
    return Mix("overflow", tuple(rows), remaining, cost, monthly)
