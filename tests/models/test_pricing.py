from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from models.capacity import CacheUse
from models.catalog import CacheRules, ContextTier, Prices, PriceWindow, Promotion, TimeSpan
from models.cost import Demand, monthly_cost, question_cost
from models.errors import InputError, UnpricedError
from models.money import FxRate, FxTable, Money
from models.pricing import TokenCounts, period_shares, price_tokens, rates_at, weighted_multiplier
from models.profile import TokenProfile
from tests.models.factories import d, version

# DeepSeek deepseek-reasoner, 2025-02: ¥1 hit / ¥4 miss / ¥16 output, off-peak 16:30–00:30 UTC at −75 %
OFF_PEAK = PriceWindow("off-peak", (TimeSpan(16 * 60 + 30, 30),), d("0.25"))
REASONER = version(
    prices=Prices(input=d(4), cached_input=d(1), output=d(16)), currency="CNY", windows=(OFF_PEAK,)
)


def test_cost_never_double_counts_cache_or_reasoning() -> None:
    tokens = TokenCounts(input=1_000_000, cached_input=600_000, output=1_000_000, reasoning=700_000)
    # 400k miss × 4 + 600k hit × 1 + 1M output × 16 (reasoning inside output)
    assert price_tokens(REASONER, tokens, datetime(2025, 3, 3, 12)) == Money(d("18.2"), "CNY")


def test_off_peak_window_wraps_midnight() -> None:
    tokens = TokenCounts(input=1_000_000)
    assert price_tokens(REASONER, tokens, datetime(2025, 3, 3, 16, 29)).amount == 4
    assert price_tokens(REASONER, tokens, datetime(2025, 3, 3, 16, 30)).amount == 1
    assert price_tokens(REASONER, tokens, datetime(2025, 3, 4, 0, 29)).amount == 1
    assert price_tokens(REASONER, tokens, datetime(2025, 3, 4, 0, 30)).amount == 4
    assert rates_at(REASONER, datetime(2025, 3, 3, 20)).period == "off-peak"


def test_weekday_peak_window_flash_style() -> None:
    # base hours are off-peak; 01:00–04:00 and 06:00–10:00 UTC Monday–Friday cost twice as much
    peak = PriceWindow("peak", (TimeSpan(60, 240), TimeSpan(360, 600)), d(2), frozenset(range(5)))
    flash = version(
        prices=Prices(input=d(1), output=d(4)), currency="CNY", windows=(peak,), base_period="off-peak"
    )
    one_m = TokenCounts(input=1_000_000)
    assert price_tokens(flash, one_m, datetime(2026, 11, 23, 2)).amount == 2  # Monday
    assert price_tokens(flash, one_m, datetime(2026, 11, 28, 2)).amount == 1  # Saturday
    assert price_tokens(flash, one_m, datetime(2026, 11, 23, 5)).amount == 1  # between the spans
    # flat demand: 7 peak hours × 5 days of 168 hours at ×2
    assert weighted_multiplier(flash) == 1 + Decimal(35) / 168
    shares = period_shares(flash)
    assert shares["peak"] == Decimal(35) / 168 and shares["off-peak"] == Decimal(133) / 168


def test_demand_weighted_window_multiplier() -> None:
    # all demand in one off-peak hour → ×0.25; all in a peak hour → ×1
    night = [0] * 24
    night[20] = 1
    day = [0] * 24
    day[9] = 1
    assert weighted_multiplier(REASONER, night) == d("0.25")
    assert weighted_multiplier(REASONER, day) == 1
    flat = weighted_multiplier(REASONER)
    assert flat == (Decimal(16) * 60 * 1 + Decimal(8) * 60 * d("0.25")) / (24 * 60)  # 16 h full, 8 h at 25 %
    with pytest.raises(InputError):
        weighted_multiplier(REASONER, [1, 2, 3])


def test_promotion_by_date() -> None:
    promo = Promotion("Feb half price", datetime(2025, 2, 1), datetime(2025, 3, 1), d("0.5"))
    ark = version(prices=Prices(input=d(4), output=d(16)), currency="CNY", promotions=(promo,))
    tokens = TokenCounts(input=1_000_000, output=1_000_000)
    assert price_tokens(ark, tokens, datetime(2025, 2, 14)).amount == 10
    assert price_tokens(ark, tokens, datetime(2025, 3, 1)).amount == 20
    assert rates_at(ark, datetime(2025, 2, 14)).promotion == "Feb half price"


def test_long_context_tier_by_request_size() -> None:
    tiered = version(
        prices=Prices(input=d(3), output=d(15)),
        tiers=(ContextTier(200_000, Prices(input=d(6), output=d("22.5"))),),
    )
    small = TokenCounts(input=200_000, output=1000)
    large = TokenCounts(input=200_001, output=1000)
    assert price_tokens(tiered, small, datetime(2025, 5, 1)).amount == d("0.615")
    assert price_tokens(tiered, large, datetime(2025, 5, 1)).amount == d("1.2000060") + d("0.0225")
    # two requests of 150k aggregated stay in the base tier
    assert rates_at(tiered, datetime(2025, 5, 1), 150_000).tier is None


def test_cache_multipliers_fill_missing_prices_anthropic() -> None:
    sonnet = version(
        prices=Prices(input=d(3), output=d(15)),
        cache=CacheRules(enabled=True, min_tokens=1024, read_multiplier=d("0.1"), write_multiplier=d("1.25")),
    )
    rates = rates_at(sonnet, datetime(2025, 10, 1))
    assert (rates.cached_input, rates.cache_write) == (d("0.3"), d("3.75"))


def test_separate_reasoning_price() -> None:
    priced = version(prices=Prices(input=d(1), output=d(2), reasoning_output=d(8)))
    tokens = TokenCounts(input=0, output=1_000_000, reasoning=250_000)
    assert price_tokens(priced, tokens, datetime(2025, 1, 2)).amount == d("1.5") + d(2)


def test_unpriced_version_raises_not_zero() -> None:
    with pytest.raises(UnpricedError):
        price_tokens(version(prices=None), TokenCounts(input=10), datetime(2025, 1, 2))


def test_token_counts_reject_nonsense() -> None:
    with pytest.raises(InputError):
        TokenCounts(input=-1)
    with pytest.raises(InputError):
        TokenCounts(input=10, cached_input=11)
    with pytest.raises(InputError):
        TokenCounts(output=10, reasoning=11)


# ---- cost of a question, FX ----------------------------------------------------------------------------

FX = FxTable(
    (
        FxRate("USD", "CNY", d("7.30"), date(2025, 1, 1), "rate A"),
        FxRate("USD", "CNY", d("7.10"), date(2025, 6, 1), "rate B"),
    )
)


def test_fx_uses_the_rate_in_force_and_either_direction() -> None:
    assert FX.rate("USD", "CNY", date(2025, 3, 1)).source == "rate A"
    assert FX.rate("USD", "CNY", date(2025, 7, 1)).source == "rate B"
    assert FX.rate("CNY", "USD", date(2024, 1, 1)).source == "rate A"  # before all: the earliest
    assert FX.convert(Money(d("71"), "CNY"), "USD", date(2025, 7, 1)).money == Money(d(10), "USD")
    assert FX.convert(Money(d(10), "USD"), "CNY", date(2025, 3, 1)).money == Money(d("73.00"), "CNY")
    with pytest.raises(InputError, match="no FX rate"):
        FX.rate("EUR", "CNY")


def test_question_cost_with_cache_window_and_fx() -> None:
    profile = TokenProfile.direct(2000, 2000, reasoning_tokens=1500)
    cache = CacheUse(d(1000), d(0), "hit-rate")
    night = [0] * 24
    night[18] = 1
    cost = question_cost(
        REASONER, profile, cache, at=datetime(2025, 3, 1), hourly_shape=night, fx=FX, display_currency="USD"
    )
    native = (1000 * d(4) + 1000 * d(1) + 2000 * d(16)) / 1_000_000 * d("0.25")
    assert cost.native == Money(native, "CNY")
    assert cost.per_question == Money(native / d("7.30"), "USD")
    assert cost.fx is not None and cost.fx.source == "rate A"
    assert cost.cache_savings == Money(1000 * d(3) * d("0.25") / 1_000_000 / d("7.30"), "USD")


def test_per_call_fees() -> None:
    priced = version(
        prices=Prices(input=d(0), output=d(0)), currency="CNY", fees_per_1k_calls={"web_search": d(5)}
    )
    profile = TokenProfile.direct(10, 10)
    cache = CacheUse(d(0), d(0), "none")
    cost = question_cost(
        priced, profile, cache, at=datetime(2026, 11, 2), fee_calls_per_question={"web_search": d(2)}
    )
    assert cost.per_question == Money(d("0.01"), "CNY")
    with pytest.raises(InputError, match="no per-call fee"):
        question_cost(
            priced, profile, cache, at=datetime(2026, 11, 2), fee_calls_per_question={"fetch": d(1)}
        )


def test_monthly_cost_from_users() -> None:
    demand = Demand.from_users(1000, 20, peak_factor=3)
    assert demand.average_per_minute == d(20000) / 1440
    assert demand.peak_per_minute == d(60000) / 1440
    assert demand.questions_per_month == 600_000
    priced = version(prices=Prices(input=d(1), output=d(1)))
    cost = question_cost(
        priced, TokenProfile.direct(500, 500), CacheUse(d(0), d(0), "none"), at=datetime(2025, 2, 1)
    )
    assert monthly_cost(cost, demand) == Money(d(600), "USD")
    with pytest.raises(InputError):
        Demand.from_users(10, 10, peak_factor=d("0.5"))
