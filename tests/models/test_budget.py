"""Budgets, alerts, budget lines and off-peak advice, worked by hand."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from models.budget import (
    Budget,
    alert_due,
    as_of_for,
    budget_in,
    budget_line,
    budget_status,
    budgets_for,
    forecast_band,
    offpeak_advice,
    parse_scope,
    status_document,
)
from models.catalog import Catalog, Offer, Prices, PriceWindow, TimeSpan
from models.errors import InputError
from models.forecast import forecast_month
from models.money import FxRate, FxTable, Money
from tests.models.factories import d, version

NOV = date(2026, 11, 1)


def steady(amount: int = 10) -> dict[date, Decimal]:
    return {NOV + timedelta(days=i): Decimal(amount) for i in range(10)}


def test_scopes() -> None:
    assert parse_scope("total") == ("total", None)
    assert parse_scope("team=search") == ("team", "search")
    assert parse_scope(" project = helpdesk ") == ("project", "helpdesk")
    for wrong in ("team=", "user=x", "everything"):
        with pytest.raises(InputError, match="total, team=NAME or project=NAME"):
            parse_scope(wrong)
    with pytest.raises(InputError, match="positive"):
        Budget("total", None, Decimal(0), "USD")
    with pytest.raises(InputError, match="http"):
        Budget("total", None, Decimal(1), "USD", webhook_url="ftp://x")


def test_a_months_own_budget_replaces_the_standing_one() -> None:
    standing = Budget("total", None, d(1000), "USD", budget_id=1)
    november = Budget("total", None, d(500), "USD", NOV, budget_id=2)
    team = Budget("team", "search", d(100), "USD", budget_id=3)
    assert budgets_for([standing, november, team], NOV) == [november, team]
    assert budgets_for([standing, november, team], date(2026, 12, 1)) == [standing, team]


def test_one_alert_at_the_highest_threshold_spent_or_forecast() -> None:
    # 100 spent as of Nov 11, 300 forecast
    f = forecast_month(steady(), NOV, datetime(2026, 11, 11), "USD")
    # 100 / 120 = 83 %: the 80 % line is spent, but the forecast (250 %) crosses 100 %: one alert, at 100 %
    alert = alert_due(Budget("total", None, d(120), "USD"), f)
    assert alert is not None and (alert.threshold, alert.kind) == (1, "forecast")
    assert alert.message == (
        "total 2026-11: forecast to end the month at 300.00 USD (250 %) of the 120.00 USD budget "
        "(threshold 100 %); spent 100.00 USD (83 %) so far"
    )
    # spent past the highest line: the alert says spent, with the forecast beside it
    spent = alert_due(Budget("total", None, d(90), "USD"), f)
    assert spent is not None and (spent.threshold, spent.kind) == (1, "spent")
    assert spent.message.startswith("total 2026-11: spent 100.00 USD (111 %) of the 90.00 USD budget")
    # forecast 300 of 330 = 91 %: only the 80 % line, forecast
    low = alert_due(Budget("total", None, d(330), "USD"), f)
    assert low is not None and (low.threshold, low.kind) == (d("0.8"), "forecast")
    assert alert_due(Budget("total", None, d(1000), "USD"), f) is None
    # graver: a higher threshold, then spent over forecast at the same one
    assert spent.rank > alert.rank > low.rank


def test_a_budget_shown_in_another_currency_names_the_dated_rate() -> None:
    fx = FxTable(
        (
            FxRate("USD", "CNY", d("7.3"), date(2025, 2, 1), "a"),
            FxRate("USD", "CNY", d("6.8"), date(2026, 11, 1), "b"),
        )
    )
    budget = Budget("total", None, d(6800), "CNY", budget_id=1)
    converted, rate = budget_in(budget, "USD", fx, date(2026, 11, 20))
    assert (converted.amount, converted.currency, converted.budget_id) == (d(1000), "USD", 1)
    assert rate is not None and rate.as_of == date(2026, 11, 1)
    assert budget_in(budget, "USD", fx, date(2026, 10, 31))[0].amount == d(6800) / d("7.3")
    assert budget_in(budget, "CNY", fx, date(2026, 11, 20)) == (budget, None)
    f = forecast_month(steady(), NOV, datetime(2026, 11, 11), "USD")
    status = budget_status(converted, f, rate=rate, set_as=Money(d(6800), "CNY"))
    assert status.describe_amount() == "1,000.00 USD (6,800.00 CNY at 1 USD = 6.8 CNY of 2026-11-01)"
    assert status.share_spent == d("0.1")


def test_status_band_and_budget_line() -> None:
    budget = Budget("total", None, d(240), "USD", budget_id=7)
    status = budget_status(budget, forecast_month(steady(), NOV, datetime(2026, 11, 11), "USD"))
    assert status.exhausted_on == date(2026, 11, 24) and status.exhausted_between == (date(2026, 11, 24),) * 2
    assert status.share_spent == Decimal(100) / 240
    band = forecast_band(status)
    assert band.columns == ["date", "actual_cumulative", "forecast", "low", "high", "budget", "pro_rata"]
    assert band.height == 30 and band["budget"].to_list() == [240] * 30
    assert band["pro_rata"][-1] == 240 and band["pro_rata"][0] == 8
    doc = status_document(status)
    assert doc["spent"] == {"amount": "100.00", "currency": "USD"} and doc["exhausted_on"] == date(
        2026, 11, 24
    )
    with pytest.raises(InputError, match="CNY"):
        budget_status(Budget("total", None, d(1), "CNY"), status.forecast)
    line = budget_line(budget, date(2026, 2, 1))
    assert line.height == 28 and line["pro_rata"][13] == 120


def test_as_of_is_clamped_to_the_month() -> None:
    assert as_of_for(NOV, datetime(2026, 11, 5, 12)) == datetime(2026, 11, 5, 12)
    assert as_of_for(NOV, datetime(2026, 12, 2)) == datetime(2026, 11, 30, 23, 59, 59)
    assert as_of_for(NOV, datetime(2026, 10, 2)) == datetime(2026, 11, 1)


def test_offpeak_advice_moves_peak_traffic_to_the_cheapest_hours() -> None:
    # DeepSeek-flash style: base hours are off-peak, 01:00–04:00 and 06:00–10:00 UTC on weekdays cost ×2
    peak = PriceWindow("peak", (TimeSpan(60, 240), TimeSpan(360, 600)), d(2), frozenset(range(5)))
    flash = Offer(
        "ds/flash",
        "deepseek",
        "deepseek-flash",
        "flash",
        (
            version(
                prices=Prices(input=d(1), output=d(4)),
                windows=(peak,),
                base_period="off-peak",
                currency="CNY",
            ),
        ),
    )
    catalog = Catalog({flash.id: flash}, FxTable((FxRate("USD", "CNY", d(8), NOV, "test"),)))
    # price groups as the spend report sums them: Monday 02:00 is peak, Monday 12:00 and Saturday 02:00
    # off-peak; 1M input tokens each; plus a model no offer prices
    groups = pl.DataFrame(
        {
            "provider": ["deepseek", "deepseek", "deepseek", "nobody"],
            "model": ["deepseek-flash", "deepseek-flash", "deepseek-flash", "mystery"],
            "bucket": [
                datetime(2026, 11, 2, 2),
                datetime(2026, 11, 2, 12),
                datetime(2026, 11, 7, 2),
                datetime(2026, 11, 2, 2),
            ],
            "input_each": [0, 0, 0, 0],
            "requests": [10, 10, 10, 5],
            "input_tokens": [1_000_000] * 4,
            "cached_input_tokens": [0] * 4,
            "cache_write_tokens": [0] * 4,
            "output_tokens": [0] * 4,
            "reasoning_tokens": [0] * 4,
        }
    )
    advice = offpeak_advice(groups, catalog, "CNY")
    # ¥2 + ¥1 + ¥1 spent; the peak ¥2 would have cost ¥1 off-peak
    assert advice.total == 4 and advice.saving == 1 and advice.share == Decimal("0.25")
    assert [(s.period, s.cheapest, s.spend) for s in advice.savings] == [("peak", "off-peak", 2)]
    assert advice.unpriced_requests == 5
    in_usd = offpeak_advice(groups, catalog, "USD")
    assert in_usd.saving == Decimal(1) / 8 and in_usd.currency == "USD"
