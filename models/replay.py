"""Replay recorded traffic against another offer: how often its limits would have throttled it, and what it
would have cost (DESIGN.md, "Switching").

1. **Demand** is rebuilt from stored usage rows (`traffic_from_usage`): one unit per request at its own
   time; an aggregated row (`n_requests` > 1, timestamped at its bucket start) is spread evenly over its
   bucket — one unit per request, or per second when the bucket holds more requests than seconds.
2. Each unit's **tokens under the target** follow its cache rules and a tokenizer ratio
   (`models.target.target_tokens`), and what they **count** against its limits follows its counting rules
   (`counted_columns`: cached input excluded where it is, `max_tokens` reserved at the start where it is,
   output burn-down).
3. The demand goes through the target's **limits as enforced** (`models.enforcement`): per-minute or
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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import polars as pl

from models.capacity import Latency
from models.catalog import Limits, Offer, OfferVersion
from models.enforcement import (
    SLACK,
    bucket_admitted_share,
    bucket_scale_needed,
    ceil_scale,
    concurrency_admitted,
    concurrency_starts,
    in_flight_before,
    run_ends,
    run_sums,
    shaper_served_at,
    total_at_or_before,
    window_admitted_share,
    window_scale_needed,
)
from models.errors import InputError
from models.money import FxTable, Money
from models.pricing import PricedTraffic, price_units, version_index
from models.target import counted_columns, target_tokens

Policy = Literal["reject", "queue"]
POLICIES: tuple[Policy, ...] = ("reject", "queue")

# What stored usage rows must (or may) carry; `storage.replay` selects exactly these.
USAGE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us"),
    "n_requests": pl.Int64(),
    "input_tokens": pl.Int64(),
    "cached_input_tokens": pl.Int64(),
    "cache_write_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),
    "ttft_ms": pl.Float64(),
    "latency_ms": pl.Float64(),
    "provider": pl.String(),
    "model": pl.String(),
    "team": pl.String(),
    "project": pl.String(),
    "source_id": pl.Int64(),
}
REQUIRED = ("ts", "input_tokens", "output_tokens")
# carried onto units only when the rows have them (a replay needs none; recorded cost needs provider/model)
ATTRIBUTION = ("provider", "model", "team", "project")
BUCKET_CANDIDATES_S = (86_400, 3_600, 900, 300, 60)  # export bucket widths, coarsest first
DEFAULT_BUCKET_S = 60
MIN_DURATION_S = 1e-3
# Aggregated rows are spread one unit per request, or per second of their bucket; beyond this many units in
# all (a year of day buckets holding millions of requests) the slices widen evenly to stay within it.
MAX_SPREAD_UNITS = 20_000_000


# ------------------------------------------------------------------------------------------ traffic


@dataclass(frozen=True)
class Traffic:
    """Recorded demand as units sorted by arrival: `ts`, `t` (seconds since `origin`, a UTC midnight so
    minute and day windows align with the clock), `w` (requests), recorded tokens (`input`, `cached`,
    `write`, `output`, `reasoning`), `duration_s`, and `provider`, `model`, `team`, `project`."""

    units: pl.DataFrame
    origin: datetime
    rows: int
    aggregated_rows: int
    bucket_s: Mapping[int | None, int]  # inferred or given bucket width per source of aggregated rows
    assumed_duration_requests: float  # requests whose duration came from the latency assumption
    latency: Latency
    spread_slice_s: float = 0.0  # > 1: aggregated rows were spread in slices this wide, not per second

    @property
    def requests(self) -> float:
        return float(self.units["w"].sum()) if self.units.height else 0.0

    @property
    def first(self) -> datetime | None:
        return self.units["ts"].min() if self.units.height else None  # type: ignore[return-value]

    @property
    def last(self) -> datetime | None:
        return self.units["ts"].max() if self.units.height else None  # type: ignore[return-value]


def empty_usage() -> pl.DataFrame:
    return pl.DataFrame(schema=USAGE_SCHEMA)


def _normalise(rows: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise InputError(f"usage rows need the columns {', '.join(missing)}")
    wanted = {n: t for n, t in USAGE_SCHEMA.items() if n not in ATTRIBUTION or n in rows.columns}
    extra = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in wanted.items() if name not in rows.columns
    ]
    frame = rows.with_columns(extra).select([pl.col(name).cast(dtype) for name, dtype in wanted.items()])
    if "model" in frame.columns:
        frame = frame.with_columns(pl.col("model").fill_null(""))
    return frame.with_columns(
        pl.col("n_requests").fill_null(1).clip(lower_bound=1),
        *[pl.col(c).fill_null(0) for c in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens")],
    )


def infer_bucket_s(ts: pl.Series) -> int:
    """The width of an export's buckets from their start times: the coarsest of day, hour, 15, 5 and 1
    minutes that every start is aligned to and that is no wider than the closest two starts."""
    epoch = (ts.dt.epoch("s")).unique().sort()
    if epoch.len() == 0:
        return DEFAULT_BUCKET_S
    closest = int(epoch.diff().drop_nulls().min() or 0) if epoch.len() > 1 else None  # type: ignore[arg-type]
    for width in BUCKET_CANDIDATES_S:
        if (epoch % width).max() == 0 and (closest is None or width <= closest):
            return width
    return min(DEFAULT_BUCKET_S, closest) if closest else DEFAULT_BUCKET_S


def _split(column: str) -> pl.Expr:
    """The i-th of k whole-number shares of a row total: floor((i+1)·T/k) − floor(i·T/k), overflow-safe."""
    total, k, i = pl.col(column), pl.col("_k"), pl.col("_i")
    whole, rest = total // k, total % k
    return ((i + 1) * whole + ((i + 1) * rest) // k) - (i * whole + (i * rest) // k)


def traffic_from_usage(
    rows: pl.DataFrame, *, latency: Latency | None = None, bucket_s: int | None = None
) -> Traffic:
    """Units from stored usage rows (`USAGE_SCHEMA`; canonical token semantics).

    `bucket_s` gives the width of aggregated rows' buckets; by default it is inferred per source
    (`infer_bucket_s`). A request's duration is its `latency_ms`; without one, TTFT (recorded, else the
    assumption's) plus output tokens at the assumption's tokens per second.
    """
    latency = latency or Latency.seed()
    frame = _normalise(rows)
    keep = [c for c in ATTRIBUTION if c in frame.columns]
    if frame.height == 0:
        units = pl.DataFrame(
            schema={
                "ts": pl.Datetime("us"),
                "t": pl.Float64(),
                "w": pl.Float64(),
                **{c: pl.Int64() for c in ("input", "cached", "write", "output", "reasoning")},
                "duration_s": pl.Float64(),
                **{c: pl.String() for c in keep},
            }
        )
        return Traffic(units, datetime(1970, 1, 1), 0, 0, {}, 0.0, latency)
    if bucket_s is not None and bucket_s < 1:
        raise InputError(f"a bucket width is at least 1 second, got {bucket_s}")
    frame = frame.sort("ts")  # one sort; the units keep this order
    spread_any = bool((frame["n_requests"] > 1).any())
    single = frame.filter(pl.col("n_requests") == 1) if spread_any else frame
    aggregated = frame.filter(pl.col("n_requests") > 1) if spread_any else frame.clear()
    widths: dict[int | None, int] = {}
    if aggregated.height:
        for (source,), part in aggregated.group_by("source_id"):
            widths[source] = bucket_s or infer_bucket_s(part["ts"])
    assumed_ttft_s = float(latency.ttft_ms) / 1000
    tokens_per_s = float(latency.tokens_per_s)
    slice_s = 0.0

    def finish(
        part: pl.DataFrame, weight: pl.Expr, tokens: Mapping[str, pl.Expr], at: pl.Expr
    ) -> pl.DataFrame:
        out_each = tokens["output"].cast(pl.Float64) / weight
        assumed = pl.col("ttft_ms").fill_null(assumed_ttft_s * 1000) / 1000 + out_each / tokens_per_s
        duration = pl.coalesce(pl.col("latency_ms") / 1000, assumed).clip(lower_bound=MIN_DURATION_S)
        return part.select(
            at.alias("ts"),
            weight.cast(pl.Float64).alias("w"),
            *[expr.cast(pl.Int64).alias(name) for name, expr in tokens.items()],
            duration.alias("duration_s"),
            pl.col("latency_ms").is_null().alias("_assumed"),
            *keep,
        )

    recorded = {
        "input": pl.col("input_tokens"),
        "cached": pl.col("cached_input_tokens"),
        "write": pl.col("cache_write_tokens"),
        "output": pl.col("output_tokens"),
        "reasoning": pl.col("reasoning_tokens"),
    }
    parts = [finish(single, pl.lit(1.0), recorded, pl.col("ts"))]
    if aggregated.height:
        width = pl.col("source_id").replace_strict(
            list(widths), list(widths.values()), default=DEFAULT_BUCKET_S, return_dtype=pl.Int64
        )
        sliced = aggregated.with_columns(width.alias("_width")).with_columns(
            pl.min_horizontal(pl.col("n_requests"), pl.col("_width")).alias("_k")
        )
        wanted = int(sliced["_k"].sum())
        if wanted > MAX_SPREAD_UNITS:
            coarser = wanted / MAX_SPREAD_UNITS
            sliced = sliced.with_columns((pl.col("_k") / coarser).floor().clip(lower_bound=1).cast(pl.Int64))
            slice_s = float(sliced.select((pl.col("_width") / pl.col("_k")).max()).item())
        spread = sliced.with_columns(pl.int_ranges(0, pl.col("_k")).alias("_i")).explode("_i")
        offset_us = ((pl.col("_i").cast(pl.Float64) + 0.5) * pl.col("_width") / pl.col("_k") * 1e6).cast(
            pl.Int64
        )
        at = pl.col("ts") + pl.duration(microseconds=offset_us)
        spread = (
            spread.with_columns(
                _split("input_tokens").alias("_in"),
                _split("output_tokens").alias("_out"),
                _split("cached_input_tokens").alias("_cached"),
                _split("cache_write_tokens").alias("_write"),
                _split("reasoning_tokens").alias("_reason"),
            )
            .with_columns(
                pl.min_horizontal("_cached", "_in").alias("_cached"),
                pl.min_horizontal("_reason", "_out").alias("_reason"),
            )
            .with_columns(pl.min_horizontal("_write", pl.col("_in") - pl.col("_cached")).alias("_write"))
        )
        weight = pl.col("n_requests").cast(pl.Float64) / pl.col("_k")
        tokens = {
            "input": pl.col("_in"),
            "cached": pl.col("_cached"),
            "write": pl.col("_write"),
            "output": pl.col("_out"),
            "reasoning": pl.col("_reason"),
        }
        parts.append(finish(spread, weight, tokens, at))
    units = pl.concat(parts).sort("ts", maintain_order=True) if len(parts) > 1 else parts[0]
    first = units["ts"].min()
    assert isinstance(first, datetime)
    origin = datetime(first.year, first.month, first.day)
    units = units.with_columns(
        pl.col("ts").set_sorted(), ((pl.col("ts") - origin).dt.total_microseconds() / 1e6).alias("t")
    )
    assumed = float(units.select((pl.col("w") * pl.col("_assumed")).sum()).item() or 0.0)
    units = units.select(
        "ts", "t", "w", "input", "cached", "write", "output", "reasoning", "duration_s", *keep
    )
    return Traffic(units, origin, frame.height, aggregated.height, widths, assumed, latency, slice_s)


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


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str  # tpm, itpm, otpm, rpm, tpd, rpd
    measure: str  # unit column it counts
    kind: Literal["window", "bucket"]
    cell_s: int
    sigma: float  # allowance per window, or bucket capacity (all keys/accounts together)
    rate: float  # per cell
    per_key: int  # the limit as published, per key (or account)
    per_minute_line: float | None  # the limit drawn against per-minute demand (None: a daily limit)


_MEASURES = {"tpm": "c_total", "itpm": "c_in", "otpm": "c_out", "rpm": "w", "tpd": "c_total", "rpd": "w"}


def _rules(limits: Limits, window: str, multiplier: int) -> list[_Rule]:
    rules = []
    for name in ("tpm", "itpm", "otpm", "rpm"):
        value = getattr(limits, name)
        if value is None:
            continue
        total = float(value) * multiplier
        if window == "second":
            rules.append(_Rule(name, _MEASURES[name], "window", 1, total / 60, total / 60, value, total))
        elif window == "bucket":
            rules.append(_Rule(name, _MEASURES[name], "bucket", 1, total, total / 60, value, total))
        else:
            rules.append(_Rule(name, _MEASURES[name], "window", 60, total, total, value, total))
    for name in ("tpd", "rpd"):
        value = getattr(limits, name)
        if value is not None:
            total = float(value) * multiplier
            rules.append(_Rule(name, _MEASURES[name], "window", 86_400, total, total, value, None))
    return rules


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
    """One target's replay. `minutes` and `demand` are the per-minute frames the dashboard draws."""

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
    minutes: pl.DataFrame  # minute, requests, throttled, max_delay_s, max_queue
    demand: pl.DataFrame  # minute, limit, demand, peak_rate, limit_value

    @property
    def throttled_share(self) -> float:
        return self.throttled_requests / self.requests if self.requests else 0.0

    @property
    def throttled(self) -> bool:
        return self.throttled_requests > SLACK


# ------------------------------------------------------------------------------------------ replay


def _weighted_quantiles(values: pl.Series, weights: pl.Series, qs: Sequence[float]) -> list[float]:
    """The value below which each share `q` of the weight lies (one sort for all of them)."""
    frame = pl.DataFrame({"v": values, "w": weights}).sort("v").with_columns(pl.col("w").cum_sum().alias("c"))
    total = float(frame["w"].sum())
    if total <= 0:
        return [0.0 for _ in qs]
    out = []
    for q in qs:
        index = int(frame["c"].search_sorted(q * total - SLACK, side="left"))
        out.append(float(frame["v"][min(index, frame.height - 1)]))
    return out


@dataclass(frozen=True)
class _Segment:
    """The replay of the units one version governs."""

    units: pl.DataFrame  # t, w, throttled, delay_s, served_s
    demand: pl.DataFrame
    keys_needed: float
    limits_needed: dict[str, float]


def _replay_segment(
    units: pl.DataFrame, version: OfferVersion, options: ReplayOptions, multiplier: int
) -> tuple[_Segment, Limits]:
    limits = version.limits
    if options.limits:
        overrides: dict[str, Any] = dict(options.limits)
        limits = replace(limits, **overrides)
    limits = limits.effective()
    frame = units.with_columns(**counted_columns(version.counting, options.max_tokens)).with_columns(
        pl.col("t").floor().cast(pl.Int64).alias("sec")
    )
    frame = frame.with_columns(
        ((pl.col("sec") != pl.col("sec").shift(1)).fill_null(True).cum_sum() - 1).set_sorted().alias("m"),
        (pl.col("sec") // 60).set_sorted().alias("minute"),
    )
    rules = _rules(limits, version.counting.window, multiplier)
    ends = run_ends(frame["sec"])
    seconds = run_sums(frame, ends, ["c_total", "c_in", "c_out", "w"]).with_columns(
        frame["sec"].gather(ends).alias("sec")
    )
    slots = float(limits.max_concurrency) * multiplier if limits.max_concurrency is not None else None
    needed: dict[str, float] = {}
    for rule in rules:
        asked = seconds[rule.measure]
        if rule.kind == "window":
            factor = window_scale_needed(seconds["sec"], asked, rule.cell_s, rule.sigma)
        else:
            factor = bucket_scale_needed(seconds["sec"], asked, rule.sigma, rule.rate)
        needed[rule.name] = factor * multiplier
    end = pl.col("t") + pl.col("duration_s")
    before: pl.Series | None = None  # in flight before each request, had nothing been refused
    if slots is not None:
        before = in_flight_before(frame["t"], frame.select(end).to_series(), frame["w"])
        peak = before + frame["w"]
        needed["max_concurrency"] = float(peak.max()) / float(limits.max_concurrency or 1)  # type: ignore[arg-type]
        frame = frame.with_columns(peak.alias("in_flight"))
    if options.policy == "reject":
        share = pl.Series("share", [1.0] * seconds.height, dtype=pl.Float64)
        for rule in rules:
            if rule.kind == "window":
                part = window_admitted_share(seconds["sec"], seconds[rule.measure], rule.cell_s, rule.sigma)
            else:
                part = bucket_admitted_share(seconds["sec"], seconds[rule.measure], rule.sigma, rule.rate)
            share = pl.DataFrame({"a": share, "b": part}).select(pl.min_horizontal("a", "b")).to_series()
        refused_any = bool((share < 1).any())
        admitted = (frame["w"] * share.gather(frame["m"])).alias("admitted") if refused_any else frame["w"]
        if slots is not None:
            known = None if refused_any else before  # token limits refused some: count again without them
            admitted = concurrency_admitted(
                frame["t"], frame.select(end).to_series(), admitted, slots, known
            ).admitted
        frame = frame.with_columns(
            (pl.col("w") - admitted).clip(lower_bound=0.0).alias("throttled"),
            pl.lit(0.0).alias("delay_s"),
            pl.col("t").alias("served_s"),
        )
    else:
        served = frame["t"]
        for rule in rules:
            part = shaper_served_at(frame["t"], frame[rule.measure], rule.cell_s, rule.sigma, rule.rate)
            served = pl.DataFrame({"a": served, "b": part}).select(pl.max_horizontal("a", "b")).to_series()
        if slots is not None:
            on_time = bool((served == frame["t"]).all())  # token limits delayed nobody: same in-flight counts
            known = before if on_time else None
            served = concurrency_starts(served, frame["duration_s"], frame["w"], slots, known).admitted
        frame = (
            frame.with_columns(served.alias("served_s"))
            .with_columns((pl.col("served_s") - pl.col("t")).clip(lower_bound=0.0).alias("delay_s"))
            .with_columns(
                pl.when(pl.col("delay_s") > 1e-6).then(pl.col("w")).otherwise(0.0).alias("throttled")
            )
        )
    demand_frames = []
    for rule in rules:
        if rule.per_minute_line is None:
            continue
        per_minute = (
            seconds.with_columns((pl.col("sec") // 60).set_sorted().alias("minute"))
            .group_by("minute", maintain_order=True)
            .agg(
                pl.col(rule.measure).sum().alias("demand"),
                (pl.col(rule.measure).max() * 60).alias("peak_rate"),
            )
            .with_columns(
                pl.lit(rule.name).alias("limit"),
                pl.lit(rule.per_minute_line).alias("limit_value"),
                pl.lit(version.counting.window).alias("window"),
            )
        )
        demand_frames.append(per_minute)
    if slots is not None:
        demand_frames.append(
            frame.group_by("minute", maintain_order=True)
            .agg(pl.col("w").sum().alias("demand"), pl.col("in_flight").max().alias("peak_rate"))
            .with_columns(
                pl.lit("max_concurrency").alias("limit"),
                pl.lit(slots).alias("limit_value"),
                pl.lit("concurrent").alias("window"),
            )
        )
    demand = (
        pl.concat(
            [
                f.select("minute", "limit", "demand", "peak_rate", "limit_value", "window")
                for f in demand_frames
            ]
        )
        if demand_frames
        else pl.DataFrame(
            schema={
                "minute": pl.Int64(),
                "limit": pl.String(),
                "demand": pl.Float64(),
                "peak_rate": pl.Float64(),
                "limit_value": pl.Float64(),
                "window": pl.String(),
            }
        )
    )
    keys = max(needed.values()) if needed else 0.0
    out = frame.select("t", "w", "throttled", "delay_s", "served_s")
    return _Segment(out, demand, keys, needed), limits


def _queue_lengths(units: pl.DataFrame) -> pl.Series:
    """Requests waiting at each arrival (arrived so far minus served so far; served times are FIFO-sorted)."""
    # FIFO: served times rise with arrival order, so they need no sort
    done = total_at_or_before(units["served_s"], units["w"], units["t"])
    return (units["w"].cum_sum() - done).clip(lower_bound=0.0)


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
            f"{float(early['w'].sum()):,.0f} requests predate {offer.id}'s first catalog version ({first}): "
            "priced and limited as that version"
        )
    segments: list[_Segment] = []
    limits_used: Limits | None = None
    for k in used:
        version = offer.versions[k]
        part = units if len(used) == 1 else units.filter(pl.col("vidx") == k)
        multiplier = options.keys if version.limits.scope == "key" else options.accounts
        segment, limits_used = _replay_segment(part, version, options, multiplier)
        segments.append(segment)
    assert limits_used is not None
    version = newest
    done = (
        pl.concat([s.units for s in segments]).sort("t", maintain_order=True)
        if len(segments) > 1
        else segments[0].units
    )
    requests = float(done["w"].sum())
    throttled = float(done["throttled"].sum())
    minute = (pl.col("t") // 60).cast(pl.Int64).set_sorted()
    queue = _queue_lengths(done) if options.policy == "queue" and throttled > SLACK else None
    if options.policy == "queue":
        per_minute = (
            done.with_columns(
                minute.alias("minute"), (queue if queue is not None else pl.lit(0.0)).alias("queue")
            )
            .group_by("minute", maintain_order=True)
            .agg(
                pl.col("w").sum().alias("requests"),
                pl.col("throttled").sum().alias("throttled"),
                pl.col("delay_s").max().alias("max_delay_s"),
                pl.col("queue").max().alias("max_queue"),
            )
        )
    else:  # nothing waits: sums only, by running totals
        minutes_of = done.select(minute.alias("minute")).to_series()
        last = run_ends(minutes_of)
        per_minute = run_sums(done, last, ["w", "throttled"]).select(
            minutes_of.gather(last).alias("minute"),
            pl.col("w").alias("requests"),
            "throttled",
            pl.lit(0.0).alias("max_delay_s"),
            pl.lit(0.0).alias("max_queue"),
        )
    over = per_minute.filter(pl.col("throttled") > 1e-6)
    worst = None
    if over.height:
        row = over.sort("throttled", descending=True, maintain_order=True).row(0, named=True)
        worst = WorstMinute(
            traffic.origin + timedelta(minutes=row["minute"]), row["requests"], row["throttled"]
        )
    p50 = p99 = max_queue = None
    if options.policy == "queue":
        p50, p99 = _weighted_quantiles(done["delay_s"], done["w"], (0.50, 0.99))
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
    if bills_writes and int(traffic.units["write"].sum() or 0) == 0:
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
    minutes = per_minute.with_columns(
        (pl.lit(traffic.origin) + pl.duration(minutes=pl.col("minute"))).alias("minute")
    ).select("minute", "requests", "throttled", "max_delay_s", "max_queue")
    demand = pl.concat([s.demand for s in segments]).with_columns(
        (pl.lit(traffic.origin) + pl.duration(minutes=pl.col("minute"))).alias("minute")
    )
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
    )


# ------------------------------------------------------------------------------------------ views


def demand_series(traffic: Traffic, every_s: int = 60) -> pl.DataFrame:
    """Recorded demand per `every_s` seconds (1: per second, 60: per minute): `at`, `requests`,
    `input_tokens`, `cached_input_tokens`, `output_tokens`, `tokens` (input + output)."""
    if every_s < 1:
        raise InputError("a demand series needs a step of at least one second")
    frame = traffic.units.group_by((pl.col("t") // every_s).cast(pl.Int64).alias("step")).agg(
        pl.col("w").sum().alias("requests"),
        pl.col("input").sum().alias("input_tokens"),
        pl.col("cached").sum().alias("cached_input_tokens"),
        pl.col("output").sum().alias("output_tokens"),
    )
    return (
        frame.sort("step")
        .with_columns(
            (pl.lit(traffic.origin) + pl.duration(seconds=pl.col("step") * every_s)).alias("at"),
            (pl.col("input_tokens") + pl.col("output_tokens")).alias("tokens"),
        )
        .select("at", "requests", "input_tokens", "cached_input_tokens", "output_tokens", "tokens")
    )


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
