"""Replay recorded traffic against another offer: how often its limits would have throttled it, and what it
would have cost (DESIGN.md, "Switching").

1. **Demand** is rebuilt from stored usage rows (`models.traffic.traffic_from_usage`): one unit per request
   at its own time; an aggregated row is spread evenly over its bucket.
2. Each unit's **tokens under the target** follow its cache rules and a tokenizer ratio
   (`models.target.target_tokens`), and what they **count** against its limits follows its counting rules
   (`counted_columns`: cached input excluded where it is, `max_tokens` reserved at the start where it is,
   output burn-down).
3. The demand goes through the target's **limits as enforced** (`models.enforcement.enforce_limits`, the one
   place a limit is enforced): per-minute or
   per-second windows or a continuous token bucket for TPM / ITPM / OTPM / RPM, day windows for TPD / RPD,
   concurrency from each request's duration (`latency_ms`, else TTFT + output at a tokens/s assumption).
   A key-scoped limit is multiplied by the number of keys (requests spread evenly over them); an account- or
   project-scoped one by the number of accounts.
4. Policies: **reject** (a 429: throttled share, minutes over limit, worst minute) or **queue** (a FIFO
   client queue: added delay p50/p99, queue length). Either way: the keys (or accounts) and the limit per key
   that would have avoided all throttling.
5. **Re-pricing** every unit under the target's price versions, time windows, promotions and cache rules,
   with a band from the tokenizer-ratio range (`models.target`, priced by `models.pricing`).

Limits are replayed one by one and a second admits the smallest share any of them admits; exact when one
limit binds at a time, a little pessimistic when two with different windows bind together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import polars as pl

from models.catalog import Limits, Offer
from models.enforcement import SLACK, Enforced, ceil_scale, enforce_limits, queue_lengths, run_ends, run_sums
from models.errors import InputError
from models.money import FxTable, Money
from models.pricing import PricedTraffic, price_units, version_index
from models.target import target_tokens
from models.traffic import Traffic

Policy = Literal["reject", "queue"]
POLICIES: tuple[Policy, ...] = ("reject", "queue")

# ------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class ReplayOptions:
    keys: int = 1  # keys sharing the traffic evenly (multiplies key-scoped limits)
    accounts: int = 1  # accounts (multiplies account- and project-scoped limits)
    policy: Policy = "reject"
    tokenizer_ratio: tuple[Decimal, Decimal] = (Decimal(1), Decimal(1))  # target tokens / recorded tokens
    max_tokens: int | None = None  # what clients ask for, where the target reserves it at request start
    currency: str | None = None  # money shown in (default: the target's newest version's currency)
    # limits that replace the offer's in every version (tpm, rpm, itpm, otpm, max_concurrency, ...)
    limits: Mapping[str, int] = field(default_factory=dict)
    # price and limit every request under the version in force at this time (e.g. now) instead of each
    # request's own date: "last month's traffic at today's prices"
    version_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.keys < 1 or self.accounts < 1:
            raise InputError("keys and accounts are whole numbers from 1")
        if self.policy not in POLICIES:
            raise InputError(f"a policy is reject or queue, not {self.policy!r}")
        low, high = self.tokenizer_ratio
        if low <= 0 or high < low:
            raise InputError(f"a tokenizer ratio range is LOW,HIGH with 0 < LOW <= HIGH, got {low},{high}")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise InputError("max_tokens must be positive")
        for name, value in self.limits.items():
            if value <= 0:
                raise InputError(f"a {name.upper()} limit of {value} allows nothing")

    @property
    def ratio(self) -> Decimal:
        low, high = self.tokenizer_ratio
        return (low + high) / 2


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class WorstMinute:
    minute: datetime
    requests: float
    throttled: float

    @property
    def share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Replay:
    """One target's replay, with per-minute frames: `minutes` (what happened to the requests), `demand`
    (against each rate limit) and `concurrency` (against the concurrency cap); see
    `models.enforcement.Enforced` for the last two, whose `minute` is a timestamp here."""

    offer_id: str
    offer_name: str
    policy: Policy
    keys: int
    accounts: int
    scope: str
    window: str
    limits: Mapping[str, int]  # per key (or account), as replayed
    requests: float
    throttled_requests: float
    minutes_over_limit: int
    worst_minute: WorstMinute | None
    delay_p50_s: float | None
    delay_p99_s: float | None
    max_queue: float | None
    keys_needed: int
    limits_needed: Mapping[str, int]  # per key (or account) at the given keys, to avoid all throttling
    cost: PricedTraffic
    cost_low: Money | None
    cost_high: Money | None
    assumptions: tuple[str, ...]
    minutes: pl.DataFrame  # minute, requests, throttled_requests, max_delay_s, max_queue_requests
    # minute, limit, window, measure, demand_per_minute, peak_per_minute, limit_per_minute
    demand: pl.DataFrame
    concurrency: pl.DataFrame  # minute, max_in_flight_requests, limit_in_flight_requests

    @property
    def throttled_share(self) -> float:
        return self.throttled_requests / self.requests if self.requests else 0.0

    @property
    def throttled(self) -> bool:
        return self.throttled_requests > SLACK


# ------------------------------------------------------------------------------------------ replay


def _weighted_quantiles(values: pl.Series, weights: pl.Series, qs: Sequence[float]) -> list[float]:
    """The value below which each share `q` of the weight lies (one sort for all of them)."""
    frame = (
        pl.DataFrame({"v": values, "weight": weights})
        .sort("v")
        .with_columns(pl.col("weight").cum_sum().alias("c"))
    )
    total = float(frame["weight"].sum())
    if total <= 0:
        return [0.0 for _ in qs]
    out = []
    for q in qs:
        index = int(frame["c"].search_sorted(q * total - SLACK, side="left"))
        out.append(float(frame["v"][min(index, frame.height - 1)]))
    return out


def replay(traffic: Traffic, offer: Offer, options: ReplayOptions, *, fx: FxTable) -> Replay:
    """Replay `traffic` against `offer` (see the module docstring)."""
    if traffic.units.height == 0:
        raise InputError("there is no recorded traffic to replay in the period; ingest usage logs first")
    assumptions: list[str] = []
    if options.version_at is not None:
        fixed = offer.versions.index(offer.version_at(options.version_at))
        vidx = pl.lit(fixed, dtype=pl.Int32)
        assumptions.append(
            f"every request priced and limited as {offer.versions[fixed].version_id} "
            f"(the version in force at {options.version_at:%Y-%m-%d %H:%M})"
        )
    else:
        vidx = version_index(pl.col("ts"), offer.versions, "earliest")
    units = traffic.units.with_columns(vidx.alias("vidx"))
    units = target_tokens(units, offer, options.ratio, reestimate=True)
    used = sorted(units["vidx"].unique().to_list())
    newest = offer.versions[used[-1]]
    currency = (options.currency or newest.currency).upper()
    early = units.filter(pl.col("ts") < offer.versions[0].effective_from)
    if early.height and options.version_at is None:
        first = offer.versions[0].effective_from.date().isoformat()
        assumptions.append(
            f"{float(early['requests'].sum()):,.0f} requests predate {offer.id}'s first catalog version "
            f"({first}): priced and limited as that version"
        )
    segments: list[Enforced] = []
    limits_used: Limits | None = None
    for k in used:
        version = offer.versions[k]
        part = units if len(used) == 1 else units.filter(pl.col("vidx") == k)
        multiplier = options.keys if version.limits.scope == "key" else options.accounts
        segment, limits_used = enforce_limits(
            part,
            version,
            policy=options.policy,
            multiplier=multiplier,
            limit_overrides=options.limits,
            max_tokens=options.max_tokens,
        )
        segments.append(segment)
    assert limits_used is not None
    version = newest
    done = (
        pl.concat([s.units for s in segments]).sort("t_s", maintain_order=True)
        if len(segments) > 1
        else segments[0].units
    )
    requests = float(done["requests"].sum())
    throttled = float(done["throttled_requests"].sum())
    minute = (pl.col("t_s") // 60).cast(pl.Int64).set_sorted()
    queue = queue_lengths(done) if options.policy == "queue" and throttled > SLACK else None
    if options.policy == "queue":
        per_minute = (
            done.with_columns(
                minute.alias("minute"), (queue if queue is not None else pl.lit(0.0)).alias("queue")
            )
            .group_by("minute", maintain_order=True)
            .agg(
                pl.col("requests").sum().alias("requests"),
                pl.col("throttled_requests").sum(),
                pl.col("delay_s").max().alias("max_delay_s"),
                pl.col("queue").max().alias("max_queue_requests"),
            )
        )
    else:  # nothing waits: sums only, by running totals
        minutes_of = done.select(minute.alias("minute")).to_series()
        last = run_ends(minutes_of)
        per_minute = run_sums(done, last, ["requests", "throttled_requests"]).select(
            minutes_of.gather(last).alias("minute"),
            "requests",
            "throttled_requests",
            pl.lit(0.0).alias("max_delay_s"),
            pl.lit(0.0).alias("max_queue_requests"),
        )
    over = per_minute.filter(pl.col("throttled_requests") > 1e-6)
    worst = None
    if over.height:
        row = over.sort("throttled_requests", descending=True, maintain_order=True).row(0, named=True)
        worst = WorstMinute(
            traffic.origin + timedelta(minutes=row["minute"]), row["requests"], row["throttled_requests"]
        )
    p50 = p99 = max_queue = None
    if options.policy == "queue":
        p50, p99 = _weighted_quantiles(done["delay_s"], done["requests"], (0.50, 0.99))
        max_queue = float(queue.max()) if queue is not None and queue.len() else 0.0  # type: ignore[arg-type]
    needed_by_name: dict[str, float] = {}
    for segment in segments:
        for name, value in segment.limits_needed.items():
            needed_by_name[name] = max(needed_by_name.get(name, 0.0), value)
    keys_factor = max((s.keys_needed for s in segments), default=0.0)
    scope = version.limits.scope
    multiplier = options.keys if scope == "key" else options.accounts
    per_key_limits = {
        name: getattr(limits_used, name)
        for name in ("tpm", "itpm", "otpm", "rpm", "tpd", "rpd", "max_concurrency")
        if getattr(limits_used, name) is not None
    }
    limits_needed = {
        name: math.ceil(factor * per_key_limits[name] / multiplier - 1e-9)
        for name, factor in needed_by_name.items()
        if name in per_key_limits
    }
    if not per_key_limits:
        assumptions.append(
            f"{offer.id} publishes no rate or concurrency limit: nothing is throttled; "
            "pass --tpm/--rpm/--itpm/--otpm/--max-concurrency to replay against yours"
        )
    if version.counting.reserve_max_tokens and options.max_tokens is None:
        assumptions.append(
            f"{offer.id} counts max_tokens at request start; pass --max-tokens, otherwise actual output "
            "is counted (optimistic)"
        )
    if traffic.spread_slice_s > 1:
        assumptions.append(
            f"aggregated rows were spread in slices of up to {traffic.spread_slice_s:,.0f} s "
            "(too many to spread per second): bursts inside a slice are averaged"
        )
    if limits_used.max_concurrency is not None and traffic.assumed_duration_requests > 0:
        share = traffic.assumed_duration_requests / requests if requests else 0.0
        assumptions.append(
            f"{share:.1%} of requests have no recorded latency: their duration is "
            f"TTFT {traffic.latency.ttft_ms} ms + output at {traffic.latency.tokens_per_s} tokens/s"
            + (" (the seed measurement)" if traffic.latency.assumed else "")
        )
    if per_key_limits:
        assumptions.append(
            f"limits per {scope}: traffic spread evenly over {multiplier} "
            f"{scope}{'s' if multiplier != 1 else ''}"
            + (
                f" ({options.keys} keys share one {scope}'s limits)"
                if scope != "key" and options.keys > 1
                else ""
            )
        )
    bills_writes = any(
        v.prices is not None and (v.prices.cache_write is not None or v.cache.write_multiplier is not None)
        for v in (offer.versions[k] for k in used)
    )
    if bills_writes and int(traffic.units["cache_write_tokens"].sum() or 0) == 0:
        assumptions.append(
            f"{offer.id} bills cache writes but the log recorded none: writes are not counted (a lower bound)"
        )
    assumptions.append(
        "cached tokens re-estimated from the recorded cache hits under the target's cache rules"
    )
    priced = price_units(units, offer, fx=fx, currency=currency)
    if priced.unpriced_requests > SLACK:
        assumptions.append(
            f"{priced.unpriced_requests:,.0f} requests fall in versions of {offer.id} with no published "
            "price: left out of the cost"
        )
    low, high = options.tokenizer_ratio
    cost_low = cost_high = priced.cost
    if low != high:
        ends = [
            price_units(
                target_tokens(traffic.units.with_columns(vidx.alias("vidx")), offer, r, reestimate=True),
                offer,
                fx=fx,
                currency=currency,
            ).cost
            for r in (low, high)
        ]
        known = [c for c in (*ends, priced.cost) if c is not None]
        if known:
            cost_low = min(known, key=lambda m: m.amount)
            cost_high = max(known, key=lambda m: m.amount)
        assumptions.append(
            f"tokenizer ratio {low}–{high}: cost band from its ends, throttling at {options.ratio}"
        )
    at_minute = (pl.lit(traffic.origin) + pl.duration(minutes=pl.col("minute"))).alias("minute")
    minutes = per_minute.with_columns(at_minute).select(
        "minute", "requests", "throttled_requests", "max_delay_s", "max_queue_requests"
    )
    demand = pl.concat([s.demand for s in segments]).with_columns(at_minute)
    concurrency = pl.concat([s.concurrency for s in segments]).with_columns(at_minute)
    return Replay(
        offer_id=offer.id,
        offer_name=offer.name,
        policy=options.policy,
        keys=options.keys,
        accounts=options.accounts,
        scope=scope,
        window=version.counting.window,
        limits=per_key_limits,
        requests=requests,
        throttled_requests=throttled,
        minutes_over_limit=over.height,
        worst_minute=worst,
        delay_p50_s=p50,
        delay_p99_s=p99,
        max_queue=max_queue,
        keys_needed=ceil_scale(keys_factor) if per_key_limits else 1,
        limits_needed=limits_needed,
        cost=priced,
        cost_low=cost_low,
        cost_high=cost_high,
        assumptions=tuple(assumptions),
        minutes=minutes,
        demand=demand.sort("limit", "minute"),
        concurrency=concurrency.sort("minute"),
    )


# ------------------------------------------------------------------------------------------ views


def comparison_rows(replays: Sequence[Replay], actual: Money | None) -> pl.DataFrame:
    """Side-by-side rows for the Switch view: one per target."""
    rows: list[dict[str, Any]] = []
    for r in replays:
        cost = r.cost.cost
        rows.append(
            {
                "offer": r.offer_id,
                "policy": r.policy,
                "requests": r.requests,
                "throttled_share": r.throttled_share,
                "minutes_over_limit": r.minutes_over_limit,
                "delay_p50_s": r.delay_p50_s,
                "delay_p99_s": r.delay_p99_s,
                "keys": r.keys if r.scope == "key" else r.accounts,
                "scope": r.scope,
                "keys_needed": r.keys_needed,
                "cost": None if cost is None else cost.amount,
                "cost_low": None if r.cost_low is None else r.cost_low.amount,
                "cost_high": None if r.cost_high is None else r.cost_high.amount,
                "currency": r.cost.currency,
                "cost_actual": None
                if actual is None or actual.currency != r.cost.currency
                else actual.amount,
            }
        )
    money = pl.Decimal(38, 12)
    schema: dict[str, pl.DataType] = {
        "offer": pl.String(),
        "policy": pl.String(),
        "requests": pl.Float64(),
        "throttled_share": pl.Float64(),
        "minutes_over_limit": pl.Int64(),
        "delay_p50_s": pl.Float64(),
        "delay_p99_s": pl.Float64(),
        "keys": pl.Int64(),
        "scope": pl.String(),
        "keys_needed": pl.Int64(),
        "cost": money,
        "cost_low": money,
        "cost_high": money,
        "currency": pl.String(),
        "cost_actual": money,
    }
    return pl.DataFrame(rows, schema=schema)
