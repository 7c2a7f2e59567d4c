"""Monthly budgets per team, project or in total: status against the forecast, threshold alerts, the
budget line the dashboard draws, and off-peak advice (what moving batch traffic would have saved)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import polars as pl

from models.catalog import Catalog
from models.errors import InputError
from models.forecast import MONEY, SpendForecast, month_days
from models.money import FxRate, FxTable, Money, format_amount
from models.pricing import TokenCounts, classify_usage, period_levels

ScopeKind = Literal["total", "team", "project"]
THRESHOLDS: tuple[Decimal, ...] = (Decimal("0.8"), Decimal("0.95"), Decimal(1))
AlertKind = Literal["spent", "forecast"]


def parse_scope(text: str) -> tuple[ScopeKind, str | None]:
    """`total`, `team=NAME` or `project=NAME`."""
    raw = text.strip()
    if raw == "total":
        return "total", None
    kind, sep, value = raw.partition("=")
    if sep and kind.strip() in ("team", "project") and value.strip():
        return kind.strip(), value.strip()  # type: ignore[return-value]
    raise InputError(f"a budget scope is total, team=NAME or project=NAME; got {text!r}")


@dataclass(frozen=True, slots=True)
class Budget:
    scope: ScopeKind
    scope_value: str | None
    amount: Decimal
    currency: str
    month: date | None = None  # its first day; None: every month
    webhook_url: str | None = None
    budget_id: int | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise InputError(f"a budget must be positive, got {self.amount}")
        if (self.scope == "total") != (self.scope_value is None):
            raise InputError("a total budget has no team or project; a team or project budget names one")
        if self.webhook_url is not None and not self.webhook_url.startswith(("http://", "https://")):
            raise InputError(f"a webhook is an http:// or https:// URL, got {self.webhook_url!r}")

    @property
    def label(self) -> str:
        return "total" if self.scope == "total" else f"{self.scope}={self.scope_value}"

    @property
    def month_label(self) -> str:
        return "every month" if self.month is None else f"{self.month:%Y-%m}"


def budgets_for(budgets: Sequence[Budget], month: date) -> list[Budget]:
    """The budgets in force for `month`: one set for that month replaces the standing one of its scope."""
    chosen: dict[tuple[str, str | None], Budget] = {}
    for budget in budgets:
        key = (budget.scope, budget.scope_value)
        if budget.month == month or (budget.month is None and key not in chosen):
            chosen[key] = budget
    order = {"total": 0, "team": 1, "project": 2}
    return sorted(chosen.values(), key=lambda b: (order[b.scope], b.scope_value or ""))


@dataclass(frozen=True, slots=True)
class Alert:
    threshold: Decimal  # 0.8 = 80 %
    kind: AlertKind  # spent: already spent; forecast: projected by month end
    message: str

    @property
    def rank(self) -> tuple[Decimal, bool]:
        """Higher is graver: a higher threshold, and at the same threshold spent before forecast."""
        return self.threshold, self.kind == "spent"


@dataclass(frozen=True)
class BudgetStatus:
    """A budget against the month's spend and forecast, all in one currency: the budget's own, or a display
    currency the budget was converted to (`rate` says with which published rate; `set_as` is the budget as
    it was set)."""

    budget: Budget
    forecast: SpendForecast
    alert: Alert | None  # the highest threshold reached, by the spend or by the forecast; None below all
    unpriced_requests: float = 0.0
    rate: FxRate | None = None
    set_as: Money | None = None

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return () if self.alert is None else (self.alert,)

    @property
    def share_spent(self) -> Decimal:
        return self.forecast.spent / self.budget.amount

    @property
    def share_forecast(self) -> Decimal:
        return self.forecast.forecast / self.budget.amount

    @property
    def exhausted_on(self) -> date | None:
        return self.forecast.exhausted_on(self.budget.amount)

    @property
    def exhausted_between(self) -> tuple[date | None, date | None]:
        """Earliest (the band's high edge) and latest (its low edge) day the budget runs out this month."""
        amount = self.budget.amount
        return self.forecast.exhausted_on(amount, "high"), self.forecast.exhausted_on(amount, "low")

    def describe_amount(self) -> str:
        """The budget in the status's currency, and as it was set with the rate when it was converted:
        `2,200.03 USD (15,000.00 CNY at 1 USD = 6.818 CNY of 2026-11-01)`."""
        shown = f"{format_amount(self.budget.amount, 2)} {self.budget.currency}"
        if self.rate is None or self.set_as is None:
            return shown
        own = f"{format_amount(self.set_as.amount, 2)} {self.set_as.currency}"
        return f"{shown} ({own} at {self.rate.short()})"


def _percent(share: Decimal) -> str:
    return f"{share * 100:.0f} %"


def alert_due(
    budget: Budget, forecast: SpendForecast, thresholds: Sequence[Decimal] = THRESHOLDS
) -> Alert | None:
    """The one alert a budget's month calls for: at the highest threshold reached, already spent if the
    spend reached it, else forecast by month end (None below every threshold). Lower thresholds are implied
    by it: three alerts with one forecast say nothing the highest does not."""
    where = f"{budget.label} {forecast.month:%Y-%m}"
    of_budget = f"of the {format_amount(budget.amount, 2)} {budget.currency} budget"
    spent = (
        f"spent {format_amount(forecast.spent, 2)} {budget.currency} "
        f"({_percent(forecast.spent / budget.amount)})"
    )
    end = (
        f"forecast to end the month at {format_amount(forecast.forecast, 2)} {budget.currency} "
        f"({_percent(forecast.forecast / budget.amount)})"
    )
    for threshold in sorted(thresholds, reverse=True):
        line = budget.amount * threshold
        at = f"(threshold {_percent(threshold)})"
        if forecast.spent >= line:
            return Alert(threshold, "spent", f"{where}: {spent} {of_budget} {at}; {end}")
        if forecast.forecast >= line:
            return Alert(threshold, "forecast", f"{where}: {end} {of_budget} {at}; {spent} so far")
    return None


def budget_status(
    budget: Budget,
    forecast: SpendForecast,
    unpriced_requests: float = 0.0,
    *,
    rate: FxRate | None = None,
    set_as: Money | None = None,
) -> BudgetStatus:
    if forecast.currency != budget.currency:
        raise InputError(f"the forecast is in {forecast.currency}, the budget in {budget.currency}")
    return BudgetStatus(budget, forecast, alert_due(budget, forecast), unpriced_requests, rate, set_as)


def budget_in(budget: Budget, currency: str, fx: FxTable, on: date) -> tuple[Budget, FxRate | None]:
    """The budget in `currency`, converted with the catalog's rate in force `on` (None: no conversion)."""
    conversion = fx.convert(Money(budget.amount, budget.currency), currency, on)
    if conversion.rate is None:
        return budget, None
    converted = replace(budget, amount=conversion.money.amount, currency=currency)
    return converted, conversion.rate


def budget_line(budget: Budget, month: date) -> pl.DataFrame:
    """The budget drawn against cumulative spend: `date`, `budget` (flat) and `pro_rata` (budget × days
    elapsed / days in the month, the pace that ends exactly on budget)."""
    days = month_days(month)
    return pl.DataFrame(
        {
            "date": days,
            "budget": [budget.amount] * len(days),
            "pro_rata": [budget.amount * (i + 1) / len(days) for i in range(len(days))],
        },
        schema={"date": pl.Date(), "budget": MONEY, "pro_rata": MONEY},
    )


def forecast_band(status: BudgetStatus) -> pl.DataFrame:
    """The forecast band with the budget lines beside it: `date`, `actual_cumulative`, `forecast`, `low`,
    `high`, `budget`, `pro_rata` (money columns in the budget's currency)."""
    band = status.forecast.days.select("date", "actual_cumulative", "forecast", "low", "high")
    return band.join(budget_line(status.budget, status.forecast.month), on="date", how="left")


def status_document(status: BudgetStatus) -> dict[str, Any]:
    f = status.forecast
    earliest, latest = status.exhausted_between
    currency = status.budget.currency

    def money(value: Decimal) -> dict[str, str]:
        return {"amount": f"{value.quantize(Decimal('0.01'))}", "currency": currency}

    return {
        "budget_id": status.budget.budget_id,
        "scope": status.budget.label,
        "month": f"{f.month:%Y-%m}",
        "budget": money(status.budget.amount),
        "spent": money(f.spent),
        "share_spent": float(round(status.share_spent, 4)),
        "forecast": {
            **money(f.forecast),
            "low": f"{f.low.quantize(Decimal('0.01'))}",
            "high": f"{f.high.quantize(Decimal('0.01'))}",
            "confidence": float(f.confidence),
        },
        "share_forecast": float(round(status.share_forecast, 4)),
        "exhausted_on": status.exhausted_on,
        "exhausted_between": [earliest, latest],
        "weekly_shape": None if not f.shaped else [float(round(x, 3)) for x in f.weekday_factors],
        "history_days": f.history_days,
        "unpriced_requests": round(status.unpriced_requests),
        "alerts": [
            {"threshold": float(a.threshold), "kind": a.kind, "message": a.message} for a in status.alerts
        ],
        "as_of": f.as_of,
    }


# ------------------------------------------------------------------------------------------ off-peak


@dataclass(frozen=True)
class OffPeakSaving:
    offer_id: str
    period: str  # the period the traffic was priced in
    cheapest: str  # the offer's cheapest period
    spend: Decimal  # what it cost in `period`
    saving: Decimal  # what moving it to `cheapest` would have saved (same promotions and tiers)


@dataclass(frozen=True)
class OffPeakAdvice:
    currency: str
    total: Decimal  # all priced spend of the selection
    savings: tuple[OffPeakSaving, ...]
    unpriced_requests: int = 0

    @property
    def saving(self) -> Decimal:
        return sum((s.saving for s in self.savings), Decimal(0))

    @property
    def share(self) -> Decimal:
        return self.saving / self.total if self.total else Decimal(0)


def offpeak_advice(groups: pl.DataFrame, catalog: Catalog, currency: str) -> OffPeakAdvice:
    """The spend a time-of-day window would have saved had this traffic (the batch part, as selected) run in
    each offer's cheapest period. Groups are classified and priced by the one engine (`models.pricing`); a
    period's price level relative to the others (`period_levels`) scales a group's cost.

    `groups` are price-homogeneous usage sums (`storage.reports.read_spend_groups`: `provider`, `model`,
    `bucket`, `input_each`, `requests` and the token columns); money is shown in `currency` at each day's FX.
    """
    classified = classify_usage(groups, catalog)
    versions = {v.version_id: v for o in catalog.offers.values() for v in o.versions}
    total = Decimal(0)
    unpriced = 0
    rows: dict[tuple[str, str, str], list[Decimal]] = {}
    for g in classified.frame.iter_rows(named=True):
        if g["rate"] is None:  # an unknown model, no version in force, or a version without prices
            unpriced += int(g["requests"])
            continue
        rates = classified.rates[g["rate"]]
        version = versions[rates.version_id]
        tokens = TokenCounts(
            input=int(g["input_tokens"]),
            output=int(g["output_tokens"]),
            cached_input=int(g["cached_input_tokens"]),
            cache_write=int(g["cache_write_tokens"]),
            reasoning=int(g["reasoning_tokens"]),
            cache_write_1h=int(g.get("cache_write_1h_tokens") or 0),
        )
        bucket: datetime = g["bucket"]
        amount = catalog.fx.convert(rates.cost(tokens), currency, bucket.date()).money.amount
        total += amount
        levels = period_levels(version)
        cheapest = min(levels, key=lambda name: levels[name])
        current = levels.get(rates.period, Decimal(1))
        if current <= levels[cheapest]:
            continue
        entry = rows.setdefault((version.offer_id, rates.period, cheapest), [Decimal(0), Decimal(0)])
        entry[0] += amount
        entry[1] += amount * (1 - levels[cheapest] / current)
    savings = tuple(
        OffPeakSaving(offer_id, period, cheapest, spend, saving)
        for (offer_id, period, cheapest), (spend, saving) in sorted(rows.items())
    )
    return OffPeakAdvice(currency, total, savings, unpriced)


def as_of_for(month: date, now: datetime) -> datetime:
    """`now` inside the month; its last moment once it is over; its start before it begins."""
    days = month_days(month)
    if now.date() > days[-1]:
        return datetime.combine(days[-1], datetime.max.time()).replace(microsecond=0)
    if now.date() < days[0]:
        return datetime.combine(days[0], datetime.min.time())
    return now
