"""Month-end forecasts worked by hand."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import NormalDist

import pytest

from models.errors import InputError
from models.forecast import daily_mapping, forecast_month, month_days, parse_month

NOV = date(2026, 11, 1)  # a Sunday


def days(start: date, end: date, amount: Decimal | int) -> dict[date, Decimal]:
    out = {}
    day = start
    while day <= end:
        out[day] = Decimal(amount)
        day += timedelta(days=1)
    return out


def test_steady_spend_projects_exactly_and_runs_out_on_the_day() -> None:
    # ¥10 a day for ten days, as of Nov 11 00:00: 100 spent, 20 days × 10 to come
    f = forecast_month(days(NOV, date(2026, 11, 10), 10), NOV, datetime(2026, 11, 11), "CNY")
    assert f.spent == 100 and f.forecast == 300 and f.low == 300 and f.high == 300
    assert not f.shaped  # ten days are too few for a weekly shape
    assert f.exhausted_on(Decimal(250)) == date(2026, 11, 25)
    assert f.exhausted_on(Decimal(301)) is None
    row = f.days.filter(f.days["date"] == date(2026, 11, 10)).row(0, named=True)
    assert row["actual"] == 10 and row["actual_cumulative"] == 100 and row["forecast"] == 100
    # today so far, then nothing known
    cumulative = dict(zip(f.days["date"], f.days["actual_cumulative"], strict=True))
    assert cumulative[date(2026, 11, 11)] == 100 and cumulative[date(2026, 11, 12)] is None


def test_the_weekly_shape_carries_weekday_only_spend() -> None:
    # four weeks of $10 on weekdays and nothing at weekends, as of Monday Nov 23 00:00
    history = {
        d: Decimal(10 if d.weekday() < 5 else 0)
        for d in (date(2026, 10, 26) + timedelta(days=i) for i in range(28))
    }
    f = forecast_month(history, NOV, datetime(2026, 11, 23), "USD")
    assert f.shaped
    # weekdays 10 over a mean of 50/7: factor 1.4; weekends 0
    assert [round(x, 20) for x in f.weekday_factors] == [Decimal("1.4")] * 5 + [Decimal(0)] * 2
    # spent: 15 weekdays from Nov 2 to 20; to come: Nov 23–27 and 30 = 6 weekdays
    assert f.spent == 150
    assert f.forecast == pytest.approx(Decimal(210), abs=Decimal("1e-20"))
    assert f.high - f.low < Decimal("1e-20")  # every weekday alike: no noise


def test_the_interval_adds_daily_noise_and_level_uncertainty() -> None:
    # ten days alternating 8 and 12 (no shape yet): level 10, sample variance 40 / 9
    history = {NOV + timedelta(days=i): Decimal(8 if i % 2 == 0 else 12) for i in range(10)}
    f = forecast_month(history, NOV, datetime(2026, 11, 11), "USD", confidence=Decimal("0.9"))
    remaining = 20
    variance = Decimal(40) / 9
    spread = (
        Decimal(str(NormalDist().inv_cdf(0.95)))
        * (remaining * variance + remaining**2 * variance / 10).sqrt()
    )
    assert f.forecast == 300
    assert f.high == pytest.approx(300 + spread, abs=Decimal("1e-18"))
    assert f.low == pytest.approx(300 - spread, abs=Decimal("1e-18"))
    # a wider confidence widens it
    wider = forecast_month(history, NOV, datetime(2026, 11, 11), "USD", confidence=Decimal("0.99"))
    assert wider.high > f.high and wider.low < f.low


def test_today_counts_what_is_spent_and_the_rest_of_the_day() -> None:
    history = days(NOV, date(2026, 11, 10), 10)
    history[date(2026, 11, 11)] = Decimal(4)  # so far today
    f = forecast_month(history, NOV, datetime(2026, 11, 11, 12), "USD")
    # 100 + 4 spent; half of today's 10 still to come, then 19 days × 10
    assert f.spent == 104 and f.forecast == 104 + 5 + 190


def test_a_finished_month_is_what_it_spent() -> None:
    f = forecast_month(days(NOV, date(2026, 11, 30), 3), NOV, datetime(2026, 12, 5), "USD")
    assert f.spent == f.forecast == f.low == f.high == 90


def test_no_history_forecasts_only_what_is_spent() -> None:
    f = forecast_month({}, NOV, datetime(2026, 11, 5), "USD")
    assert f.spent == 0 and f.forecast == 0 and f.exhausted_on(Decimal(1)) is None


def test_months_and_mistakes() -> None:
    assert parse_month("2026-11") == NOV and parse_month("2026-02-14") == date(2026, 2, 1)
    assert len(month_days(date(2028, 2, 1))) == 29
    with pytest.raises(InputError, match="2026-11"):
        parse_month("November")
    with pytest.raises(InputError, match="confidence"):
        forecast_month({}, NOV, datetime(2026, 11, 5), "USD", confidence=Decimal(1))
    import polars as pl

    frame = pl.DataFrame({"day": [NOV], "amount": [Decimal("1.5")]})
    assert daily_mapping(frame) == {NOV: Decimal("1.5")}
