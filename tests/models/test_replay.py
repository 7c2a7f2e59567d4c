"""Replaying crafted traffic whose throttling and cost are known by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from models.capacity import Latency
from models.catalog import (
    CacheRules,
    CountingRules,
    Limits,
    Offer,
    OfferVersion,
    Prices,
    PriceWindow,
    TimeSpan,
)
from models.errors import InputError
from models.money import FxRate, FxTable, Money
from models.replay import ReplayOptions, comparison_rows, replay
from models.traffic import demand_series, infer_bucket_s, traffic_from_usage
from tests.models.factories import d, version

NINE = datetime(2026, 11, 2, 9, 0, 0)  # a Monday
FX = FxTable((FxRate("USD", "CNY", d("7.0"), NINE.date(), "test"),))
PLAIN = Prices(input=d(2), cached_input=d("0.5"), output=d(8))


def offer(*versions: OfferVersion, offer_id: str = "test/target") -> Offer:
    return Offer(offer_id, "test", "target", "Test target", tuple(versions))


def target(
    *,
    limits: Limits | None = None,
    counting: CountingRules | None = None,
    cache: CacheRules | None = None,
    prices: Prices | None = PLAIN,
    **extra: Any,
) -> Offer:
    return offer(version(prices=prices, limits=limits, counting=counting, cache=cache, **extra))


def rows(*requests: dict[str, Any]) -> pl.DataFrame:
    base = {"n_requests": 1, "cached_input_tokens": 0, "provider": "deepseek", "model": "deepseek-chat"}
    return pl.DataFrame([{**base, **r} for r in requests])


def burst(
    count: int, at: datetime, *, input_tokens: int = 80, output_tokens: int = 20, **extra: Any
) -> list[dict[str, Any]]:
    return [
        {"ts": at, "input_tokens": input_tokens, "output_tokens": output_tokens, **extra}
        for _ in range(count)
    ]


def run(offer_: Offer, traffic_rows: pl.DataFrame, **options: Any) -> Any:
    latency = options.pop("latency", None)
    traffic = traffic_from_usage(traffic_rows, latency=latency)
    return replay(traffic, offer_, ReplayOptions(**options), fx=FX)


# ------------------------------------------------------------------------------------------ throttling

PER_SECOND = target(limits=Limits(tpm=6000), counting=CountingRules(window="second"))
PER_MINUTE = target(limits=Limits(tpm=6000), counting=CountingRules(window="minute"))


def burst_traffic() -> pl.DataFrame:
    # ten requests of 100 tokens in the first second of 09:00, then one every ten seconds up to 09:00:50
    later = [r for s in range(10, 60, 10) for r in burst(1, NINE + timedelta(seconds=s))]
    return rows(*burst(10, NINE), *later)


def test_a_burst_above_a_per_second_limit_that_the_per_minute_average_hides() -> None:
    # 1,500 tokens in the minute: a per-minute 6,000 TPM window never notices
    minute = run(PER_MINUTE, burst_traffic())
    assert minute.requests == 15 and minute.throttled_requests == 0
    assert minute.minutes_over_limit == 0 and minute.worst_minute is None
    # enforced per second (6,000 / 60 = 100 tokens/s) the burst gets one request through in its second
    second = run(PER_SECOND, burst_traffic())
    assert second.throttled_requests == pytest.approx(9)
    assert second.throttled_share == pytest.approx(9 / 15)
    assert second.minutes_over_limit == 1
    assert second.worst_minute is not None and second.worst_minute.minute == NINE
    assert second.worst_minute.throttled == pytest.approx(9)
    # 1,000 tokens in one second is ten seconds' allowance: ten keys, or 60,000 TPM on one
    assert second.keys_needed == 10
    assert second.limits_needed == {"tpm": 60_000}
    assert minute.keys_needed == 1 and minute.limits_needed == {"tpm": 1500}
    # the per-minute demand frame shows the burst as a rate the minute total hides
    row = second.demand.filter(pl.col("limit") == "tpm").row(0, named=True)
    assert (
        row["demand_per_minute"] == 1500
        and row["peak_per_minute"] == 60_000
        and row["limit_per_minute"] == 6000
    )
    assert row["measure"] == "counted_tokens"


def test_ten_keys_carry_the_burst_and_one_accounts_limit_does_not() -> None:
    assert run(PER_SECOND, burst_traffic(), keys=10).throttled_requests == pytest.approx(0)
    per_account = target(limits=Limits(tpm=6000, scope="account"), counting=CountingRules(window="second"))
    shared = run(per_account, burst_traffic(), keys=10)
    assert shared.throttled_requests == pytest.approx(9)  # ten keys on one account share its limit
    assert any("10 keys share one account's limits" in a for a in shared.assumptions)
    assert run(per_account, burst_traffic(), accounts=10).throttled_requests == pytest.approx(0)


def test_queue_policy_delays_the_burst_one_request_per_second() -> None:
    queued = run(PER_SECOND, burst_traffic(), policy="queue")
    # the burst is served at 0, 1, ..., 9 s; the later arrivals (10, 20, ... s) wait for nobody
    assert queued.throttled_requests == 9
    # delays 0 (six requests), then 1, 2, ..., 9: the median request waits 2 s
    assert queued.delay_p50_s == 2
    assert queued.delay_p99_s == 9
    assert queued.max_queue == 9
    assert queued.minutes.row(0, named=True)["max_delay_s"] == 9


def test_a_bucket_lets_the_burst_through_then_throttles_at_its_refill() -> None:
    # Anthropic-style continuous bucket: a full minute's allowance at once
    bucket = target(limits=Limits(tpm=6000), counting=CountingRules(window="bucket"))
    assert run(bucket, burst_traffic()).throttled_requests == 0
    # 60 requests of 100 tokens at 09:00:59 and 60 more a second later: fixed minute windows admit both
    # (each falls in its own minute); the bucket refilled only 100 tokens in between, one request
    straddle = rows(*burst(60, NINE + timedelta(seconds=59)), *burst(60, NINE + timedelta(seconds=60)))
    assert run(PER_MINUTE, straddle).throttled_requests == 0
    both = run(bucket, straddle)
    assert both.throttled_requests == pytest.approx(59)
    assert both.minutes_over_limit == 1


def test_max_tokens_are_reserved_at_request_start_where_the_offer_does() -> None:
    reserving = target(limits=Limits(tpm=10_000), counting=CountingRules(reserve_max_tokens=True))
    three = rows(*burst(3, NINE, input_tokens=100, output_tokens=100))
    # 100 in + 4,900 reserved = 5,000 each: two fit in 10,000, the third is refused
    reserved = run(reserving, three, max_tokens=4900)
    assert reserved.throttled_requests == pytest.approx(1)
    # without max_tokens the actual 200 tokens count, and the replay says so
    optimistic = run(reserving, three)
    assert optimistic.throttled_requests == 0
    assert any("pass --max-tokens" in a for a in optimistic.assumptions)


def test_cached_input_is_excluded_where_the_offer_excludes_it() -> None:
    cache = CacheRules(enabled=True)  # every recorded hit stays a hit
    ten = rows(*burst(10, NINE, input_tokens=500, output_tokens=0, cached_input_tokens=400))
    excluded = target(limits=Limits(itpm=1000), counting=CountingRules(cached_counted=False), cache=cache)
    assert run(excluded, ten).throttled_requests == 0  # 10 × 100 uncached = 1,000 ITPM
    counted = target(limits=Limits(itpm=1000), cache=cache)
    assert run(counted, ten).throttled_requests == pytest.approx(8)  # 5,000 asked, 1,000 allowed


def test_concurrency_from_each_requests_duration() -> None:
    # three 10-second requests at once, a 1-second one at 5 s, another at 12 s; two slots per account
    traffic = rows(
        *burst(3, NINE, latency_ms=10_000.0),
        *burst(1, NINE + timedelta(seconds=5), latency_ms=1000.0),
        *burst(1, NINE + timedelta(seconds=12), latency_ms=1000.0),
    )
    capped = target(limits=Limits(max_concurrency=2, scope="account"))
    rejected = run(capped, traffic)
    assert rejected.throttled_requests == 2  # the third, and the one at 5 s (both slots busy)
    assert rejected.keys_needed == 2  # four in flight at 5 s
    assert rejected.limits_needed == {"max_concurrency": 4}
    assert rejected.scope == "account"
    queued = run(capped, traffic, policy="queue")
    # the third and the 5 s one start at 10 s when two end (waits 10 and 5); the 12 s one finds a slot
    assert queued.throttled_requests == 2
    assert queued.delay_p99_s == 10


def test_durations_without_latency_come_from_the_assumption() -> None:
    # TTFT 1 s + 90 output tokens at 10 tokens/s = 10 s each: the second request finds the slot taken
    two = rows(*burst(1, NINE, output_tokens=90), *burst(1, NINE + timedelta(seconds=9), output_tokens=90))
    one_slot = target(limits=Limits(max_concurrency=1))
    slow = Latency(Decimal(1000), Decimal(10))
    assert run(one_slot, two, latency=slow).throttled_requests == 1
    fast = Latency(Decimal(100), Decimal(100))  # 1 s each
    result = run(one_slot, two, latency=fast)
    assert result.throttled_requests == 0
    assert any("no recorded latency" in a for a in result.assumptions)


def test_limits_follow_the_version_in_force_and_can_be_pinned() -> None:
    tight = version(prices=PLAIN, limits=Limits(rpm=5), effective_from=datetime(2026, 1, 1))
    loose = version(prices=PLAIN, limits=Limits(rpm=50), effective_from=NINE + timedelta(minutes=1))
    both = offer(tight, loose)
    traffic = rows(*burst(10, NINE), *burst(10, NINE + timedelta(minutes=1)))
    assert run(both, traffic).throttled_requests == pytest.approx(5)  # only the first minute's five
    pinned = run(both, traffic, version_at=NINE + timedelta(days=1))
    assert pinned.throttled_requests == 0
    assert any("version in force" in a for a in pinned.assumptions)


def test_aggregated_rows_are_spread_over_their_bucket() -> None:
    # two per-minute export buckets of 60 requests × 100 tokens: one request a second each
    exported = rows(
        {"ts": NINE, "n_requests": 60, "input_tokens": 4800, "output_tokens": 1200, "source_id": 7},
        {
            "ts": NINE + timedelta(minutes=1),
            "n_requests": 60,
            "input_tokens": 4800,
            "output_tokens": 1200,
            "source_id": 7,
        },
    )
    traffic = traffic_from_usage(exported)
    assert traffic.bucket_s == {7: 60}
    assert traffic.units.height == 120 and traffic.requests == 120
    per_second = demand_series(traffic, 1)
    assert per_second["requests"].to_list() == [1.0] * 120
    assert set(per_second["total_tokens"].to_list()) == {100}
    assert run(PER_SECOND, exported).throttled_requests == 0
    # more requests than seconds: one unit per second carrying the share
    dense = traffic_from_usage(
        rows({"ts": NINE, "n_requests": 600, "input_tokens": 600, "output_tokens": 0}), bucket_s=60
    )
    assert dense.units.height == 60 and dense.units["requests"].to_list() == [10.0] * 60
    assert dense.units["input_tokens"].sum() == 600


def test_huge_aggregated_rows_are_spread_in_wider_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.traffic

    monkeypatch.setattr(models.traffic, "MAX_SPREAD_UNITS", 100)
    day = rows({"ts": NINE.replace(hour=0), "n_requests": 86_400, "input_tokens": 86_400, "output_tokens": 0})
    traffic = traffic_from_usage(day, bucket_s=86_400)
    # 86,400 one-second slices wanted, 100 allowed: 100 slices of 864 s carrying 864 requests each
    assert traffic.units.height == 100 and traffic.spread_slice_s == 864
    assert (
        traffic.units["requests"].to_list() == [864.0] * 100 and traffic.units["input_tokens"].sum() == 86_400
    )
    result = replay(traffic, PER_MINUTE, ReplayOptions(), fx=FX)
    assert any("slices of up to 864 s" in a for a in result.assumptions)


def test_bucket_width_is_inferred_from_the_starts() -> None:
    day = pl.Series([datetime(2026, 11, 1), datetime(2026, 11, 2)])
    assert infer_bucket_s(day) == 86_400
    hours = pl.Series([datetime(2026, 11, 1, 3), datetime(2026, 11, 1, 5)])
    assert infer_bucket_s(hours) == 3600
    minutes = pl.Series([datetime(2026, 11, 1, 3, 1), datetime(2026, 11, 1, 3, 2)])
    assert infer_bucket_s(minutes) == 60


def test_nothing_to_replay_is_one_sentence() -> None:
    with pytest.raises(InputError, match="no recorded traffic"):
        replay(traffic_from_usage(rows(*burst(1, NINE)).clear()), PER_MINUTE, ReplayOptions(), fx=FX)
    with pytest.raises(InputError, match="tokenizer ratio"):
        ReplayOptions(tokenizer_ratio=(d("1.2"), d("1.1")))
    with pytest.raises(InputError, match="reject or queue"):
        ReplayOptions(policy="drop")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ cost


def cost(result: Any) -> Money:
    assert result.cost.cost is not None
    return result.cost.cost  # type: ignore[no-any-return]


def test_reprices_exactly_with_the_targets_cache_rules() -> None:
    # recorded on DeepSeek (64-token units): 1,984 and 960 cached tokens of 3,000 prompt tokens
    traffic = rows(
        {
            "ts": NINE,
            "input_tokens": 3000,
            "cached_input_tokens": 1984,
            "output_tokens": 500,
            "reasoning_tokens": 200,
        },
        {"ts": NINE, "input_tokens": 3000, "cached_input_tokens": 960, "output_tokens": 500},
    )
    openai_like = target(cache=CacheRules(enabled=True, min_tokens=1024, step_tokens=128))
    # 1,984 → 1,024 + 7 × 128 = 1,920 cached; 960 is under OpenAI's 1,024 minimum → none
    first = (Decimal(1080) * 2 + Decimal(1920) * d("0.5") + Decimal(500) * 8) / 1_000_000
    second = (Decimal(3000) * 2 + Decimal(500) * 8) / 1_000_000
    assert cost(run(openai_like, traffic)) == Money(first + second, "USD")
    # a target without caching pays every prompt token at the miss price
    assert cost(run(target(), traffic)).amount == (Decimal(6000) * 2 + Decimal(1000) * 8) / 1_000_000


def test_reprices_under_time_windows_versions_and_fx() -> None:
    off_peak = PriceWindow("off-peak", (TimeSpan(16 * 60 + 30, 30),), d("0.25"))
    cny = version(prices=Prices(input=d(4), output=d(16)), currency="CNY", windows=(off_peak,))
    usd = version(prices=Prices(input=d(1), output=d(2)), effective_from=datetime(2026, 11, 3))
    both = offer(cny, usd)
    traffic = rows(
        {"ts": NINE, "input_tokens": 1_000_000, "output_tokens": 0},  # peak, CNY version: ¥4
        {"ts": NINE.replace(hour=20), "input_tokens": 1_000_000, "output_tokens": 0},  # off-peak: ¥1
        {"ts": datetime(2026, 11, 3, 9), "input_tokens": 0, "output_tokens": 1_000_000},  # USD version: $2
    )
    result = run(both, traffic)
    # shown in the newest version's currency: ¥5 at 7 CNY per USD, plus $2
    assert cost(result) == Money(Decimal(5) / 7 + 2, "USD")
    periods = dict(zip(result.cost.groups["period"], result.cost.groups["amount"], strict=True))
    assert periods["off-peak"] == 1
    assert cost(run(both, traffic, currency="CNY")) == Money(Decimal(5) + 14, "CNY")


def test_tokenizer_ratio_gives_a_cost_band() -> None:
    traffic = rows({"ts": NINE, "input_tokens": 1000, "output_tokens": 1000})
    result = run(target(), traffic, tokenizer_ratio=(d("0.9"), d("1.1")))
    # 2 + 8 per 1M tokens: $0.01 at ratio 1, $0.009 at 0.9, $0.011 at 1.1
    assert cost(result).amount == d("0.01")
    assert result.cost_low == Money(d("0.009"), "USD") and result.cost_high == Money(d("0.011"), "USD")


def test_unpriced_versions_are_counted_never_free() -> None:
    traffic = rows(*burst(3, NINE))
    result = run(target(prices=None), traffic)
    assert result.cost.cost is None and result.cost.unpriced_requests == 3
    assert any("no published price" in a for a in result.assumptions)


def test_comparison_rows_for_the_switch_view() -> None:
    results: Sequence[Any] = [run(PER_MINUTE, burst_traffic()), run(PER_SECOND, burst_traffic())]
    table = comparison_rows(results, Money(d("0.5"), "USD"))
    assert table["throttled_share"].to_list() == pytest.approx([0, 0.6])
    assert table["keys_needed"].to_list() == [1, 10]
    assert table["cost_actual"].to_list() == [d("0.5"), d("0.5")]
    # 15 requests × (80 × $2 + 20 × $8) per 1M
    assert table["cost"].to_list() == [Decimal(15 * 320) / 1_000_000] * 2


def test_traffic_before_the_first_version_is_priced_as_it_and_counted_in_requests() -> None:
    late = offer(version(prices=PLAIN, effective_from=NINE + timedelta(minutes=1)))
    traffic = rows(*burst(3, NINE), *burst(2, NINE + timedelta(minutes=2)))
    result = run(late, traffic)
    assert result.cost.complete and result.requests == 5
    assert any(
        a.startswith("3 requests predate test/target's first catalog version") for a in result.assumptions
    )
