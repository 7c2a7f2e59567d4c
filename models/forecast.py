"""Month-end spend from the month so far: a weekly shape, a recent level and a prediction interval.

Daily spend is modelled as `level × weekday factor + noise`:

- the **weekday factors** are each weekday's mean spend over the mean of all days, from up to eight weeks of
  complete days before `as_of` (flat until two full weeks are known: each weekday seen at least twice);
- the **level** is the mean of the last (up to) 14 complete days with the weekly shape divided out;
- the **noise** is the standard deviation of those de-seasonalised days (one day short of it, the level
  itself: a wide band that says "too little history").

Remaining spend = today's unfinished share of its expected day + every later day's `level × factor`. Its
variance adds each day's noise (`factor² · s²`) and the level's own uncertainty (`(Σ factor)² · s² / n`);
the interval is normal at `confidence` (90 % by default) and never below what is already spent. Money is
Decimal throughout; the factors and the interval are statistics, rounded to the cent only when shown.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import NormalDist

import polars as pl

from models.errors import InputError

HISTORY_DAYS = 56  # eight weeks of complete days for the weekly shape
LEVEL_DAYS = 14  # the recent level
MIN_SHAPE_DAYS = 14  # each weekday seen twice before the shape is trusted
MONEY = pl.Decimal(38, 6)
ZERO = Decimal(0)


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_days(month: date) -> list[date]:
    first = month_start(month)
    count = calendar.monthrange(first.year, first.month)[1]
    return [first + timedelta(days=i) for i in range(count)]


def parse_month(text: str) -> date:
    """`2026-11` (or any date in it) as the month's first day."""
    try:
        year, _, rest = text.strip().partition("-")
        month = int(rest.split("-")[0])
        return date(int(year), month, 1)
    except ValueError:
        raise InputError(f"a month looks like 2026-11, got {text!r}") from None


@dataclass(frozen=True)
class SpendForecast:
    month: date  # its first day
    currency: str
    as_of: datetime
    spent: Decimal  # month to date
    forecast: Decimal  # month-end point estimate
    low: Decimal
    high: Decimal
    confidence: Decimal
    weekday_factors: tuple[Decimal, ...]  # Monday first; all 1 when the shape is not yet known
    history_days: int  # complete days the model learnt from
    days: pl.DataFrame  # date, actual, actual_cumulative, forecast, low, high (cumulative; see `band`)

    @property
    def shaped(self) -> bool:
        return any(f != 1 for f in self.weekday_factors)

    def exhausted_on(self, budget: Decimal, column: str = "forecast") -> date | None:
        """The first day cumulative spend (`forecast`, or the band's `high`/`low` edge) reaches `budget`."""
        reached = self.days.filter(pl.col(column) >= budget)
        return reached["date"][0] if reached.height else None


def _sqrt(value: Decimal) -> Decimal:
    return value.sqrt() if value > 0 else ZERO


def forecast_month(
    daily: Mapping[date, Decimal],
    month: date,
    as_of: datetime,
    currency: str,
    *,
    confidence: Decimal = Decimal("0.9"),
) -> SpendForecast:
    """Forecast `month`'s total from daily spend (`daily`: day → amount, in `currency`) known up to `as_of`.

    Days before the first day in `daily` are unknown, not zero; days after it that are missing are zero.
    """
    if not Decimal(0) < confidence < 1:
        raise InputError(f"a confidence is a share between 0 and 1, got {confidence}")
    days = month_days(month)
    today = as_of.date()
    elapsed = Decimal(as_of.hour * 3600 + as_of.minute * 60 + as_of.second) / 86400
    known = sorted(daily)
    first_known = known[0] if known else today
    history = [
        today - timedelta(days=i)
        for i in range(HISTORY_DAYS, 0, -1)
        if today - timedelta(days=i) >= first_known
    ]
    amounts = {d: daily.get(d, ZERO) for d in history}
    factors = [Decimal(1)] * 7
    if len(history) >= MIN_SHAPE_DAYS:
        overall = sum(amounts.values(), ZERO) / len(history)
        if overall > 0:
            for weekday in range(7):
                seen = [amounts[d] for d in history if d.weekday() == weekday]
                factors[weekday] = (sum(seen, ZERO) / len(seen)) / overall
    recent = [d for d in history[-LEVEL_DAYS:] if factors[d.weekday()] > 0]
    deseasonalised = [amounts[d] / factors[d.weekday()] for d in recent]
    n = len(deseasonalised)
    level = sum(deseasonalised, ZERO) / n if n else ZERO
    # with a single day of history the noise is taken as large as the level itself
    variance = sum(((x - level) ** 2 for x in deseasonalised), ZERO) / (n - 1) if n >= 2 else level**2
    z = Decimal(str(NormalDist().inv_cdf(0.5 + float(confidence) / 2)))

    rows: list[dict[str, date | Decimal | None]] = []
    point = spent = ZERO
    low = high = ZERO
    expected = ZERO  # cumulative expected spend still to come
    day_noise = ZERO  # Σ factor² · s² so far
    factor_sum = ZERO  # Σ factor so far (for the level's uncertainty)
    for day in days:
        actual: Decimal | None = None
        remaining_share = Decimal(1)
        if day < today:
            remaining_share = ZERO
        elif day == today:
            remaining_share = 1 - elapsed
        if day <= today:
            actual = daily.get(day, ZERO)
            spent += actual
        weight = factors[day.weekday()] * remaining_share
        expected += level * weight
        day_noise += weight**2 * variance
        factor_sum += weight
        spread = z * _sqrt(day_noise + factor_sum**2 * variance / n) if n else ZERO
        point = spent + expected
        low, high = max(spent, point - spread), point + spread
        rows.append(
            {
                "date": day,
                "actual": actual,
                "actual_cumulative": spent if day <= today else None,
                "forecast": point,
                "low": low,
                "high": high,
            }
        )
    schema = {
        "date": pl.Date(),
        "actual": MONEY,
        "actual_cumulative": MONEY,
        "forecast": MONEY,
        "low": MONEY,
        "high": MONEY,
    }
    frame = pl.DataFrame(rows, schema=schema)
    return SpendForecast(
        month=month_start(month),
        currency=currency,
        as_of=as_of,
        spent=spent,
        forecast=point,
        low=low,
        high=high,
        confidence=confidence,
        weekday_factors=tuple(factors),
        history_days=len(history),
        days=frame,
    )


def daily_mapping(frame: pl.DataFrame) -> dict[date, Decimal]:
    """A `day`, `amount` frame (as `models.pricing.price_units`' groups gives) as a mapping."""
    return {day: Decimal(amount) for day, amount in frame.select("day", "amount").iter_rows()}
