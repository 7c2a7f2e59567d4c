"""Frames of traffic priced by the one engine (`models.pricing.price_units`) sum to what each request costs
alone; target tokens (`models.target`) follow `models.capacity`'s rules on many rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from models.capacity import CacheUse, counted_tokens
from models.catalog import (
    CacheRules,
    ContextTier,
    CountingRules,
    Offer,
    Prices,
    PriceWindow,
    Promotion,
    TimeSpan,
)
from models.money import FxRate, FxTable, Money
from models.pricing import TokenCounts, price_tokens, price_units, version_index
from models.profile import TokenProfile
from models.target import cacheable, counted_columns, target_tokens
from models.traffic import traffic_from_usage
from tests.models.factories import d, version

START = datetime(2026, 10, 30)
FX = FxTable((FxRate("USD", "CNY", d("7.1"), START.date(), "test"),))
PEAK = PriceWindow("peak", (TimeSpan(60, 240), TimeSpan(360, 600)), d(2), frozenset(range(5)))
OFFER = Offer(
    "test/versions",
    "test",
    "m",
    "versioned",
    (
        version(
            prices=Prices(input=d(1), cached_input=d("0.02"), output=d(4)),
            currency="CNY",
            windows=(PEAK,),
            base_period="off-peak",
            promotions=(Promotion("launch", START, START + timedelta(days=1), d("0.5")),),
            effective_from=START - timedelta(days=30),
            effective_to=START + timedelta(days=3),
        ),
        version(
            prices=Prices(input=d(3), output=d(15), cached_input=d("0.3"), cache_write=d("3.75")),
            tiers=(ContextTier(20_000, Prices(input=d(6), output=d("22.5"), cached_input=d("0.6"))),),
            effective_from=START + timedelta(days=3),
        ),
    ),
)


@st.composite
def request_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(1, 30))):
        input_tokens = draw(st.integers(0, 40_000))
        cached = draw(st.integers(0, input_tokens))
        output = draw(st.integers(0, 5000))
        rows.append(
            {
                "ts": START + timedelta(minutes=draw(st.integers(0, 6 * 1440))),
                "n_requests": 1,
                "input_tokens": input_tokens,
                "cached_input_tokens": cached,
                "cache_write_tokens": draw(st.integers(0, input_tokens - cached)),
                "output_tokens": output,
                "reasoning_tokens": draw(st.integers(0, output)),
                "provider": "test",
                "model": "m",
            }
        )
    return rows


def priced_as_recorded(rows: list[dict[str, Any]], currency: str) -> Any:
    units = traffic_from_usage(pl.DataFrame(rows)).units.with_columns(
        version_index(pl.col("ts"), OFFER.versions, "unpriced").alias("vidx")
    )
    return price_units(
        target_tokens(units, OFFER, Decimal(1), reestimate=False), OFFER, fx=FX, currency=currency
    )


@settings(max_examples=100, deadline=None)
@given(request_rows())
def test_grouped_pricing_is_the_sum_of_price_tokens(rows: list[dict[str, Any]]) -> None:
    priced = priced_as_recorded(rows, "USD")
    expected = Money.zero("USD")
    for row in rows:
        at = row["ts"]
        tokens = TokenCounts(
            input=row["input_tokens"],
            output=row["output_tokens"],
            cached_input=row["cached_input_tokens"],
            cache_write=row["cache_write_tokens"],
            reasoning=row["reasoning_tokens"],
        )
        native = price_tokens(OFFER.version_at(at), tokens, at)
        expected = expected + FX.convert(native, "USD", at.date()).money
    # exact per group; only the CNY → USD division rounds, at the 28th significant digit
    assert priced.cost is not None and priced.cost.currency == "USD"
    assert abs(priced.cost.amount - expected.amount) < Decimal("1e-20")
    assert priced.unpriced_requests == 0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 50_000),
    st.integers(0, 2048),
    st.integers(1, 256),
    st.booleans(),
)
def test_vectorised_cacheable_is_cache_rules_cacheable(
    prefix: int, minimum: int, step: int, enabled: bool
) -> None:
    rules = CacheRules(enabled=enabled, min_tokens=minimum, step_tokens=step)
    got = pl.select(cacheable(pl.lit(prefix), pl.lit(minimum), pl.lit(step), pl.lit(enabled))).item()
    assert got == rules.cacheable(prefix)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40_000),
    st.integers(0, 40_000),
    st.integers(0, 8000),
    st.sampled_from(["input+output", "input", "output"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 5]),
    st.one_of(st.none(), st.integers(1, 32_000)),
)
def test_counted_columns_are_counted_tokens(
    input_tokens: int,
    cached: int,
    output: int,
    tokens: Any,
    cached_counted: bool,
    reserve: bool,
    burndown: int,
    max_tokens: int | None,
) -> None:
    cached = min(cached, input_tokens)
    counting = CountingRules(
        tokens=tokens,
        cached_counted=cached_counted,
        reserve_max_tokens=reserve,
        output_burndown=Decimal(burndown),
    )
    frame = pl.DataFrame(
        {
            "target_input_tokens": [input_tokens],
            "target_cached_input_tokens": [cached],
            "target_output_tokens": [output],
            "requests": [1.0],
        }
    )
    got = frame.select(**counted_columns(counting, max_tokens)).row(0, named=True)
    profile = TokenProfile.direct(input_tokens, output, max_tokens=max_tokens)
    want = counted_tokens(profile, counting, CacheUse(Decimal(cached), Decimal(0), "test"))
    assert (got["counted_input_tokens"], got["counted_output_tokens"], got["counted_tokens"]) == (
        want.input,
        want.output,
        want.total,
    )


def test_target_cache_is_re_estimated_per_request_and_times_the_hit_factor() -> None:
    traffic = traffic_from_usage(
        pl.DataFrame(
            {
                "ts": [START, START],
                "input_tokens": [5000, 5000],
                "cached_input_tokens": [4032, 1000],
                "output_tokens": [10, 10],
            }
        )
    )
    rules = CacheRules(enabled=True, min_tokens=1024, step_tokens=128, hit_factor=d("0.5"))
    target = Offer("t/o", "t", "o", "o", (version(prices=Prices(input=d(1), output=d(1)), cache=rules),))
    units = traffic.units.with_columns(version_index(pl.col("ts"), target.versions, "earliest").alias("vidx"))
    tokens = target_tokens(units, target, Decimal(1), reestimate=True)
    # 4,032 → 1,024 + 23 × 128 = 3,968, half of it hit; 1,000 is under the minimum
    assert tokens["target_cached_input_tokens"].to_list() == [1984, 0]
    scaled = target_tokens(units, target, d("1.5"), reestimate=True)
    # ×1.5: 6,048 → 1,024 + 39 × 128 = 6,016 → 3,008; 1,500 → 1,024 + 3 × 128 = 1,408 → 704
    assert scaled["target_input_tokens"].to_list() == [7500, 7500]
    assert scaled["target_cached_input_tokens"].to_list() == [3008, 704]


def test_times_no_version_covers_stay_unpriced_unless_the_first_version_stands_in() -> None:
    rows = [
        {"ts": START, "input_tokens": 1_000_000, "output_tokens": 0},
        {"ts": datetime(2020, 1, 1), "input_tokens": 1000, "output_tokens": 0},
    ]
    priced = priced_as_recorded(rows, "CNY")
    # ¥1 per 1M at the launch promotion's half price; Friday 00:00 is off-peak
    assert priced.cost == Money(d("0.5"), "CNY") and priced.unpriced_requests == 1
    units = traffic_from_usage(pl.DataFrame(rows)).units
    units = units.with_columns(version_index(pl.col("ts"), OFFER.versions, "earliest").alias("vidx"))
    what_if = price_units(
        target_tokens(units, OFFER, Decimal(1), reestimate=True), OFFER, fx=FX, currency="CNY"
    )
    assert what_if.unpriced_requests == 0  # 2020 priced as the first version: a what-if, not a bill
    assert what_if.cost == Money(d("0.501"), "CNY")  # Wednesday 00:00 is off-peak too: ¥1 per 1M


def test_price_units_without_anything_priceable() -> None:
    empty = traffic_from_usage(pl.DataFrame({"ts": [START], "input_tokens": [1], "output_tokens": [1]}))
    units = empty.units.with_columns(pl.lit(None, dtype=pl.Int32).alias("vidx"))
    priced = price_units(target_tokens(units, OFFER, Decimal(1), reestimate=False), OFFER, fx=FX)
    assert priced.cost is None and priced.unpriced_requests == 1


NIGHT = PriceWindow("night", (TimeSpan(22 * 60, 7 * 60),), d("0.5"), frozenset({0, 4, 6}))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 40 * 86_400 - 1), min_size=1, max_size=50))
def test_period_lookup_is_the_window_rules_per_row(seconds: list[int]) -> None:
    """`Classifier.period` looks the period up by version and minute of the week; it must be what the
    windows' rules give each row's own weekday and minute (seconds ignored, windows wrapping midnight and
    kept to some weekdays, a version without windows, rows of no version)."""
    from models.pricing import Classifier

    classifier = Classifier.of(
        (
            version(windows=(NIGHT, PEAK), base_period="day"),
            version(base_period="flat", effective_from=START),
            version(windows=(PEAK,), base_period="off-peak", effective_from=START + timedelta(days=9)),
        )
    )
    frame = pl.DataFrame(
        {
            "ts": [START - timedelta(days=20, seconds=-s) for s in seconds],
            "vidx": [None if n % 7 == 6 else n % 3 for n in range(len(seconds))],
        },
        schema={"ts": pl.Datetime("us"), "vidx": pl.Int32},
    )
    ts, vidx = pl.col("ts"), pl.col("vidx")
    weekday = ts.dt.weekday().cast(pl.Int32) - 1
    minute = ts.dt.hour().cast(pl.Int32) * 60 + ts.dt.minute().cast(pl.Int32)
    found = frame.select(
        classifier.period(vidx, ts).alias("lookup"),
        classifier._period_rule(vidx, weekday, minute).alias("rule"),
    )
    assert found["lookup"].to_list() == found["rule"].to_list()
