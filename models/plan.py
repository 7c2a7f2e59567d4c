"""One what-if plan: an offer (or explicit limits and prices), a token profile, a latency and a demand →
questions per minute, the binding limit, concurrency, keys needed, cost per question and per month.

This is what `quotascope plan` prints and what the dashboard's planner shows; both call `make_plan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl

from models.capacity import (
    CacheUse,
    Capacity,
    Latency,
    cache_use,
    concurrency_at,
    keys_needed,
    ptu_limits,
    ptu_needed,
    sustainable_rate,
)
from models.catalog import Catalog, Limits, OfferVersion, Prices
from models.cost import Demand, QuestionCost, monthly_cost, question_cost
from models.errors import UnpricedError
from models.money import FxTable, Money
from models.profile import TokenProfile


@dataclass(frozen=True)
class PlanRequest:
    version: OfferVersion  # limits, rules and prices in force (overrides already applied)
    profile: TokenProfile
    latency: Latency
    at: datetime
    demand: Demand | None = None
    cache_hit_rate: Decimal | None = None
    hourly_shape: Sequence[float | Decimal] | None = None
    fx: FxTable | None = None
    display_currency: str | None = None
    fee_calls_per_question: Mapping[str, Decimal] = field(default_factory=dict)
    ptus: int | None = None  # provisioned units bought, for an offer with a PTU rule
    label: str = ""  # the offer id, or "custom"


@dataclass(frozen=True)
class PtuPlan:
    exact: Decimal
    to_buy: int


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    capacity: Capacity
    cache: CacheUse
    cost: QuestionCost | None  # None when the offer publishes no price
    keys_needed: int | None
    monthly_cost: Money | None
    peak_concurrency: Decimal | None
    ptu: PtuPlan | None
    assumptions: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.request.label

    def to_json(self) -> dict[str, Any]:
        """The `quotascope plan --json` document (money as strings with their currency)."""
        profile, cap, calls = self.request.profile, self.capacity, self.request.profile.calls
        version = self.request.version
        document: dict[str, Any] = {
            "offer": self.label,
            "questions_per_minute": json_number(cap.questions_per_minute),
            "binding_limit": cap.binding_limit,
            "limits": {r.name: json_number(r.questions_per_minute) for r in cap.limits},
            "limit_values": {r.name: r.limit for r in cap.limits},
            "scope": version.limits.scope,
            "tokens_per_question": {
                "input": json_number(profile.input * calls),
                "cached_input": json_number(self.cache.cached_input * calls),
                "cache_write": json_number(self.cache.cache_write * calls),
                "output": json_number(profile.output * calls),
                "reasoning": json_number(profile.reasoning * calls),
                "counted": json_number(cap.counted.total * calls),
            },
            "calls_per_question": json_number(calls),
            "call_seconds": json_number(cap.call_minutes * 60),
            "concurrency": json_number(cap.concurrency),
            "latency": {
                "ttft_ms": json_number(self.request.latency.ttft_ms),
                "tokens_per_s": json_number(self.request.latency.tokens_per_s),
                "assumed": self.request.latency.assumed,
            },
            "cache": {"method": self.cache.method},
            "price_version": {"id": version.version_id, "source": version.source, "as_of": version.as_of},
            "assumptions": list(self.assumptions),
        }
        if self.cost is not None:
            document["cost_per_question"] = self.cost.per_question.to_json(8)
            document["cost_per_1k_questions"] = self.cost.per_1k_questions.to_json(6)
            document["cache_savings_per_1k_questions"] = (self.cost.cache_savings * 1000).to_json(6)
            document["time_of_day_multiplier"] = json_number(self.cost.time_multiplier)
            document["promotion"] = self.cost.rates.promotion
            document["long_context_tier"] = self.cost.rates.tier
            document["fx"] = (
                None
                if self.cost.fx is None
                else {
                    "rate": str(self.cost.fx.rate),
                    "pair": f"{self.cost.fx.base}/{self.cost.fx.quote}",
                    "source": self.cost.fx.source,
                    "as_of": self.cost.fx.as_of.isoformat(),
                }
            )
        else:
            document["cost_per_question"] = None
            document["cost_per_1k_questions"] = None
        if self.request.demand is not None:
            demand = self.request.demand
            document["demand"] = {
                "peak_per_minute": json_number(demand.peak_per_minute),
                "average_per_minute": json_number(demand.average_per_minute),
                "questions_per_month": json_number(demand.questions_per_month),
                "described": demand.described,
            }
            document["keys_needed"] = self.keys_needed
            document["peak_concurrency"] = json_number(self.peak_concurrency)
            document["monthly_cost"] = None if self.monthly_cost is None else self.monthly_cost.to_json(2)
        if self.ptu is not None:
            document["ptu"] = {"exact": json_number(self.ptu.exact), "to_buy": self.ptu.to_buy}
        return document


def json_number(value: Decimal | None) -> float | int | None:
    """JSON numbers for rates and token counts (not money): exact integers stay integers."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(round(value, 6))


def make_plan(request: PlanRequest) -> Plan:
    version, profile = request.version, request.profile
    assumptions: list[str] = []
    limits: Limits = version.limits.effective()
    counting = version.counting
    if version.limits.rpm is None and limits.rpm is not None and version.limits.rpm_per_tpm is not None:
        rpm, per = version.limits.rpm_per_tpm
        assumptions.append(
            f"RPM {limits.rpm} derived from TPM by the offer's rule of {rpm} RPM per {per} TPM"
        )
    if version.ptu is not None and request.ptus is not None:
        limits, counting = ptu_limits(version.ptu, request.ptus)
        assumptions.append(
            f"{request.ptus} PTU = {limits.tpm} input TPM, output weighted ×{version.ptu.output_weight}"
        )
    if counting.reserve_max_tokens and profile.max_tokens is None:
        assumptions.append(
            "this offer charges max_tokens against the limit at request start; pass --max-tokens, "
            "otherwise actual output is counted (optimistic)"
        )
    if request.latency.assumed:
        assumptions.append(
            f"latency from the seed measurement (TTFT {request.latency.ttft_ms} ms, "
            f"{request.latency.tokens_per_s} tokens/s); pass --ttft-ms/--tokens-per-s or probe the endpoint"
        )
    bills_writes = version.cache.write_multiplier is not None or (
        version.prices is not None and version.prices.cache_write is not None
    )
    cache = cache_use(profile, version.cache, request.cache_hit_rate, bills_writes=bills_writes)
    capacity = sustainable_rate(profile, limits, counting, cache, request.latency)
    if capacity.questions_per_minute is None:
        assumptions.append(
            "no published limit applies to this profile: the rate is bounded only by the provider"
        )
    try:
        cost: QuestionCost | None = question_cost(
            version,
            profile,
            cache,
            at=request.at,
            hourly_shape=request.hourly_shape,
            fx=request.fx,
            display_currency=request.display_currency,
            fee_calls_per_question=request.fee_calls_per_question,
        )
    except UnpricedError:
        cost = None
        assumptions.append(
            "the offer publishes no token price: cost is unknown (give --price-input/--price-output)"
        )
    keys = monthly = peak_concurrency = None
    ptu = None
    if request.demand is not None:
        keys = keys_needed(request.demand.peak_per_minute, capacity)
        monthly = None if cost is None else monthly_cost(cost, request.demand)
        peak_concurrency = concurrency_at(request.demand.peak_per_minute, profile, request.latency)
        if version.ptu is not None:
            hit_rate = cache.cached_input / profile.input if profile.input else Decimal(0)
            exact, to_buy = ptu_needed(
                version.ptu,
                request.demand.peak_per_minute * profile.calls,
                profile.input,
                profile.output,
                hit_rate,
            )
            ptu = PtuPlan(exact, to_buy)
    return Plan(request, capacity, cache, cost, keys, monthly, peak_concurrency, ptu, tuple(assumptions))


def with_overrides(
    version: OfferVersion,
    *,
    limits: Mapping[str, int | None] | None = None,
    prices: Mapping[str, Decimal | None] | None = None,
    currency: str | None = None,
) -> OfferVersion:
    """A version with some limits or prices replaced (the planner's explicit options win over the catalog)."""
    new = version
    if limits:
        given: dict[str, Any] = {k: v for k, v in limits.items() if v is not None}
        if given:
            new = replace(new, limits=replace(new.limits, **given))
    if prices:
        given_prices = {k: v for k, v in prices.items() if v is not None}
        if given_prices:
            base = new.prices or Prices(input=Decimal(0), output=Decimal(0))
            if new.prices is None and not {"input", "output"} <= set(given_prices):
                missing = sorted({"input", "output"} - set(given_prices))
                raise UnpricedError(
                    f"offer {version.offer_id!r} has no price to start from; also give --price-{missing[0]}"
                )
            new = replace(new, prices=replace(base, **given_prices), tiers=())
    if currency:
        new = replace(new, currency=currency.upper())
    return new


def plan_offers(
    catalog: Catalog,
    offer_ids: Sequence[str],
    profile: TokenProfile,
    latency: Latency,
    at: datetime,
    *,
    demand: Demand | None = None,
    cache_hit_rate: Decimal | None = None,
    hourly_shape: Sequence[float | Decimal] | None = None,
    display_currency: str | None = None,
) -> list[Plan]:
    """Plans for catalog offers (each version in force `at`) under one profile; see `plan_versions`."""
    versions = [(offer_id, catalog.get(offer_id).version_at(at)) for offer_id in offer_ids]
    return plan_versions(
        versions,
        profile,
        latency,
        at,
        demand=demand,
        cache_hit_rate=cache_hit_rate,
        hourly_shape=hourly_shape,
        fx=catalog.fx,
        display_currency=display_currency,
    )


def plan_versions(
    versions: Sequence[tuple[str, OfferVersion]],
    profile: TokenProfile,
    latency: Latency,
    at: datetime,
    *,
    demand: Demand | None = None,
    cache_hit_rate: Decimal | None = None,
    hourly_shape: Sequence[float | Decimal] | None = None,
    fx: FxTable | None = None,
    display_currency: str | None = None,
    fee_calls_per_question: Mapping[str, Decimal] | None = None,
    ptus: int | None = None,
) -> list[Plan]:
    """Plans for (label, version) pairs — catalog versions, or versions with a user's overrides — under one
    profile, shown in one currency so they compare: without a display currency, versions priced in
    different currencies are shown in the first one's. The dashboard's planner and `quotascope plan` both
    plan through here."""
    currency = display_currency
    if currency is None and len({v.currency for _, v in versions}) > 1:
        currency = versions[0][1].currency
    return [
        make_plan(
            PlanRequest(
                version=version,
                profile=profile,
                latency=latency,
                at=at,
                demand=demand,
                cache_hit_rate=cache_hit_rate,
                hourly_shape=hourly_shape,
                fx=fx,
                display_currency=currency,
                fee_calls_per_question=dict(fee_calls_per_question or {}),
                ptus=ptus,
                label=label,
            )
        )
        for label, version in versions
    ]


def capacity_curve(plans: Sequence[Plan], tokens_per_question: Sequence[int]) -> pl.DataFrame:
    """Questions per minute against tokens per question for each plan's offer, the input:output ratio kept.

    Columns: offer, tokens_per_question, questions_per_minute (null where no limit applies), binding_limit.
    """
    rows: list[dict[str, Any]] = []
    for plan in plans:
        profile = plan.request.profile
        per_call = profile.input + profile.output
        for total in tokens_per_question:
            factor = Decimal(total) / (per_call * profile.calls)
            scaled = replace(
                profile,
                input=profile.input * factor,
                output=profile.output * factor,
                reasoning=profile.reasoning * factor,
                stable_prefix=profile.stable_prefix * factor,
                next_prefix=profile.next_prefix * factor,
            )
            result = make_plan(replace(plan.request, profile=scaled, demand=None))
            rate = result.capacity.questions_per_minute
            rows.append(
                {
                    "offer": plan.label,
                    "tokens_per_question": total,
                    "questions_per_minute": None if rate is None else float(rate),
                    "binding_limit": result.capacity.binding_limit,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "offer": pl.String,
            "tokens_per_question": pl.Int64,
            "questions_per_minute": pl.Float64,
            "binding_limit": pl.String,
        },
    )


def cost_curve(plans: Sequence[Plan], hit_rates: Sequence[Decimal]) -> pl.DataFrame:
    """Cost per 1,000 questions against the cache-hit rate for each priced plan.

    Columns: offer, cache_hit_rate (share of input tokens), cost_per_1k_questions (DECIMAL), currency.
    """
    rows: list[dict[str, Any]] = []
    for plan in plans:
        if plan.cost is None:
            continue
        for rate in hit_rates:
            result = make_plan(replace(plan.request, cache_hit_rate=rate, demand=None))
            assert result.cost is not None
            rows.append(
                {
                    "offer": plan.label,
                    "cache_hit_rate": float(rate),
                    "cost_per_1k_questions": result.cost.per_1k_questions.amount,
                    "currency": result.cost.per_question.currency,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "offer": pl.String,
            "cache_hit_rate": pl.Float64,
            "cost_per_1k_questions": pl.Decimal(38, 10),
            "currency": pl.String,
        },
    )
