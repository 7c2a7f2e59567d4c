"""Budgets, their alerts, and the spend they are measured against.

Spend per day is the spend report's (`storage.reports.spend_report` grouped by day), so a budget and
`quotascope report spend` never disagree about what was spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from models.budget import Budget, BudgetStatus, as_of_for, budget_in, budget_status, budgets_for
from models.catalog import Catalog
from models.forecast import HISTORY_DAYS, daily_mapping, forecast_month, month_days
from models.money import Money
from storage.db import open_read, open_write, query_frame
from storage.replay import ALL_USAGE, UsageFilter
from storage.reports import spend_report
from storage.store import StoreLike, as_store

NO_BUDGETS_HINT = "set one with `quotascope budget set --scope total --amount 1000 --currency USD`"
_BUDGET_COLUMNS = "budget_id, scope, scope_value, month, amount, currency, webhook_url"


def _budget(row: tuple[Any, ...]) -> Budget:
    budget_id, scope, value, month, amount, currency, webhook = row
    return Budget(scope, value, Decimal(amount), currency, month, webhook, budget_id)


def save_budget(path: Path, budget: Budget, now: datetime) -> Budget:
    """Create the budget, or replace the amount, currency and webhook of the one with the same scope and
    month. Returns it with its id."""
    with open_write(path) as con:
        found = con.execute(
            "SELECT budget_id FROM budgets WHERE scope = ? AND scope_value IS NOT DISTINCT FROM ? "
            "AND month IS NOT DISTINCT FROM ?",
            [budget.scope, budget.scope_value, budget.month],
        ).fetchone()
        if found:
            budget_id = int(found[0])
            con.execute(
                "UPDATE budgets SET amount = ?, currency = ?, webhook_url = ?, updated_at = ? "
                "WHERE budget_id = ?",
                [budget.amount, budget.currency, budget.webhook_url, now, budget_id],
            )
        else:
            row = con.execute(
                "INSERT INTO budgets (scope, scope_value, month, amount, currency, webhook_url, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING budget_id",
                [
                    budget.scope,
                    budget.scope_value,
                    budget.month,
                    budget.amount,
                    budget.currency,
                    budget.webhook_url,
                    now,
                    now,
                ],
            ).fetchone()
            assert row is not None
            budget_id = int(row[0])
    return Budget(
        budget.scope,
        budget.scope_value,
        budget.amount,
        budget.currency,
        budget.month,
        budget.webhook_url,
        budget_id,
    )


def read_budgets(path: Path) -> list[Budget]:
    if not Path(path).exists():
        return []
    with open_read(path, missing_hint=NO_BUDGETS_HINT) as con:
        rows = con.execute(f"SELECT {_BUDGET_COLUMNS} FROM budgets ORDER BY budget_id").fetchall()
    return [_budget(row) for row in rows]


def remove_budget(path: Path, budget_id: int) -> bool:
    with open_write(path) as con:
        row = con.execute(
            "DELETE FROM budgets WHERE budget_id = ? RETURNING budget_id", [budget_id]
        ).fetchone()
    return row is not None


def budgets_frame(path: Path) -> pl.DataFrame:
    """Every budget: `budget_id`, `scope`, `scope_value`, `month` (null: every month), `amount`,
    `currency`, `webhook_url`."""
    budgets = read_budgets(path)
    return pl.DataFrame(
        [
            {
                "budget_id": b.budget_id,
                "scope": b.scope,
                "scope_value": b.scope_value,
                "month": b.month,
                "amount": b.amount,
                "currency": b.currency,
                "webhook_url": b.webhook_url,
            }
            for b in budgets
        ],
        schema={
            "budget_id": pl.Int64(),
            "scope": pl.String(),
            "scope_value": pl.String(),
            "month": pl.Date(),
            "amount": pl.Decimal(20, 6),
            "currency": pl.String(),
            "webhook_url": pl.String(),
        },
    )


# ------------------------------------------------------------------------------------------ alerts


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    alert_id: int
    budget: Budget
    month: date
    threshold: Decimal
    kind: str
    message: str
    spent: Decimal
    forecast: Decimal

    def payload(self) -> dict[str, Any]:
        """What a webhook receives (JSON): no usage content, only the budget's figures."""
        return {
            "alert_id": self.alert_id,
            "scope": self.budget.label,
            "month": f"{self.month:%Y-%m}",
            "threshold": float(self.threshold),
            "kind": self.kind,
            "spent": f"{self.spent.quantize(Decimal('0.01'))}",
            "forecast": f"{self.forecast.quantize(Decimal('0.01'))}",
            "budget": f"{self.budget.amount.quantize(Decimal('0.01'))}",
            "currency": self.budget.currency,
            "text": self.message,
        }


def record_alerts(path: Path, status: BudgetStatus, raised_at: datetime) -> list[RaisedAlert]:
    """Store the status's alert if it is graver than every one raised for this budget and month (a higher
    threshold, or spent where only a forecast was raised), and return it: one alert per budget and month
    at the highest threshold crossed, raised again only when it escalates."""
    budget, forecast, alert = status.budget, status.forecast, status.alert
    assert budget.budget_id is not None
    if alert is None:
        return []
    with open_write(path) as con:
        raised_before = con.execute(
            "SELECT threshold, kind FROM alerts WHERE budget_id = ? AND month = ?",
            [budget.budget_id, forecast.month],
        ).fetchall()
        if any((Decimal(t), k == "spent") >= alert.rank for t, k in raised_before):
            return []
        row = con.execute(
            "INSERT INTO alerts (budget_id, scope, month, threshold, kind, spent, forecast, "
            "budget_amount, currency, message, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING alert_id",
            [
                budget.budget_id,
                budget.label,
                forecast.month,
                alert.threshold,
                alert.kind,
                forecast.spent,
                forecast.forecast,
                budget.amount,
                budget.currency,
                alert.message,
                raised_at,
            ],
        ).fetchone()
    assert row is not None
    return [
        RaisedAlert(
            int(row[0]),
            budget,
            forecast.month,
            alert.threshold,
            alert.kind,
            alert.message,
            forecast.spent,
            forecast.forecast,
        )
    ]


def set_webhook_status(path: Path, statuses: dict[int, str]) -> None:
    if not statuses:
        return
    with open_write(path) as con:
        for alert_id, status in statuses.items():
            con.execute("UPDATE alerts SET webhook_status = ? WHERE alert_id = ?", [status, alert_id])


def read_alerts(path: Path, month: date | None = None, selection: UsageFilter = ALL_USAGE) -> pl.DataFrame:
    """Alerts raised, newest first: `alert_id`, `budget_id`, `scope`, `month`, `threshold`, `kind`, `spent`,
    `forecast`, `budget_amount`, `currency`, `message`, `raised_at`, `webhook_status`. Under a scope
    (`selection.teams`) only the alerts of those teams' budgets (`visible_budget`)."""
    clauses: list[str] = []
    params: list[Any] = []
    if month is not None:
        clauses.append("month = ?")
        params.append(month)
    if selection.teams is not None:
        labels = [f"team={t}" for t in selection.teams]
        clauses.append(f"scope IN ({', '.join('?' * len(labels))})" if labels else "FALSE")
        params.extend(labels)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        "SELECT alert_id, budget_id, scope, month, threshold, kind, spent, forecast, budget_amount, "
        f"currency, message, raised_at, webhook_status FROM alerts {where} "
        "ORDER BY raised_at DESC, alert_id DESC"
    )
    if not Path(path).exists():
        return pl.DataFrame(
            schema={
                "alert_id": pl.Int64(),
                "budget_id": pl.Int64(),
                "scope": pl.String(),
                "month": pl.Date(),
                "threshold": pl.Decimal(6, 4),
                "kind": pl.String(),
                "spent": pl.Decimal(20, 6),
                "forecast": pl.Decimal(20, 6),
                "budget_amount": pl.Decimal(20, 6),
                "currency": pl.String(),
                "message": pl.String(),
                "raised_at": pl.Datetime("us"),
                "webhook_status": pl.String(),
            }
        )
    with open_read(path) as con:
        frame = query_frame(con, sql, params)
    return frame


# ------------------------------------------------------------------------------------------ spend


@dataclass(frozen=True)
class DailySpend:
    """Spend per day in one currency (`daily`: `day`, `amount`) and the requests no catalog price covers."""

    daily: pl.DataFrame
    unpriced_by_day: dict[date, int]

    def unpriced_since(self, day: date) -> int:
        return sum(n for d, n in self.unpriced_by_day.items() if d >= day)


def read_daily_spend(path: StoreLike, catalog: Catalog, currency: str, selection: UsageFilter) -> DailySpend:
    """The spend report by day (`storage.reports.spend_report`), as the series a forecast takes."""
    rows = spend_report(path, catalog, selection, ("day",), currency)
    priced = [(row.keys["day"], row.cost.amount) for row in rows if row.cost is not None]
    daily = pl.DataFrame(
        {"day": [d for d, _ in priced], "amount": [a for _, a in priced]},
        schema={"day": pl.Date(), "amount": pl.Decimal(38, 12)},
    )
    return DailySpend(
        daily, {row.keys["day"]: row.unpriced_requests for row in rows if row.unpriced_requests}
    )


def visible_budget(budget: Budget, selection: UsageFilter) -> bool:
    """Whether a viewer scoped to `selection.teams` may see the budget: a team's budget to that team's
    viewers; the total and project budgets (measured over every team) to all-teams viewers only."""
    if selection.teams is None:
        return True
    return budget.scope == "team" and budget.scope_value in selection.teams


def budget_statuses(
    path: StoreLike,
    catalog: Catalog,
    month: date,
    now: datetime,
    *,
    confidence: Decimal = Decimal("0.9"),
    currency: str | None = None,
    selection: UsageFilter = ALL_USAGE,
) -> list[BudgetStatus]:
    """Every budget in force for `month` (that `selection`'s scope may see: `visible_budget`) with its
    spend, forecast and the alert due, as of `now` (clamped to the month). Read-only: the dashboard calls
    this; `quotascope budget status` then records the alerts.

    In each budget's own currency, or with `currency` all in that one: the budget converted with the
    catalog's rate in force on the as-of day (the status names it), the spend priced in it as the spend
    report prices it, so a page never sets a figure in one currency beside a budget in another."""
    as_of = as_of_for(month, now)
    budgets = [b for b in budgets_for(read_budgets(as_store(path).db), month) if visible_budget(b, selection)]
    since = datetime.combine(min(month, as_of.date() - timedelta(days=HISTORY_DAYS)), datetime.min.time())
    until = min(as_of, datetime.combine(month_days(month)[-1] + timedelta(days=1), datetime.min.time()))
    statuses = []
    for own in budgets:
        budget, rate = budget_in(own, currency, catalog.fx, as_of.date()) if currency else (own, None)
        team = budget.scope_value if budget.scope == "team" else None
        project = budget.scope_value if budget.scope == "project" else None
        spend = read_daily_spend(
            path, catalog, budget.currency, UsageFilter(since, until, team=team, project=project)
        )
        forecast = forecast_month(
            daily_mapping(spend.daily), month, as_of, budget.currency, confidence=confidence
        )
        set_as = None if rate is None else Money(own.amount, own.currency)
        statuses.append(
            budget_status(budget, forecast, spend.unpriced_since(month), rate=rate, set_as=set_as)
        )
    return statuses
