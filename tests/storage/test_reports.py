"""Report reads on a real DuckDB file: spend never summed across a price change, the weighted token profile,
usage per time bucket, and unpriced usage listed, never free."""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

import pytest

from models.money import Money
from models.profile_bins import EXACT_BELOW, RELATIVE_ERROR, bin_of, value_of
from models.spend import model_tier_bounds, price_spend, tier_bounds
from storage.reports import (
    UsageFilter,
    read_spend_groups,
    read_usage_buckets,
    read_usage_profile,
    spend_report,
)
from storage.store import Store
from tests.collectors.ingest_support import catalog
from tests.storage.usage_rows import insert_usage


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_an_hour_that_straddles_the_half_hour_window_start_is_priced_in_two_parts(store: Store) -> None:
    db = store
    insert_usage(
        db,
        [  # deepseek-reasoner, version 2025-03-03T16:30 on: off-peak 16:30-00:30 at x0.25
            {"ts": at("2025-03-05T16:10:00"), "input_tokens": 1_000_000, "output_tokens": 0},
            {"ts": at("2025-03-05T16:40:00"), "input_tokens": 1_000_000, "output_tokens": 0},
        ],
    )
    (row,) = spend_report(db, catalog(), UsageFilter(), ("hour",))
    assert row.keys["hour"] == at("2025-03-05T16:00:00")
    assert row.cost == Money(Decimal("5"), "CNY")  # 4 (peak) + 4 * 0.25 (off-peak), not 2 * either
    assert row.periods == ("off-peak", "standard")


def test_a_new_version_starting_mid_day_prices_each_side_with_its_own(store: Store) -> None:
    db = store
    insert_usage(
        db,
        [
            {"ts": at("2025-03-03T16:29:00"), "input_tokens": 1_000_000, "output_tokens": 0},  # v1: 4
            {
                "ts": at("2025-03-03T16:31:00"),
                "input_tokens": 1_000_000,
                "output_tokens": 0,
            },  # v2 off-peak: 1
        ],
    )
    (row,) = spend_report(db, catalog(), UsageFilter(), ("day",))
    assert row.cost == Money(Decimal("5"), "CNY")
    assert row.price_versions == ("test/deepseek-reasoner@2025-01-01", "test/deepseek-reasoner@2025-03-03")


def test_long_context_requests_are_never_summed_with_short_ones(store: Store) -> None:
    db = store
    insert_usage(
        db,
        [  # Sonnet: 3 per 1M below 200K input per request, 6 above, in the same minute
            {
                "ts": at("2025-03-10T09:00:00"),
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "input_tokens": 150_000,
                "output_tokens": 0,
            },
            {
                "ts": at("2025-03-10T09:00:30"),
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "input_tokens": 250_000,
                "output_tokens": 0,
            },
            # an aggregated row: 4 requests of 100K each on average stay below the threshold
            {
                "ts": at("2025-03-10T09:00:40"),
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "n_requests": 4,
                "input_tokens": 400_000,
                "output_tokens": 0,
            },
        ],
    )
    groups = read_spend_groups(db, UsageFilter(), ("model",), 30, (200_000,))
    assert sorted(groups["input_each"].to_list()) == [0, 200_001]  # two bands, never mixed
    (row,) = spend_report(db, catalog(), UsageFilter(), ("model",))
    # 0.15M*3 + 0.4M*3 (below) + 0.25M*6 (above) = 0.45 + 1.2 + 1.5
    assert row.cost == Money(Decimal("3.15"), "USD")


def test_a_model_without_long_context_prices_sums_into_one_band(store: Store) -> None:
    """Read from the rollups, each model is banded by its own offer's thresholds only: DeepSeek's prices
    have no tier, so its requests either side of Sonnet's 200K are one group (and the groups do not grow
    as the catalog's other bands fill); Sonnet's stay apart. The cost is the same either way."""
    db = store
    rows = []
    for provider, model in (("deepseek", "deepseek-reasoner"), ("anthropic", "claude-sonnet-4-5")):
        for second, size in ((0, 150_000), (20, 250_000)):
            rows.append(
                {
                    "ts": at(f"2025-03-10T09:00:{second:02d}"),
                    "provider": provider,
                    "model": model,
                    "input_tokens": size,
                    "output_tokens": 0,
                }
            )
    insert_usage(db, rows)
    prices = catalog()
    bounds = tier_bounds(prices)
    assert 200_000 in bounds
    own = read_spend_groups(db, UsageFilter(), ("model",), 30, bounds, bounds_of=model_tier_bounds(prices))
    shared = read_spend_groups(db, UsageFilter(), ("model",), 30, bounds)
    bands = {m: sorted(f["input_each"].to_list()) for (m,), f in own.group_by("model")}
    assert bands == {"deepseek-reasoner": [0], "claude-sonnet-4-5": [0, 200_001]}
    assert own.height == 3 and shared.height == 4
    with_own = price_spend(own, ("model",), prices)
    with_shared = price_spend(shared, ("model",), prices)
    assert [(r.keys, r.cost, r.requests) for r in with_own] == [
        (r.keys, r.cost, r.requests) for r in with_shared
    ]
    assert [(r.keys, r.cost) for r in spend_report(db, prices, UsageFilter(), ("model",))] == [
        (r.keys, r.cost) for r in with_own
    ]


def test_a_hostile_model_name_is_quoted_in_the_band_rule(store: Store) -> None:
    db = store
    name = "claude-sonnet-4-5'; DROP TABLE usage; --"
    insert_usage(
        db,
        [
            {
                "ts": at("2025-03-10T09:00:00"),
                "provider": "anthropic",
                "model": name,
                "input_tokens": 250_000,
                "output_tokens": 0,
            }
        ],
    )
    groups = read_spend_groups(
        db, UsageFilter(), ("model",), 30, (200_000,), bounds_of=lambda _p, _m: (200_000,)
    )
    assert groups["model"].to_list() == [name]
    assert groups["input_each"].to_list() == [200_001]


def test_unpriced_usage_is_listed_never_free(store: Store) -> None:
    db = store
    insert_usage(
        db,
        [
            {"ts": at("2025-03-05T10:00:00"), "input_tokens": 1_000_000, "output_tokens": 0},
            {
                "ts": at("2024-12-05T10:00:00"),
                "input_tokens": 1_000_000,
                "output_tokens": 0,
            },  # before any version
            {
                "ts": at("2025-03-05T10:00:00"),
                "provider": "acme",
                "model": "mystery-1",
                "input_tokens": 5,
                "output_tokens": 5,
            },
        ],
    )
    rows = {r.keys["model"]: r for r in spend_report(db, catalog(), UsageFilter(), ("model",))}
    assert rows["deepseek-reasoner"].cost == Money(Decimal("4"), "CNY")
    assert rows["deepseek-reasoner"].unpriced_models == (
        "deepseek/deepseek-reasoner (no price in force then; "
        "see `quotascope catalog show test/deepseek-reasoner`)",
    )
    assert rows["deepseek-reasoner"].requests == 2 and rows["deepseek-reasoner"].unpriced_requests == 1
    assert rows["mystery-1"].cost is None and rows["mystery-1"].unpriced_models == (
        "acme/mystery-1 (no catalog offer sells this model)",
    )


def test_filters_select_by_time_and_attribution(store: Store) -> None:
    db = store
    insert_usage(
        db,
        [
            {"ts": at("2025-03-05T10:00:00"), "team": "a", "input_tokens": 1_000_000, "output_tokens": 0},
            {"ts": at("2025-03-06T10:00:00"), "team": "b", "input_tokens": 1_000_000, "output_tokens": 0},
        ],
    )
    since = spend_report(db, catalog(), UsageFilter(since=at("2025-03-06")), ("team",))
    assert [r.keys["team"] for r in since] == ["b"]
    team = spend_report(db, catalog(), UsageFilter(team="a"), ("day",))
    assert [str(r.keys["day"]) for r in team] == ["2025-03-05"]


def test_usage_per_bucket(store: Store) -> None:
    db = store
    insert_usage(
        db,
        [
            {"ts": at("2025-03-05T10:05:00"), "input_tokens": 10, "output_tokens": 1, "team": "a"},
            {"ts": at("2025-03-05T10:55:00"), "input_tokens": 20, "output_tokens": 2, "team": "a"},
            {
                "ts": at("2025-03-05T11:00:00"),
                "input_tokens": 40,
                "output_tokens": 4,
                "team": "b",
                "n_requests": 3,
            },
        ],
    )
    frame = read_usage_buckets(db, UsageFilter(), ("hour", "team"))
    assert frame.select("hour", "team", "requests", "input_tokens", "output_tokens").rows() == [
        (at("2025-03-05T10:00:00"), "a", 2, 30, 3),
        (at("2025-03-05T11:00:00"), "b", 3, 40, 4),
    ]


def binned(value: float) -> float:
    return value_of(bin_of(value))


def exact_percentile(values: list[tuple[float, int]], share: float) -> float:
    """The smallest value whose cumulative requests reach `share` of them (the profile's definition)."""
    ordered = sorted(values)
    total = sum(w for _, w in ordered)
    running = 0
    for value, weight in ordered:
        running += weight
        if running >= share * total:
            return value
    raise AssertionError("no values")


def test_profile_percentiles_are_within_the_bins_error_and_means_exact(store: Store) -> None:
    """Over a spread of sizes (a few tokens to a million, aggregated rows among them) and times to first
    token, every percentile is the value of the exact percentile's bin: within 0.5 % of it (0.5 below
    100); every mean is the exact one."""
    rnd = random.Random(16)
    rows: list[dict[str, object]] = []
    for i in range(600):
        n = 1 if i % 7 else rnd.randint(2, 9)
        size = int(10 ** rnd.uniform(0, 6))
        rows.append(
            {
                "ts": at(f"2025-03-{1 + i % 28:02d}T10:00:00"),
                "team": rnd.choice(("a", "b", None)),
                "n_requests": n,
                "input_tokens": size * n + rnd.randint(0, n - 1),
                "output_tokens": rnd.randint(0, 5000) * n,
                "ttft_ms": float(rnd.randint(20, 4000)) if n == 1 else None,
                "latency_ms": float(rnd.randint(4100, 30000)) if n == 1 else None,
            }
        )
    insert_usage(store, rows)
    profile = read_usage_profile(store)
    for name, per_request in (
        ("input_tokens", [(r["input_tokens"] / r["n_requests"], r["n_requests"]) for r in rows]),  # type: ignore[operator]
        ("output_tokens", [(r["output_tokens"] / r["n_requests"], r["n_requests"]) for r in rows]),  # type: ignore[operator]
        ("ttft_ms", [(r["ttft_ms"], 1) for r in rows if r["ttft_ms"] is not None]),
    ):
        found = getattr(profile, name)
        requests = sum(w for _, w in per_request)
        assert found.mean == pytest.approx(sum(v * w for v, w in per_request) / requests, rel=1e-12)  # type: ignore[operator]
        for share, got in ((0.5, found.p50), (0.9, found.p90), (0.99, found.p99)):
            exact = exact_percentile(per_request, share)  # type: ignore[arg-type]
            assert got == binned(exact), (name, share)
            assert abs(got - exact) <= max(RELATIVE_ERROR * exact, 0.5 if exact < EXACT_BELOW else 0), (
                name,
                share,
            )


def test_profile_weights_aggregated_rows_by_their_requests(store: Store) -> None:
    db = store
    rows = [
        {
            "ts": at("2025-03-05T10:00:00"),
            "input_tokens": n,
            "cached_input_tokens": n // 2,
            "output_tokens": n // 10,
            "reasoning_tokens": n // 20,
            "ttft_ms": 100.0 * k,
            "latency_ms": 100.0 * k + 1000,
        }
        for k, n in enumerate((100, 200, 300, 400), start=1)
    ]
    # 4 requests averaging 1000 input tokens, as an export bucket: they count four times, at their average
    rows.append(
        {"ts": at("2025-03-05T10:00:00"), "n_requests": 4, "input_tokens": 4000, "output_tokens": 400}
    )
    insert_usage(db, rows)
    profile = read_usage_profile(db)
    assert profile.requests == 8
    # per request: 100, 200, 300, 400, 1000 x4 -> mean 625 (exact); p50 = 400 (4 of 8 reached), p90 = p99 =
    # 1000, each as its bin's value (within 0.5 %)
    assert profile.input_tokens.mean == 625.0
    found = (profile.input_tokens.p50, profile.input_tokens.p90, profile.input_tokens.p99)
    assert found == (binned(400), binned(1000), binned(1000))
    assert binned(400) == pytest.approx(400, rel=RELATIVE_ERROR) and binned(400) != 400
    assert profile.output_tokens.mean == pytest.approx(62.5)
    assert profile.cached_share == pytest.approx(500 / 5000)
    assert profile.ttft_ms is not None and profile.ttft_ms.p50 == binned(200)  # per-request
    # output tokens per second after the first token: n/10 tokens in 1 s
    assert profile.tokens_per_s is not None and profile.tokens_per_s.mean == pytest.approx(25.0)
    assert read_usage_profile(db, team="nobody").requests == 0
