"""Budgets, their alerts, and the spend they are measured against.

Spend is read as units for `models.repricing.price_recorded`: requests are summed per minute, provider,
model, team and project inside DuckDB (a minute is as fine as any time-of-day price window gets), except
requests large enough to reach a long-context tier, which stay as they are so each is priced at its own
size. An aggregated export row is priced at its bucket start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from models.budget import Budget, BudgetStatus
from models.catalog import Catalog
from models.repricing import RecordedCost, daily_amounts, price_recorded
from storage.db import open_read, open_write
from storage.replay import UsageFilter

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
    """Store the status's alerts not raised before (per budget, month, threshold and kind); return those."""
    budget, forecast = status.budget, status.forecast
    assert budget.budget_id is not None
    raised = []
    with open_write(path) as con:
        for alert in status.alerts:
            seen = con.execute(
                "SELECT 1 FROM alerts WHERE budget_id = ? AND month = ? AND threshold = ? AND kind = ?",
                [budget.budget_id, forecast.month, alert.threshold, alert.kind],
            ).fetchone()
            if seen:
                continue
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
            raised.append(
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
            )
    return raised


def set_webhook_status(path: Path, statuses: dict[int, str]) -> None:
    if not statuses:
        return
    with open_write(path) as con:
        for alert_id, status in statuses.items():
            con.execute("UPDATE alerts SET webhook_status = ? WHERE alert_id = ?", [status, alert_id])


def read_alerts(path: Path, month: date | None = None) -> pl.DataFrame:
    """Alerts raised, newest first: `alert_id`, `budget_id`, `scope`, `month`, `threshold`, `kind`, `spent`,
    `forecast`, `budget_amount`, `currency`, `message`, `raised_at`, `webhook_status`."""
    where, params = ("WHERE month = ?", [month]) if month is not None else ("", [])
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
        table = con.sql(sql, params=params).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


# ------------------------------------------------------------------------------------------ spend


def _smallest_tier(catalog: Catalog) -> int:
    thresholds = [t.above_input_tokens for o in catalog.offers.values() for v in o.versions for t in v.tiers]
    return min(thresholds, default=2**62)


def read_spend_units(path: Path, selection: UsageFilter, catalog: Catalog) -> pl.DataFrame:
    """Usage summed per minute, provider, model, team and project, as units `price_recorded` takes."""
    where, params = selection.where()
    tier = _smallest_tier(catalog)
    sql = f"""
        SELECT
            CASE WHEN input_tokens > ? * n_requests THEN ts ELSE date_trunc('minute', ts) END AS ts,
            provider, model, team, project,
            sum(n_requests)::DOUBLE AS w,
            sum(input_tokens)::BIGINT AS input,
            sum(cached_input_tokens)::BIGINT AS cached,
            sum(cache_write_tokens)::BIGINT AS write,
            sum(output_tokens)::BIGINT AS output,
            sum(reasoning_tokens)::BIGINT AS reasoning
        FROM usage
        WHERE {where}
        GROUP BY 1, provider, model, team, project,
            CASE WHEN input_tokens > ? * n_requests THEN record_key END
        ORDER BY ts
    """
    with open_read(path) as con:
        table = con.sql(sql, params=[tier, *params, tier]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("us")), pl.col("model").fill_null(""))


@dataclass(frozen=True)
class DailySpend:
    """Spend per day (`daily`: `day`, `amount` in the asked currency) and what could not be priced."""

    daily: pl.DataFrame
    priced: RecordedCost
    requests_by_day: pl.DataFrame  # day, requests: everything read, priced or not

    def unpriced_since(self, day: date) -> float:
        """Requests from `day` on that no catalog price covers (unknown model, or no version in force)."""
        asked = self.requests_by_day.filter(pl.col("day") >= day)["requests"].sum()
        priced = sum(
            float(p.groups.filter(pl.col("day") >= day)["requests"].sum())
            for p in self.priced.by_offer.values()
            if p.groups.height
        )
        return max(0.0, float(asked or 0.0) - priced)


def read_daily_spend(path: Path, catalog: Catalog, currency: str, selection: UsageFilter) -> DailySpend:
    """Spend per day in `currency`, priced by the catalog as it was served."""
    units = read_spend_units(path, selection, catalog)
    priced = price_recorded(units, catalog, currency)
    by_day = units.group_by(pl.col("ts").dt.date().alias("day")).agg(pl.col("w").sum().alias("requests"))
    return DailySpend(daily_amounts(list(priced.by_offer.values())), priced, by_day)
