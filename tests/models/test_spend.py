"""Pricing stored usage by groups (pure): the bucket grain, report keys, roll-up, unpriced and FX rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.catalog import Catalog, ContextTier, Offer, Prices, PriceWindow, Promotion, TimeSpan
from models.errors import InputError
from models.money import FxRate, FxTable, Money
from models.spend import parse_by, price_spend, pricing_grain_minutes, tier_bounds
from tests.models.factories import d, version


def offer(offer_id: str, provider: str, model: str, *versions: object) -> Offer:
    return Offer(offer_id, provider, model, model, tuple(versions))  # type: ignore[arg-type]


def window(start: int, end: int) -> PriceWindow:
    return PriceWindow("off-peak", (TimeSpan(start, end),), d("0.5"))


def test_grain_follows_the_finest_price_boundary() -> None:
    plain = Catalog({"a": offer("a", "p", "m", version(prices=Prices(d(1), d(1))))})
    assert pricing_grain_minutes(plain) == 60
    half = Catalog(
        {"a": offer("a", "p", "m", version(prices=Prices(d(1), d(1)), windows=(window(990, 30),)))}
    )
    assert pricing_grain_minutes(half) == 30  # 16:30
    quarter = Catalog(
        {"a": offer("a", "p", "m", version(prices=Prices(d(1), d(1)), windows=(window(1005, 60),)))}
    )
    assert pricing_grain_minutes(quarter) == 15  # 16:45
    promo = Promotion("launch", datetime(2025, 2, 1, 8, 20), datetime(2025, 3, 1), d("0.5"))
    odd = Catalog({"a": offer("a", "p", "m", version(prices=Prices(d(1), d(1)), promotions=(promo,)))})
    assert pricing_grain_minutes(odd) == 20  # 08:20


def test_tier_bounds_collects_every_threshold() -> None:
    tiered = version(prices=Prices(d(3), d(15)), tiers=(ContextTier(200_000, Prices(d(6), d(22))),))
    other = version(prices=Prices(d(1), d(2)), tiers=(ContextTier(128_000, Prices(d(2), d(4))),))
    catalog = Catalog({"a": offer("a", "p", "m", tiered), "b": offer("b", "p", "n", other)})
    assert tier_bounds(catalog) == (128_000, 200_000)


def test_parse_by() -> None:
    assert parse_by("provider, model,day", ()) == ("provider", "model", "day")
    assert parse_by("", ("day",)) == ("day",)
    with pytest.raises(InputError, match="cannot group by week"):
        parse_by("week", ())
    with pytest.raises(InputError, match="day or by hour"):
        parse_by("day,hour", ())


def groups(rows: list[dict[str, object]]) -> pl.DataFrame:
    base = {
        "bucket": datetime(2025, 3, 1, 10),
        "input_each": 0,
        "requests": 1,
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "billed_cost": None,
        "billed_currency": None,
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema_overrides={"billed_cost": pl.Decimal(20, 10)})


USD = offer("o/usd", "openai", "gpt-x", version(prices=Prices(d(2), d(8), cached_input=d(1))))
CNY = offer("o/cny", "deepseek", "ds-x", version(prices=Prices(d(4), d(16)), currency="CNY"))
FX = FxTable((FxRate("USD", "CNY", d(7), date(2025, 1, 1), "test"),))
CATALOG = Catalog({"o/usd": USD, "o/cny": CNY}, FX)


def test_groups_roll_up_into_report_rows_with_cost_and_savings() -> None:
    frame = groups(
        [
            {
                "provider": "openai",
                "model": "gpt-x",
                "team": "a",
                "input_tokens": 3_000_000,
                "cached_input_tokens": 1_000_000,
                "output_tokens": 1_000_000,
                "requests": 3,
            },
            {
                "provider": "openai",
                "model": "gpt-x",
                "team": "a",
                "input_tokens": 1_000_000,
                "requests": 1,
                "bucket": datetime(2025, 3, 1, 10, 30),
            },
        ]
    )
    (row,) = price_spend(frame, ("team",), CATALOG)
    assert row.requests == 4 and row.input_tokens == 4_000_000
    assert row.cost == Money(d(2 * 2 + 1 + 8 + 2), "USD")  # (2M miss * 2 + 1M hit * 1 + 1M out * 8) + 1M * 2
    assert row.cache_savings == Money(d(1), "USD")
    assert row.to_json()["cost"] == {"amount": "15", "currency": "USD"}


def test_a_null_provider_shows_the_matched_offers() -> None:
    frame = groups([{"provider": None, "model": "gpt-x", "input_tokens": 1_000_000}])
    (row,) = price_spend(frame, ("provider", "model"), CATALOG)
    assert row.keys == {"provider": "openai", "model": "gpt-x"}


def test_mixed_currencies_convert_by_the_days_rate_and_say_so() -> None:
    frame = groups(
        [
            {"provider": "openai", "model": "gpt-x", "input_tokens": 1_000_000},
            {"provider": "deepseek", "model": "ds-x", "input_tokens": 1_000_000},
        ]
    )
    (picked,) = price_spend(frame, (), CATALOG)  # no display currency: one is picked and named
    assert picked.cost == Money(d(2) + d(4) / d(7), "USD")
    assert picked.currency_note.startswith("costs in CNY converted to USD")
    (row,) = price_spend(frame, (), CATALOG, "CNY")
    assert row.cost == Money(d(2 * 7 + 4), "CNY")
    assert row.fx == ("1 USD = 7 CNY (test, 2025-01-01)",)


def test_billed_cost_is_kept_beside_the_computed_one() -> None:
    frame = groups(
        [
            {
                "provider": "openai",
                "model": "gpt-x",
                "input_tokens": 1_000_000,
                "billed_cost": Decimal("2.5"),
                "billed_currency": "USD",
            }
        ]
    )
    (row,) = price_spend(frame, (), CATALOG)
    assert row.cost == Money(d(2), "USD") and row.billed_cost == Money(Decimal("2.5"), "USD")


WINDOWED = offer(
    "o/win",
    "deepseek",
    "ds-w",
    version(prices=Prices(d(4), d(16)), windows=(window(990, 30),), currency="CNY"),
)
TIERED = offer(
    "o/tier",
    "anthropic",
    "claude-x",
    version(prices=Prices(d(3), d(15)), tiers=(ContextTier(200_000, Prices(d(6), d(22))),)),
)
MANY = Catalog({"o/usd": USD, "o/cny": CNY, "o/win": WINDOWED, "o/tier": TIERED}, FX)


@settings(deadline=None)  # each example classifies through polars: timing is the benchmarks' job
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    ("openai", "gpt-x"),
                    (None, "gpt-x"),
                    ("deepseek", "ds-w"),
                    ("anthropic", "claude-x"),
                    ("x", "unknown"),
                ]
            ),
            st.sampled_from(["a", "b", None]),
            st.integers(0, 95),  # a half-hour bucket over two days
            st.sampled_from([0, 200_001]),
            st.integers(0, 3_000_000),
            st.integers(0, 500_000),
            st.sampled_from([None, "1.5"]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([(), ("team",), ("provider", "model"), ("day", "team"), ("hour",)]),
)
def test_rolling_up_many_groups_prices_each_as_if_alone(
    specs: list[tuple[tuple[str | None, str], str | None, int, int, int, int, str | None]],
    by: tuple[str, ...],
) -> None:
    rows = []
    for (provider, model), team, half_hour, input_each, tokens, output, billed in specs:
        bucket = datetime(2025, 3, 1) + timedelta(minutes=30 * half_hour)
        rows.append(
            {
                "provider": provider,
                "model": model,
                "team": team,
                "bucket": bucket,
                "day": bucket.date(),
                "hour": bucket.replace(minute=0),
                "input_each": input_each,
                "input_tokens": tokens,
                "cached_input_tokens": tokens // 3,
                "output_tokens": output,
                "requests": 2,
                "billed_cost": Decimal(billed) if billed else None,
                "billed_currency": "USD" if billed else None,
            }
        )
    together = {tuple(r.keys.values()): r for r in price_spend(groups(rows), by, MANY, "CNY")}
    alone: dict[tuple[object, ...], list[Any]] = {}
    for row in rows:
        (single,) = price_spend(groups([row]), by, MANY, "CNY")
        alone.setdefault(tuple(single.keys.values()), []).append(single)
    assert set(together) == set(alone)
    for key, parts in alone.items():
        row = together[key]
        assert row.requests == sum(p.requests for p in parts)
        assert row.input_tokens == sum(p.input_tokens for p in parts)
        priced = [p.cost.amount for p in parts if p.cost is not None]
        assert (row.cost.amount if row.cost else None) == (sum(priced) if priced else None)
        billed = [p.billed_cost.amount for p in parts if p.billed_cost is not None]
        assert (row.billed_cost.amount if row.billed_cost else None) == (sum(billed) if billed else None)
        assert set(row.unpriced_models) == {m for p in parts for m in p.unpriced_models}
        assert row.unpriced_requests == sum(p.unpriced_requests for p in parts)
        assert set(row.price_versions) == {v for p in parts for v in p.price_versions}
        assert set(row.periods) == {v for p in parts for v in p.periods}


def test_discounted_cost_is_the_part_priced_in_cheaper_hours() -> None:
    # DeepSeek-style: an off-peak window at half price; the rest of the day is the dearest
    off_peak = version(prices=Prices(d(4), d(16)), windows=(window(990, 30),), currency="CNY")
    # a peak window dearer than the list price: the hours outside it are the cheaper ones
    peak = PriceWindow("peak", (TimeSpan(60, 120),), d("1.5"))
    peaked = version(prices=Prices(d(2), d(8)), windows=(peak,), base_period="off-peak", currency="CNY")
    catalog = Catalog(
        {
            "o/off": offer("o/off", "deepseek", "ds-off", off_peak),
            "o/peak": offer("o/peak", "deepseek", "ds-peak", peaked),
            "o/cny": CNY,
        },
        FX,
    )
    at = {
        "off-peak": datetime(2025, 3, 1, 17),
        "day": datetime(2025, 3, 1, 10),
        "peak": datetime(2025, 3, 1, 1),
    }
    frame = groups(
        [
            {"provider": "deepseek", "model": "ds-off", "bucket": at["off-peak"], "input_tokens": 1_000_000},
            {"provider": "deepseek", "model": "ds-off", "bucket": at["day"], "input_tokens": 1_000_000},
            {"provider": "deepseek", "model": "ds-peak", "bucket": at["peak"], "input_tokens": 1_000_000},
            {"provider": "deepseek", "model": "ds-peak", "bucket": at["day"], "input_tokens": 1_000_000},
            {"provider": "deepseek", "model": "ds-x", "bucket": at["day"], "input_tokens": 1_000_000},
        ]
    )
    (row,) = price_spend(frame, (), catalog)
    # 2 (off-peak, half of 4) + 4 (list) + 3 (peak, 1.5 x 2) + 2 (outside the peak) + 4 (no windows)
    assert row.cost == Money(d(15), "CNY")
    assert row.discounted_cost == Money(d(2 + 2), "CNY")
    assert row.to_json()["discounted_cost"] == {"amount": "4", "currency": "CNY"}
    (plain,) = price_spend(frame.filter(pl.col("model") == "ds-x"), (), catalog)
    assert plain.discounted_cost == Money(d(0), "CNY")  # priced, none of it in cheaper hours
