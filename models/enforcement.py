"""How a provider enforces a limit on a stream of arrivals, vectorised with polars.

This module is where a limit is enforced: `enforce_limits` takes a demand and an offer version and applies
each of its limits as the provider does (`limit_rules` says how each is counted), with the kernels below;
`models.replay` calls it for the units each version governs. Demand is fluid within a second: the
requests that arrive in the same second are admitted (or served) in the same share. Three ways to count a
limit (DESIGN.md, "Limits"):

- **fixed windows** of `window_s` seconds (per minute, per day; "per second" is a 1-second window holding
  limit/60), each starting with the whole allowance;
- a **continuous token bucket** of `capacity` refilled at `refill_per_s` (Anthropic; full at the start),
  which lets a burst of up to `capacity` through and then `refill_per_s` each second;
- **concurrency**: a request holds a slot from its start until its response ends.

And two policies: **reject** (a 429; the rejected share never consumes the limit) or **queue** (a FIFO client
queue; the request waits until the limit lets it through).

A fixed window of allowance L is a bucket that refills to L at each window start, so the queue policy treats
both as a greedy shaper on a grid of cells (network calculus: served(t) = min over s ≤ t of arrivals(s) +
σ + r·(t − s − 1)), solved with cumulative minima. The reject policy under a bucket is a doubly clamped
recursion, q = min(capacity, max(0, q − refill) + demand); each step is a clamp function and clamps compose,
so the recursion is a parallel prefix scan (log₂ n vectorised passes, no Python loop per second).
Concurrency under contention is sequential by nature: only the requests that meet a full set of slots are
walked one by one, everything else is decided vectorised.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import polars as pl

from models.catalog import Limits, OfferVersion
from models.target import COUNTED_COLUMNS, counted_columns

# Cumulative demand is float64: exact for whole tokens up to 2**53; spread (fractional) requests carry
# rounding of about 1e-12 relative, hence a small slack in every comparison.
SLACK = 1e-7
INF = float("inf")


def _slack(values: pl.Expr) -> pl.Expr:
    return SLACK + values.abs() * 1e-12


# ------------------------------------------------------------------------------------------ runs


def run_ends(keys: pl.Series) -> pl.Series:
    """Row indices of the last row of each run of equal consecutive `keys` (e.g. each busy second)."""
    return (keys != keys.shift(-1)).fill_null(True).arg_true()


def run_sums(frame: pl.DataFrame, ends: pl.Series, columns: list[str]) -> pl.DataFrame:
    """Per-run sums of `columns` as differences of running totals at each run's last row: twice as fast as a
    sorted group-by on ten million rows, and exact for whole-number columns (float64 holds 2**53)."""
    totals = frame.select(pl.col(columns).cast(pl.Float64).cum_sum()).gather(ends)
    return totals.with_columns(pl.col(c) - pl.col(c).shift(1, fill_value=0.0) for c in columns)


# ------------------------------------------------------------------------------------------ reject


def window_admitted_share(second: pl.Series, demand: pl.Series, window_s: int, allowance: float) -> pl.Series:
    """Reject policy, fixed windows: the share of each second's demand admitted.

    `second` holds whole seconds since an origin aligned to the windows (sorted, unique), `demand` what each
    second asks of the limit. Within a window demand is admitted in arrival order until the allowance is
    used; the second that crosses it is admitted in part, later seconds of the window not at all.
    """
    frame = pl.DataFrame({"second": second, "demand": demand.cast(pl.Float64)})
    before = pl.col("demand").cum_sum().over(pl.col("second") // window_s) - pl.col("demand")
    share = ((allowance - before) / pl.col("demand")).clip(0.0, 1.0)
    return frame.select(pl.when(pl.col("demand") <= 0).then(1.0).otherwise(share).alias("share")).to_series()


def _compose_prefix(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix compositions of clamp functions x ↦ min(hi, max(lo, x + c)), by Hillis–Steele doubling.

    Row m of the result is f_m ∘ … ∘ f_0. Composing g after f gives c = c_f + c_g,
    lo = min(max(lo_f + c_g, lo_g), hi_g), hi = min(max(hi_f + c_g, lo_g), hi_g); the identity is
    (0, −∞, +∞), which is what a shift fills in.
    """
    step = 1
    while step < frame.height:
        frame = frame.select(
            (pl.col("c").shift(step, fill_value=0.0) + pl.col("c")).alias("c"),
            pl.min_horizontal(
                pl.max_horizontal(pl.col("lo").shift(step, fill_value=-INF) + pl.col("c"), pl.col("lo")),
                pl.col("hi"),
            ).alias("lo"),
            pl.min_horizontal(
                pl.max_horizontal(pl.col("hi").shift(step, fill_value=INF) + pl.col("c"), pl.col("lo")),
                pl.col("hi"),
            ).alias("hi"),
        )
        step *= 2
    return frame


def bucket_admitted_share(
    second: pl.Series, demand: pl.Series, capacity: float, refill_per_s: float
) -> pl.Series:
    """Reject policy, continuous token bucket (full at the start): the share of each second's demand admitted.

    Per second: refill (capped at `capacity`), then admit what the bucket holds. In deficit terms
    q_m = min(capacity, max(0, q_{m−1} − refill·Δ_m) + d_m), Δ_m the seconds since the previous busy one.
    """
    frame = pl.DataFrame({"second": second.cast(pl.Float64), "d": demand.cast(pl.Float64)})
    frame = frame.with_columns(
        (pl.col("second") - pl.col("second").shift(1, fill_value=pl.col("second").first())).alias("gap")
    )
    steps = frame.select(
        (pl.col("d") - refill_per_s * pl.col("gap")).alias("c"),
        pl.min_horizontal(pl.col("d"), pl.lit(capacity)).alias("lo"),
        pl.lit(capacity, dtype=pl.Float64).alias("hi"),
    )
    prefix = _compose_prefix(steps)
    deficit = prefix.select(pl.min_horizontal(pl.col("hi"), pl.max_horizontal(pl.col("lo"), pl.col("c"))))
    frame = frame.with_columns(deficit.to_series().alias("q"))
    before = (pl.col("q").shift(1, fill_value=0.0) - refill_per_s * pl.col("gap")).clip(lower_bound=0.0)
    share = ((pl.col("q") - before) / pl.col("d")).clip(0.0, 1.0)
    return frame.select(pl.when(pl.col("d") <= 0).then(1.0).otherwise(share).alias("share")).to_series()


# ------------------------------------------------------------------------------------------ queue


def shaper_served_at(
    arrival_s: pl.Series, measure: pl.Series, cell_s: float, sigma: float, rate: float
) -> pl.Series:
    """Queue policy: when each arrival (sorted, FIFO) gets through a limit, in seconds since the origin.

    Cells of `cell_s` seconds: a fixed window is σ = r = its allowance per window; a token bucket is 1-second
    cells with σ = capacity, r = refill per second. An arrival served in its own cell is served on arrival;
    otherwise at the start of the cell whose allowance reaches it.
    """
    t = arrival_s.cast(pl.Float64)
    position = measure.cast(pl.Float64).cum_sum()  # X: where each arrival ends in the FIFO
    cell = (t / cell_s).floor().cast(pl.Int64)
    ends = run_ends(cell)
    cells = pl.DataFrame({"cell": cell.gather(ends), "A": position.gather(ends)})
    first_cell = float(cells["cell"][0]) if cells.height else 0.0
    cells = cells.with_columns(
        (pl.col("A") - rate * pl.col("cell").shift(-1).cast(pl.Float64)).alias("B"),
    ).with_columns(
        pl.min_horizontal(pl.lit(-rate * first_cell), pl.col("B").cum_min().shift(1, fill_value=INF)).alias(
            "M_before"
        ),
    )
    cells = cells.with_columns(
        pl.min_horizontal(pl.col("A"), sigma + rate * pl.col("cell") + pl.col("M_before")).alias("S")
    )
    # served within its own cell (S of that cell reaches it): on arrival; only the rest need a search
    own = ((cell != cell.shift(1)).fill_null(True).cum_sum() - 1).cast(pl.Int64)
    wanted = pl.DataFrame({"X": position}).select(pl.col("X") - _slack(pl.col("X"))).to_series()
    late_rows = (wanted > cells["S"].gather(own)).arg_true()
    if late_rows.len() == 0:
        return t.alias("served_s")
    n = cells.height
    # the first cell whose cumulative allowance reaches each late arrival: both sides sorted, one as-of walk
    found = (
        pl.DataFrame({"want": wanted.gather(late_rows)})
        .with_columns(pl.col("want").set_sorted())
        .join_asof(
            cells.select(pl.col("S").set_sorted(), pl.int_range(0, n, dtype=pl.Int64).alias("j")),
            left_on="want",
            right_on="S",
            strategy="forward",
        )
    )
    j = found["j"].fill_null(n)
    cell_list = cells["cell"].cast(pl.Float64)
    prev = (pl.col("j") - 1).clip(0, n - 1)
    gap_cell = pl.max_horizontal(
        ((pl.col("X") - sigma - pl.lit(cells["M_before"]).gather(prev)) / rate - 1e-9).ceil(),
        pl.lit(cell_list).gather(prev) + 1,
    )
    served_cell = (
        pl.when(pl.col("j") >= n)
        .then(gap_cell)
        .otherwise(pl.min_horizontal(gap_cell, pl.lit(cell_list).gather(pl.col("j").clip(0, n - 1))))
    )
    later = (
        pl.LazyFrame({"t_s": t.gather(late_rows), "X": position.gather(late_rows), "j": j})
        .select(pl.max_horizontal(served_cell * cell_s, pl.col("t_s")))
        .collect()
        .to_series()
    )
    return t.clone().scatter(late_rows, later).alias("served_s")


# ------------------------------------------------------------------------------------------ headroom


def window_scale_needed(second: pl.Series, demand: pl.Series, window_s: int, allowance: float) -> float:
    """How many times the allowance the busiest window needed (≤ 1: nothing would have been throttled)."""
    if demand.len() == 0:
        return 0.0
    frame = pl.DataFrame({"window": second // window_s, "d": demand.cast(pl.Float64)})
    busiest = frame.group_by("window").agg(pl.col("d").sum())["d"].max()
    return float(busiest) / allowance if isinstance(busiest, (int, float)) else 0.0


def bucket_scale_needed(second: pl.Series, demand: pl.Series, capacity: float, refill_per_s: float) -> float:
    """The smallest factor N such that a bucket of N·capacity refilled at N·refill never runs dry.

    That is the maximum over stretches k..m of demand(k..m) / (capacity + refill·(t_m − t_k)), found by
    Dinkelbach's iteration (each step one vectorised Lindley pass; a handful of steps in practice).
    """
    if demand.len() == 0:
        return 0.0
    frame = pl.DataFrame({"t_s": second.cast(pl.Float64), "d": demand.cast(pl.Float64)}).with_columns(
        pl.col("d").cum_sum().alias("C")
    )
    factor = float(frame["d"].max()) / capacity  # type: ignore[arg-type]
    for _ in range(100):
        start_key = pl.col("C") - pl.col("d") - factor * refill_per_s * pl.col("t_s")
        scored = frame.with_columns(start_key.alias("k")).with_columns(
            (pl.col("C") - factor * refill_per_s * pl.col("t_s") - pl.col("k").cum_min()).alias("deficit")
        )
        m = int(scored["deficit"].arg_max())  # type: ignore[arg-type]
        if float(scored["deficit"][m]) <= factor * capacity * (1 + 1e-12) + SLACK:
            return factor
        k = int(scored["k"].head(m + 1).arg_min())  # type: ignore[arg-type]
        stretch = float(frame["C"][m]) - float(frame["C"][k]) + float(frame["d"][k])
        span = float(frame["t_s"][m]) - float(frame["t_s"][k])
        factor = max(factor * (1 + 1e-12), stretch / (capacity + refill_per_s * span))
    return factor


# ------------------------------------------------------------------------------------------ concurrency


def total_at_or_before(keys: pl.Series, values: pl.Series, queries: pl.Series) -> pl.Series:
    """For each query, the sum of `values` whose `keys` are ≤ it. `keys` and `queries` must be sorted; a
    backward as-of join walks both once, about twice as fast as a binary search per query."""
    right = pl.DataFrame({"key": keys.cast(pl.Float64), "total": values.cast(pl.Float64).cum_sum()})
    left = pl.DataFrame({"query": queries.cast(pl.Float64)})
    joined = left.with_columns(pl.col("query").set_sorted()).join_asof(
        right.with_columns(pl.col("key").set_sorted()), left_on="query", right_on="key", strategy="backward"
    )
    return joined["total"].fill_null(0.0)


def in_flight_before(start_s: pl.Series, end_s: pl.Series, weight: pl.Series) -> pl.Series:
    """Requests in flight just before each one starts (starts sorted; its own weight not included)."""
    w = weight.cast(pl.Float64)
    started = w.cum_sum() - w
    if bool((w == 1.0).all()):  # whole requests: no weights to carry through the sort
        ended = total_at_or_before(end_s.sort(), pl.repeat(1.0, end_s.len(), eager=True), start_s)
    else:
        by_end = pl.DataFrame({"end": end_s, "requests": w}).sort("end")
        ended = total_at_or_before(by_end["end"], by_end["requests"], start_s)
    return (started - ended).clip(lower_bound=0.0).alias("in_flight")


@dataclass(frozen=True, slots=True)
class ConcurrencyOutcome:
    admitted: pl.Series  # weight admitted (reject) — or the start time (queue)
    contended: int  # requests that met a full set of slots and were walked one by one


def concurrency_admitted(
    start_s: pl.Series,
    end_s: pl.Series,
    weight: pl.Series,
    slots: float,
    in_flight: pl.Series | None = None,
) -> ConcurrencyOutcome:
    """Reject policy: the weight of each request admitted by a cap of `slots` concurrent requests.

    A request meeting fewer than `slots` in flight (had nothing been rejected) is admitted outright; only the
    others are walked in order, remembering the rejected ones that would still have been in flight.
    `in_flight` is `in_flight_before` of these very weights, when the caller has it already.
    """
    frame = pl.DataFrame(
        {
            "start": start_s,
            "end": end_s,
            "requests": weight.cast(pl.Float64),
            "u": in_flight if in_flight is not None else in_flight_before(start_s, end_s, weight),
        }
    ).with_row_index("i")
    hot = frame.filter(pl.col("u") + pl.col("requests") > slots + SLACK)
    if not hot.height:
        return ConcurrencyOutcome(frame["requests"].alias("admitted"), 0)
    whole = float(slots).is_integer() and bool((hot["requests"] == 1.0).all())
    walk = _RefusedWhole(slots) if whole else _RefusedWeighted(slots)
    parts = []
    # in slices: Python lists of every contended request at once held 60 MB of a dense day's replay
    for offset in range(0, hot.height, WALK_SLICE):
        part = hot.slice(offset, WALK_SLICE)
        columns = (part[name].to_list() for name in ("start", "end", "requests", "u"))
        parts.append(pl.Series(walk.taken(*columns), dtype=pl.Float64))
    admitted = frame["requests"].clone().scatter(hot["i"], pl.concat(parts))
    return ConcurrencyOutcome(admitted.alias("admitted"), hot.height)


WALK_SLICE = 65_536  # contended requests turned into Python values at a time


class _RefusedWeighted:
    """The reject walk over contended requests in start order, slice after slice: each takes what the cap
    leaves of its weight (`u` in flight had nothing been refused, less the refused weight still in flight),
    and the refused part is remembered until it would have ended."""

    def __init__(self, slots: float) -> None:
        self.slots = slots
        self.refused: list[tuple[float, float]] = []  # (would-be end, weight) of refused requests
        self.refused_weight = 0.0

    def taken(
        self, starts: list[float], ends: list[float], weights: list[float], us: list[float]
    ) -> list[float]:
        taken = []
        for start, end, w, u in zip(starts, ends, weights, us, strict=True):
            while self.refused and self.refused[0][0] <= start:
                self.refused_weight -= heapq.heappop(self.refused)[1]
            take = min(w, max(0.0, self.slots - (u - self.refused_weight)))
            if take < SLACK:
                take = 0.0
            taken.append(take)
            if w - take > SLACK:
                heapq.heappush(self.refused, (end, w - take))
                self.refused_weight += w - take
        return taken


class _RefusedWhole:
    """The same walk when every contended request is whole (weight 1) and the cap a whole number: each is
    then admitted or refused in full, so the refused ones in flight are a heap of bare end times whose
    weight is its length (half the time of the weighted walk, which at ten times the traffic was most of
    what a replay added)."""

    def __init__(self, slots: float) -> None:
        self.slots = slots
        self.refused: list[float] = []  # would-be ends of refused requests

    def taken(self, starts: list[float], ends: list[float], _: list[float], us: list[float]) -> list[float]:
        refused, slots = self.refused, self.slots
        push, pop = heapq.heappush, heapq.heappop
        taken: list[float] = []
        take = taken.append
        for start, end, u in zip(starts, ends, us, strict=True):
            while refused and refused[0] <= start:
                pop(refused)
            if u - len(refused) < slots:
                take(1.0)
            else:
                take(0.0)
                push(refused, end)
        return taken


def concurrency_starts(
    ready_s: pl.Series,
    duration_s: pl.Series,
    weight: pl.Series,
    slots: float,
    in_flight: pl.Series | None = None,
) -> ConcurrencyOutcome:
    """Queue policy: when each request (ready times sorted, FIFO) gets one of `slots` concurrent slots.

    Where the unconstrained in-flight count stays under the cap every request starts when ready. From the
    first request that meets a full set of slots, requests are walked one by one until every delayed one has
    ended; from then on the real and the unconstrained in-flight sets agree again. `in_flight` is
    `in_flight_before` of these ready times, when the caller has it already.
    """
    ready = ready_s.cast(pl.Float64)
    end = ready + duration_s.cast(pl.Float64)
    w = weight.cast(pl.Float64)
    u = in_flight if in_flight is not None else in_flight_before(ready, end, w)
    hot_rows = (u + w > slots + SLACK).arg_true().to_list()
    if not hot_rows:
        return ConcurrencyOutcome(ready.alias("start_s"), 0)
    starts = ready.to_list()
    durations = duration_s.cast(pl.Float64).to_list()
    weights = w.to_list()
    longest = float(duration_s.max())  # type: ignore[arg-type]
    n = len(starts)
    walked = 0
    i = hot_rows[0]
    while i < n:
        # requests still running when this stretch begins: all started on time (the state is in sync)
        first = bisect.bisect_left(starts, starts[i] - longest, 0, i)
        running = [
            (starts[j] + durations[j], weights[j])
            for j in range(first, i)
            if starts[j] + durations[j] > starts[i]
        ]
        heapq.heapify(running)
        busy = sum(wt for _, wt in running)
        last_start = starts[i]
        delayed_until = -INF
        while i < n:
            ready_at = starts[i]
            at = max(ready_at, last_start)
            while running and running[0][0] <= at:
                busy -= heapq.heappop(running)[1]
            while busy + weights[i] > slots + SLACK and running:
                ends, wt = heapq.heappop(running)
                busy -= wt
                at = max(at, ends)
            starts[i] = at
            heapq.heappush(running, (at + durations[i], weights[i]))
            busy += weights[i]
            last_start = at
            walked += 1
            late = at > ready_at + SLACK
            if late:
                delayed_until = max(delayed_until, at + durations[i])
            i += 1
            if not late and delayed_until <= ready_at:
                break
        nxt = bisect.bisect_left(hot_rows, i)
        if nxt >= len(hot_rows):
            break
        i = hot_rows[nxt]
    return ConcurrencyOutcome(pl.Series("start_s", starts, dtype=pl.Float64), walked)


def peak_in_flight(start_s: pl.Series, end_s: pl.Series, weight: pl.Series) -> float:
    if start_s.len() == 0:
        return 0.0
    total = in_flight_before(start_s, end_s, weight) + weight.cast(pl.Float64)
    return float(total.max())  # type: ignore[arg-type]


def ceil_scale(factor: float) -> int:
    """Whole keys (or accounts) for a needed factor, forgiving float dust."""
    return max(1, math.ceil(factor - 1e-9))


# ------------------------------------------------------------------------------------------ rules


@dataclass(frozen=True, slots=True)
class LimitRule:
    """How one published limit is counted: on which measure (counted tokens of each kind, or requests), in
    fixed windows or a continuous bucket of which size, with which allowance."""

    name: str  # tpm, itpm, otpm, rpm, tpd, rpd
    measure: str  # the unit column it counts: counted_tokens, counted_input_tokens, ... or requests
    kind: Literal["window", "bucket"]
    cell_s: int
    sigma: float  # allowance per window, or bucket capacity (all keys/accounts together)
    rate: float  # per cell
    per_key: int  # the limit as published, per key (or account)
    per_minute_line: float | None  # the limit drawn against per-minute demand (None: a daily limit)


_MEASURES = {
    "tpm": "counted_tokens",
    "itpm": "counted_input_tokens",
    "otpm": "counted_output_tokens",
    "rpm": "requests",
    "tpd": "counted_tokens",
    "rpd": "requests",
}


def limit_rules(limits: Limits, window: str, multiplier: int) -> list[LimitRule]:
    """The rules a version's rate limits are enforced by: TPM / ITPM / OTPM / RPM per minute, per second
    (limit / 60) or as a continuous bucket (the offer's `counting.window`), TPD / RPD per UTC day; each
    times `multiplier` (keys or accounts sharing the traffic)."""
    rules = []
    for name in ("tpm", "itpm", "otpm", "rpm"):
        value = getattr(limits, name)
        if value is None:
            continue
        total = float(value) * multiplier
        if window == "second":
            rules.append(LimitRule(name, _MEASURES[name], "window", 1, total / 60, total / 60, value, total))
        elif window == "bucket":
            rules.append(LimitRule(name, _MEASURES[name], "bucket", 1, total, total / 60, value, total))
        else:
            rules.append(LimitRule(name, _MEASURES[name], "window", 60, total, total, value, total))
    for name in ("tpd", "rpd"):
        value = getattr(limits, name)
        if value is not None:
            total = float(value) * multiplier
            rules.append(LimitRule(name, _MEASURES[name], "window", 86_400, total, total, value, None))
    return rules


# -------------------------------------------------------------------------------------- a version's limits


@dataclass(frozen=True)
class Enforced:
    """The units one offer version governs, through its limits: `units`, per-minute `demand` against each rate
    limit and `concurrency` against the concurrency cap, and the keys (or accounts) and per-key limits that
    would have avoided all throttling."""

    units: pl.DataFrame  # t_s, requests, throttled_requests, delay_s, served_s
    # minute (since the origin), limit, window, measure (the unit column counted: counted_tokens, ... or
    # requests), demand_per_minute (the minute's total, in `measure`), peak_per_minute (its busiest second
    # × 60), limit_per_minute (the allowance per minute, all keys or accounts together)
    demand: pl.DataFrame
    # minute (since the origin), max_in_flight_requests (had nothing been refused), limit_in_flight_requests
    concurrency: pl.DataFrame
    keys_needed: float
    limits_needed: dict[str, float]


def enforce_limits(
    units: pl.DataFrame,
    version: OfferVersion,
    *,
    policy: str,
    multiplier: int,
    limit_overrides: Mapping[str, int] | None = None,
    max_tokens: int | None = None,
) -> tuple[Enforced, Limits]:
    """THE place a limit is enforced: `units` (a time-sorted demand: `t_s` seconds, `requests`, tokens,
    `duration_s`) through `version`'s limits as the provider counts and enforces them — which tokens count
    (`models.target.counted_columns`), the window (`limit_rules`), concurrency — under `policy` (reject or
    queue), each limit times `multiplier` (keys or accounts). Returns the outcome and the limits applied."""
    limits = version.limits
    if limit_overrides:
        overrides: dict[str, Any] = dict(limit_overrides)
        limits = replace(limits, **overrides)
    limits = limits.effective()
    frame = units.with_columns(**counted_columns(version.counting, max_tokens)).with_columns(
        pl.col("t_s").floor().cast(pl.Int64).alias("sec")
    )
    frame = frame.with_columns(
        ((pl.col("sec") != pl.col("sec").shift(1)).fill_null(True).cum_sum() - 1).set_sorted().alias("m"),
        (pl.col("sec") // 60).set_sorted().alias("minute"),
    )
    rules = limit_rules(limits, version.counting.window, multiplier)
    ends = run_ends(frame["sec"])
    seconds = run_sums(frame, ends, [*COUNTED_COLUMNS, "requests"]).with_columns(
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
    end = pl.col("t_s") + pl.col("duration_s")
    before: pl.Series | None = None  # in flight before each request, had nothing been refused
    if slots is not None:
        before = in_flight_before(frame["t_s"], frame.select(end).to_series(), frame["requests"])
        peak = before + frame["requests"]
        needed["max_concurrency"] = float(peak.max()) / float(limits.max_concurrency or 1)  # type: ignore[arg-type]
        frame = frame.with_columns(peak.alias("in_flight_requests"))
    if policy == "reject":
        share = pl.Series("share", [1.0] * seconds.height, dtype=pl.Float64)
        for rule in rules:
            if rule.kind == "window":
                part = window_admitted_share(seconds["sec"], seconds[rule.measure], rule.cell_s, rule.sigma)
            else:
                part = bucket_admitted_share(seconds["sec"], seconds[rule.measure], rule.sigma, rule.rate)
            share = pl.DataFrame({"a": share, "b": part}).select(pl.min_horizontal("a", "b")).to_series()
        refused_any = bool((share < 1).any())
        admitted = (
            (frame["requests"] * share.gather(frame["m"])).alias("admitted")
            if refused_any
            else frame["requests"]
        )
        if slots is not None:
            known = None if refused_any else before  # token limits refused some: count again without them
            admitted = concurrency_admitted(
                frame["t_s"], frame.select(end).to_series(), admitted, slots, known
            ).admitted
        frame = frame.with_columns(
            (pl.col("requests") - admitted).clip(lower_bound=0.0).alias("throttled_requests"),
            pl.lit(0.0).alias("delay_s"),
            pl.col("t_s").alias("served_s"),
        )
    else:
        served = frame["t_s"]
        for rule in rules:
            part = shaper_served_at(frame["t_s"], frame[rule.measure], rule.cell_s, rule.sigma, rule.rate)
            served = pl.DataFrame({"a": served, "b": part}).select(pl.max_horizontal("a", "b")).to_series()
        if slots is not None:
            on_time = bool(
                (served == frame["t_s"]).all()
            )  # token limits delayed nobody: same in-flight counts
            known = before if on_time else None
            served = concurrency_starts(served, frame["duration_s"], frame["requests"], slots, known).admitted
        frame = (
            frame.with_columns(served.alias("served_s"))
            .with_columns((pl.col("served_s") - pl.col("t_s")).clip(lower_bound=0.0).alias("delay_s"))
            .with_columns(
                pl.when(pl.col("delay_s") > 1e-6)
                .then(pl.col("requests"))
                .otherwise(0.0)
                .alias("throttled_requests")
            )
        )
    demand = _demand_per_minute(seconds, rules, version.counting.window)
    concurrency = (
        frame.group_by("minute", maintain_order=True)
        .agg(pl.col("in_flight_requests").max().cast(pl.Float64).alias("max_in_flight_requests"))
        .with_columns(pl.lit(slots, dtype=pl.Float64).alias("limit_in_flight_requests"))
        if slots is not None
        else pl.DataFrame(schema=CONCURRENCY_SCHEMA)
    )
    keys = max(needed.values()) if needed else 0.0
    out = frame.select("t_s", "requests", "throttled_requests", "delay_s", "served_s")
    return Enforced(out, demand, concurrency, keys, needed), limits


DEMAND_SCHEMA: dict[str, pl.DataType] = {
    "minute": pl.Int64(),
    "limit": pl.String(),
    "window": pl.String(),
    "measure": pl.String(),
    "demand_per_minute": pl.Float64(),
    "peak_per_minute": pl.Float64(),
    "limit_per_minute": pl.Float64(),
}
CONCURRENCY_SCHEMA: dict[str, pl.DataType] = {
    "minute": pl.Int64(),
    "max_in_flight_requests": pl.Float64(),
    "limit_in_flight_requests": pl.Float64(),
}


def _demand_per_minute(seconds: pl.DataFrame, rules: list[LimitRule], window: str) -> pl.DataFrame:
    """Per minute and rate limit (daily ones left out): what the minute asked in the limit's measure, its
    busiest second at a per-minute pace, and the per-minute allowance (`Enforced.demand`)."""
    frames = [
        seconds.with_columns((pl.col("sec") // 60).set_sorted().alias("minute"))
        .group_by("minute", maintain_order=True)
        .agg(
            pl.col(rule.measure).sum().alias("demand_per_minute"),
            (pl.col(rule.measure).max() * 60).alias("peak_per_minute"),
        )
        .select(
            "minute",
            pl.lit(rule.name).alias("limit"),
            pl.lit(window).alias("window"),
            pl.lit(rule.measure).alias("measure"),
            pl.col("demand_per_minute").cast(pl.Float64),
            pl.col("peak_per_minute").cast(pl.Float64),
            pl.lit(rule.per_minute_line, dtype=pl.Float64).alias("limit_per_minute"),
        )
        for rule in rules
        if rule.per_minute_line is not None
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=DEMAND_SCHEMA)


def queue_lengths(units: pl.DataFrame) -> pl.Series:
    """Requests waiting at each arrival (arrived so far minus served so far; served times are FIFO-sorted)."""
    # FIFO: served times rise with arrival order, so they need no sort
    done = total_at_or_before(units["served_s"], units["requests"], units["t_s"])
    return (units["requests"].cum_sum() - done).clip(lower_bound=0.0)
