"""The vectorised enforcement kernels against plain sequential loops written from the rules, and a few
cases worked by hand."""

from __future__ import annotations

import heapq
import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import enforcement
from models.enforcement import (
    _RefusedWeighted,
    bucket_admitted_share,
    bucket_scale_needed,
    concurrency_admitted,
    concurrency_starts,
    in_flight_before,
    shaper_served_at,
    window_admitted_share,
    window_scale_needed,
)

# ------------------------------------------------------------------------------------------ references


def ref_window_reject(
    seconds: list[int], demand: list[float], window_s: int, allowance: float
) -> list[float]:
    shares, used, current = [], 0.0, None
    for sec, d in zip(seconds, demand, strict=True):
        if sec // window_s != current:
            current, used = sec // window_s, 0.0
        take = min(d, max(0.0, allowance - used))
        used += take
        shares.append(1.0 if d == 0 else take / d)
    return shares


def ref_bucket_reject(seconds: list[int], demand: list[float], capacity: float, refill: float) -> list[float]:
    level, last, shares = capacity, None, []
    for sec, d in zip(seconds, demand, strict=True):
        if last is not None:
            level = min(capacity, level + refill * (sec - last))
        last = sec
        take = min(d, level)
        level -= take
        shares.append(1.0 if d == 0 else take / d)
    return shares


def ref_queue(
    arrivals: list[float], sizes: list[float], cell_s: float, sigma: float, rate: float
) -> list[float]:
    """A FIFO queue fed cell by cell: a bucket of `sigma` refilled by `rate` per cell (a fixed window is
    σ = r: it refills to full), serving at each cell start and then each arrival as it comes."""
    served: list[float] = []
    queue: list[tuple[int, float]] = []  # (index, remaining)
    level = sigma
    cell = math.floor(arrivals[0] / cell_s) if arrivals else 0
    i, n = 0, len(arrivals)
    served = [0.0] * n
    while i < n or queue:
        # serve the backlog at the start of this cell, then this cell's arrivals in order
        while queue and level > 1e-12:
            k, rest = queue[0]
            take = min(rest, level)
            level -= take
            if rest - take <= 1e-9:
                queue.pop(0)
                served[k] = max(cell * cell_s, arrivals[k])
            else:
                queue[0] = (k, rest - take)
        while i < n and math.floor(arrivals[i] / cell_s) == cell:
            if not queue and sizes[i] <= level + 1e-9:
                level -= sizes[i]
                served[i] = arrivals[i]
            else:
                take = 0.0 if queue else min(sizes[i], level)
                level -= take
                queue.append((i, sizes[i] - take))
            i += 1
        cell += 1
        level = min(sigma, level + rate)
        if not queue and i < n:
            gap = math.floor(arrivals[i] / cell_s) - cell
            if gap > 0:
                level = min(sigma, level + rate * gap)
                cell += gap
    return served


def ref_concurrency_reject(starts: list[float], durations: list[float], slots: int) -> list[int]:
    running: list[float] = []
    admitted = []
    for start, duration in zip(starts, durations, strict=True):
        while running and running[0] <= start:
            heapq.heappop(running)
        if len(running) < slots:
            heapq.heappush(running, start + duration)
            admitted.append(1)
        else:
            admitted.append(0)
    return admitted


def ref_concurrency_queue(ready: list[float], durations: list[float], slots: int) -> list[float]:
    running: list[float] = []
    starts, last = [], -math.inf
    for at, duration in zip(ready, durations, strict=True):
        at = max(at, last)
        while running and running[0] <= at:
            heapq.heappop(running)
        if len(running) >= slots:
            at = max(at, heapq.heappop(running))
        heapq.heappush(running, at + duration)
        starts.append(at)
        last = at
    return starts


# ------------------------------------------------------------------------------------------ by hand


def test_a_burst_above_a_per_second_limit_that_the_minute_hides() -> None:
    # 6,000 TPM: 100 tokens per second when enforced per second; one second asks for 1,000
    seconds, demand = pl.Series([0, 30]), pl.Series([1000.0, 100.0])
    assert window_admitted_share(seconds, demand, 1, 100.0).to_list() == [0.1, 1.0]
    assert window_admitted_share(seconds, demand, 60, 6000.0).to_list() == [1.0, 1.0]
    assert window_scale_needed(seconds, demand, 1, 100.0) == 10
    assert window_scale_needed(seconds, demand, 60, 6000.0) == pytest.approx(1100 / 6000)


def test_a_bucket_lets_a_burst_through_then_only_its_refill() -> None:
    # capacity 6,000 refilled at 100/s: 3,000 fits; 4,000 a second later finds 3,100; then 100 left
    shares = bucket_admitted_share(pl.Series([0, 1, 2, 61]), pl.Series([3000.0, 4000, 1000, 7000]), 6000, 100)
    assert shares.to_list() == pytest.approx([1.0, 0.775, 0.1, 5900 / 7000])
    # the busiest stretch is seconds 0–2: 8,000 against 6,000 + 2 s × 100
    needed = bucket_scale_needed(pl.Series([0, 1, 2, 61]), pl.Series([3000.0, 4000, 1000, 7000]), 6000, 100)
    assert needed == pytest.approx(8000 / 6200)


def test_queue_serves_a_burst_one_allowance_per_cell() -> None:
    ten = pl.Series([0.0] * 10)
    sizes = pl.Series([100.0] * 10)
    assert shaper_served_at(ten, sizes, 1, 100, 100).to_list() == [float(s) for s in range(10)]
    # a bucket of 300: three at once, then one per second
    assert shaper_served_at(ten, sizes, 1, 300, 100).to_list() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    # per-minute windows of 100: the third arrival waits for the next minute's allowance
    arrivals = pl.Series([0.0, 10, 59, 59.5, 130])
    served = shaper_served_at(arrivals, pl.Series([50.0, 50, 50, 50, 10]), 60, 100, 100)
    assert served.to_list() == [0, 10, 60, 60, 130]


def test_concurrency_counts_each_request_until_it_ends() -> None:
    starts = pl.Series([0.0, 0, 0, 1, 5])
    durations = pl.Series([10.0, 10, 10, 1, 1])
    ends = starts + durations
    ones = pl.Series([1.0] * 5)
    assert in_flight_before(starts, ends, ones).to_list() == [0, 1, 2, 3, 3]
    # two slots: the third and the two later ones find both taken (the rejected ones hold nothing)
    assert concurrency_admitted(starts, ends, ones, 2).admitted.to_list() == [1, 1, 0, 0, 0]
    # queued: the third and fourth start when the first two end at 10, the fifth when the fourth ends
    assert concurrency_starts(starts, durations, ones, 2).admitted.to_list() == [0, 0, 10, 10, 11]


# ------------------------------------------------------------------------------------------ properties


@st.composite
def busy_seconds(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    gaps = draw(st.lists(st.integers(1, 90), min_size=1, max_size=60))
    seconds = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    demand = [float(draw(st.integers(0, 4000))) for _ in seconds]
    return seconds, demand


@settings(max_examples=200, deadline=None)
@given(busy_seconds(), st.sampled_from([1, 60, 3600]), st.integers(1, 5000))
def test_window_reject_matches_the_loop(
    traffic: tuple[list[int], list[float]], window: int, limit: int
) -> None:
    seconds, demand = traffic
    got = window_admitted_share(pl.Series(seconds), pl.Series(demand), window, float(limit))
    assert got.to_list() == pytest.approx(ref_window_reject(seconds, demand, window, float(limit)))


@settings(max_examples=200, deadline=None)
@given(busy_seconds(), st.integers(1, 8000), st.integers(1, 400))
def test_bucket_reject_matches_the_loop(
    traffic: tuple[list[int], list[float]], capacity: int, refill: int
) -> None:
    seconds, demand = traffic
    got = bucket_admitted_share(pl.Series(seconds), pl.Series(demand), float(capacity), float(refill))
    assert got.to_list() == pytest.approx(ref_bucket_reject(seconds, demand, capacity, refill), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(busy_seconds(), st.integers(1, 8000), st.integers(1, 400))
def test_bucket_headroom_is_the_least_scale_that_rejects_nothing(
    traffic: tuple[list[int], list[float]], capacity: int, refill: int
) -> None:
    seconds, demand = traffic
    factor = bucket_scale_needed(pl.Series(seconds), pl.Series(demand), float(capacity), float(refill))
    if factor == 0:
        return
    enough = ref_bucket_reject(seconds, demand, capacity * factor * (1 + 1e-9), refill * factor * (1 + 1e-9))
    assert min(enough) == pytest.approx(1.0)
    short = ref_bucket_reject(seconds, demand, capacity * factor * 0.999, refill * factor * 0.999)
    assert min(short) < 1.0


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    gaps = draw(st.lists(st.integers(0, 120), min_size=1, max_size=40))
    times = [sum(gaps[: i + 1]) / 2 for i in range(len(gaps))]
    sizes = [float(draw(st.integers(1, 300))) for _ in times]
    return times, sizes


@settings(max_examples=200, deadline=None)
@given(arrivals(), st.sampled_from([("window", 60), ("window", 1), ("bucket", 1)]), st.integers(50, 900))
def test_queue_matches_the_loop(
    traffic: tuple[list[float], list[float]], rule: tuple[str, int], allowance: int
) -> None:
    times, sizes = traffic
    kind, cell = rule
    # every single request fits one cell's allowance, as a provider requires
    sigma = float(max(allowance, int(max(sizes))))
    rate = sigma if kind == "window" else max(1.0, sigma / 60)
    got = shaper_served_at(pl.Series(times), pl.Series(sizes), cell, sigma, rate)
    assert got.to_list() == pytest.approx(ref_queue(times, sizes, cell, sigma, rate))


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    gaps = draw(st.lists(st.integers(0, 20), min_size=1, max_size=60))
    times = [float(sum(gaps[: i + 1])) for i in range(len(gaps))]
    durations = [float(draw(st.integers(1, 60))) for _ in times]
    return times, durations


@settings(max_examples=200, deadline=None)
@given(requests(), st.integers(1, 6))
def test_concurrency_reject_matches_the_loop(traffic: tuple[list[float], list[float]], slots: int) -> None:
    starts, durations = traffic
    ends = [s + d for s, d in zip(starts, durations, strict=True)]
    got = concurrency_admitted(pl.Series(starts), pl.Series(ends), pl.Series([1.0] * len(starts)), slots)
    assert got.admitted.to_list() == ref_concurrency_reject(starts, durations, slots)


@settings(max_examples=200, deadline=None)
@given(requests(), st.integers(1, 6))
def test_concurrency_queue_matches_the_loop(traffic: tuple[list[float], list[float]], slots: int) -> None:
    ready, durations = traffic
    got = concurrency_starts(pl.Series(ready), pl.Series(durations), pl.Series([1.0] * len(ready)), slots)
    assert got.admitted.to_list() == pytest.approx(ref_concurrency_queue(ready, durations, slots))


def test_limits_are_enforced_in_one_place() -> None:
    """ "Where is a limit enforced?" has one answer: models/enforcement.py (`enforce_limits` and its kernels).
    No other module of the project calls a kernel that admits, refuses or delays demand."""
    import ast
    from pathlib import Path

    kernels = {
        "window_admitted_share",
        "bucket_admitted_share",
        "shaper_served_at",
        "concurrency_admitted",
        "concurrency_starts",
        "limit_rules",
    }
    root = Path(__file__).resolve().parents[2]
    callers = set()
    for package in ("models", "storage", "collectors", "dashboard", "quotascope"):
        for path in (root / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            called = {
                node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
            }
            if called & kernels:
                callers.add(str(path.relative_to(root)))
    assert callers == {"models/enforcement.py"}


@settings(max_examples=200, deadline=None)
@given(requests(), st.integers(1, 6), st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.5]), min_size=60))
def test_concurrency_reject_walks_whole_and_weighted_requests_alike(
    traffic: tuple[list[float], list[float]], slots: int, weights: list[float]
) -> None:
    """The reject walk of whole requests (a heap of bare end times) decides as the weighted walk does on
    the same requests; with fractional weights a request is never given more than it asks."""
    starts, durations = traffic
    ends = [s + d for s, d in zip(starts, durations, strict=True)]
    whole = concurrency_admitted(pl.Series(starts), pl.Series(ends), pl.Series([1.0] * len(starts)), slots)
    # the same requests, weighted (not whole) but each of weight 1: the weighted walk
    weighted = _RefusedWeighted(float(slots))
    u = in_flight_before(pl.Series(starts), pl.Series(ends), pl.Series([1.0] * len(starts))).to_list()
    hot = [i for i in range(len(starts)) if u[i] + 1.0 > slots + 1e-7]
    taken = weighted.taken(
        [starts[i] for i in hot], [ends[i] for i in hot], [1.0] * len(hot), [u[i] for i in hot]
    )
    expected = [1.0] * len(starts)
    for i, t in zip(hot, taken, strict=True):
        expected[i] = t
    assert whole.admitted.to_list() == expected
    # fractional weights: the weighted walk, each request given between nothing and its weight
    w = pl.Series(weights[: len(starts)])
    got = concurrency_admitted(pl.Series(starts), pl.Series(ends), w, slots).admitted
    assert all(0.0 <= a <= b + 1e-9 for a, b in zip(got.to_list(), w.to_list(), strict=True))


def test_concurrency_reject_keeps_what_it_refused_across_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    starts = [float(i) / 10 for i in range(50)]
    ends = [s + 3.0 for s in starts]
    ones = pl.Series([1.0] * len(starts))
    at_once = concurrency_admitted(pl.Series(starts), pl.Series(ends), ones, 4).admitted.to_list()
    monkeypatch.setattr(enforcement, "WALK_SLICE", 3)
    sliced = concurrency_admitted(pl.Series(starts), pl.Series(ends), ones, 4).admitted.to_list()
    assert sliced == at_once == ref_concurrency_reject(starts, [3.0] * len(starts), 4)
