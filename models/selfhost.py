"""Self-hosting against the API: what a node's hour buys in tokens, and the monthly volume where it wins.

Self-hosted cost per 1M tokens = node cost per hour / (aggregate tokens/s · 3,600 · utilisation) · 1e6.
Break-even volume = the nodes' monthly cost / the API's cost per token. The seed's estimates (API ≈ $0.007
per 1K tokens, self-hosted ≈ $0.003 per 1K at full load) are the kind of comparison this makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from models.errors import InputError
from models.money import MILLION, Money

HOURS_PER_MONTH = Decimal(730)


@dataclass(frozen=True, slots=True)
class SelfHost:
    node_cost_per_hour: Money
    tokens_per_s: Decimal  # aggregate throughput of one node (all streams)
    utilization: Decimal = Decimal(1)  # share of the hour the node does useful work
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.node_cost_per_hour.amount < 0:
            raise InputError("a node's cost per hour cannot be negative")
        if self.tokens_per_s <= 0:
            raise InputError("a node's tokens per second must be positive")
        if not Decimal(0) < self.utilization <= 1:
            raise InputError(f"utilisation is a share above 0 and at most 1, got {self.utilization}")
        if self.nodes < 1:
            raise InputError("at least one node")

    @property
    def cost_per_mtok(self) -> Money:
        tokens_per_hour = self.tokens_per_s * 3600 * self.utilization
        return Money(
            self.node_cost_per_hour.amount / tokens_per_hour * MILLION, self.node_cost_per_hour.currency
        )

    @property
    def monthly_cost(self) -> Money:
        return self.node_cost_per_hour * (HOURS_PER_MONTH * self.nodes)

    @property
    def monthly_capacity_mtok(self) -> Decimal:
        return self.tokens_per_s * 3600 * self.utilization * HOURS_PER_MONTH * self.nodes / MILLION


@dataclass(frozen=True, slots=True)
class BreakEven:
    selfhost_per_mtok: Money
    api_per_mtok: Money
    monthly_selfhost: Money
    break_even_mtok_per_month: Decimal | None  # None: the API is never dearer per token
    capacity_mtok_per_month: Decimal
    nodes_for_demand: int | None
    demand_mtok_per_month: Decimal | None
    cheaper: str | None  # "api" or "self-host" at the given demand

    def to_json(self) -> dict[str, Any]:
        def num(v: Decimal | None) -> float | None:
            return None if v is None else float(round(v, 3))

        return {
            "selfhost_cost_per_mtok": self.selfhost_per_mtok.to_json(4),
            "api_cost_per_mtok": self.api_per_mtok.to_json(4),
            "selfhost_monthly_cost": self.monthly_selfhost.to_json(2),
            "break_even_mtok_per_month": num(self.break_even_mtok_per_month),
            "capacity_mtok_per_month": num(self.capacity_mtok_per_month),
            "demand_mtok_per_month": num(self.demand_mtok_per_month),
            "nodes_for_demand": self.nodes_for_demand,
            "cheaper": self.cheaper,
        }


def break_even(
    host: SelfHost, api_per_mtok: Money, demand_mtok_per_month: Decimal | None = None
) -> BreakEven:
    if api_per_mtok.currency != host.node_cost_per_hour.currency:
        node_currency = host.node_cost_per_hour.currency
        raise InputError(
            f"the API is priced in {api_per_mtok.currency} and the node in {node_currency}: "
            "show both in one display currency"
        )
    monthly = host.monthly_cost
    volume = None if api_per_mtok.amount <= 0 else monthly.amount / api_per_mtok.amount
    nodes = cheaper = None
    if demand_mtok_per_month is not None:
        per_node = host.monthly_capacity_mtok / host.nodes
        nodes = max(1, math.ceil(demand_mtok_per_month / per_node))
        selfhost_cost = host.node_cost_per_hour.amount * HOURS_PER_MONTH * nodes
        api_cost = api_per_mtok.amount * demand_mtok_per_month
        cheaper = "self-host" if selfhost_cost < api_cost else "api"
    return BreakEven(
        host.cost_per_mtok,
        api_per_mtok,
        monthly,
        volume,
        host.monthly_capacity_mtok,
        nodes,
        demand_mtok_per_month,
        cheaper,
    )
