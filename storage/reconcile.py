"""Reads behind `quotascope report reconcile`, and the gap alerts it raises.

The computed cost is the spend report's (`storage.reports.spend_report`, same engine); the provider's usage
goes through the same spend read over the pulled rows (`provider_usage_all` / `_counted`); the bill is
summed here. The rule that compares them lives in `models.reconcile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from models.catalog import Catalog
from models.errors import InputError
from models.money import Money
from models.reconcile import DEFAULT_THRESHOLD, Billed, ReconcileRow, gap_alert_text, reconcile
from storage.db import open_read, open_write, query_frame
from storage.replay import UsageFilter
from storage.reports import spend_report
from storage.store import StoreLike, as_store

_BILL_KEYS = {"day": "day", "provider": "provider", "model": "model", "project": "project"}


def read_billed(db: Path, since: datetime | None, until: datetime | None, by: Sequence[str]) -> list[Billed]:
    """The pulled bill summed per group of `by` (and currency)."""
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if since is not None:  # bills are by whole day: the day `since` falls in counts
        clauses.append("day >= ?")
        params.append(since.date())
    if until is not None:  # ...and the day `until` falls in only when it starts after that day's start
        clauses.append("day < ?" if until.time() == datetime.min.time() else "day <= ?")
        params.append(until.date())
    keys = "".join(f"{_BILL_KEYS[k]} AS {k}, " for k in by)
    sql = f"""
        SELECT {keys}currency, sum(amount) AS amount FROM provider_costs
        WHERE {" AND ".join(clauses)} GROUP BY ALL
    """
    with open_read(db) as con:
        rows = con.execute(sql, params).fetchall()
    return [
        Billed(dict(zip(by, row[: len(by)], strict=True)), Money(Decimal(row[-1]), str(row[-2])))
        for row in rows
    ]


def whole_days(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """[since, until) widened to whole UTC days."""
    if since is not None:
        since = datetime.combine(since.date(), time())
    if until is not None and until.time() != time():
        until = datetime.combine(until.date() + timedelta(days=1), time())
    return since, until


def bill_currency(db: Path) -> str:
    """The one currency the pulled bills are in (USD when none is pulled yet)."""
    with open_read(db) as con:
        found = [row[0] for row in con.execute("SELECT DISTINCT currency FROM provider_costs").fetchall()]
    if len(found) > 1:
        raise InputError(f"the pulled bills are in {' and '.join(sorted(found))}; reconcile one at a time")
    return found[0] if found else "USD"


def reconcile_report(
    db: StoreLike,
    catalog: Catalog,
    since: datetime | None,
    until: datetime | None,
    by: Sequence[str],
    threshold: Decimal = DEFAULT_THRESHOLD,
) -> list[ReconcileRow]:
    """Computed vs billed per group of `by`, with what explains each gap (`models.reconcile`).

    Bills come by whole UTC day, so the period is widened to whole days (`since` back to its day's start,
    `until` on to the next day's): half a day of logs against a whole day's bill would be a gap of nothing.
    """
    since, until = whole_days(since, until)
    store = as_store(db)
    currency = bill_currency(store.db)
    selection = UsageFilter(since, until)
    computed = spend_report(db, catalog, selection, by, currency)
    provider_all = spend_report(store.db, catalog, selection, by, currency, table="provider_usage_all")
    counted = spend_report(store.db, catalog, selection, by, currency, table="provider_usage_counted")
    billed = read_billed(store.db, since, until, by)
    return reconcile(by, computed, billed, provider_all, counted, threshold)


def has_pulls(db: Path, *, selection: UsageFilter) -> bool:
    """Whether any bill or provider usage was pulled (the dashboard's empty state); organisation-wide."""
    _whole_organisation(selection)
    if not Path(db).exists():
        return False
    with open_read(db) as con:
        row = con.execute("SELECT count(*) FROM pull_runs").fetchone()
    return bool(row and row[0])


# ------------------------------------------------------------------------------------------ alerts


@dataclass(frozen=True, slots=True)
class GapAlert:
    alert_id: int
    day: date
    provider: str | None
    billed: Money
    computed: Money
    gap: Money
    gap_share: Decimal | None
    threshold: Decimal
    message: str

    def payload(self) -> dict[str, Any]:
        """What a webhook receives (JSON): only the figures, never usage content or a key."""
        return {
            "alert_id": self.alert_id,
            "kind": "billing_gap",
            "day": self.day.isoformat(),
            "provider": self.provider,
            "billed": self.billed.to_json(2),
            "computed": self.computed.to_json(2),
            "gap": self.gap.to_json(2),
            "gap_share": None if self.gap_share is None else f"{self.gap_share:.4f}",
            "threshold": f"{self.threshold:.4f}",
            "text": self.message,
        }


def record_gap_alerts(
    db: Path, rows: Sequence[ReconcileRow], threshold: Decimal, raised_at: datetime
) -> list[GapAlert]:
    """Store an alert for each flagged day (and provider) not alerted before; return the new ones.

    A day whose gap changes after a later pull is alerted again only if it was not alerted at all: the
    stored alert keeps the figures it was raised with.
    """
    raised = []
    with open_write(db) as con:
        for row in rows:
            day = row.keys.get("day")
            if not row.flagged or day is None or row.gap is None or row.billed is None:
                continue
            provider = row.keys.get("provider")
            seen = con.execute(
                "SELECT 1 FROM gap_alerts WHERE day = ? AND provider IS NOT DISTINCT FROM ?", [day, provider]
            ).fetchone()
            if seen:
                continue
            computed = row.computed or Money.zero(row.billed.currency)
            message = gap_alert_text(row, threshold)
            found = con.execute(
                "INSERT INTO gap_alerts (day, provider, billed, computed, gap, gap_share, currency, "
                "threshold, message, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING alert_id",
                [
                    day,
                    provider,
                    row.billed.amount,
                    computed.amount,
                    row.gap.amount,
                    row.gap_share,
                    row.billed.currency,
                    threshold,
                    message,
                    raised_at,
                ],
            ).fetchone()
            assert found is not None
            raised.append(
                GapAlert(
                    int(found[0]),
                    day,
                    provider,
                    row.billed,
                    computed,
                    row.gap,
                    row.gap_share,
                    threshold,
                    message,
                )
            )
    return raised


def set_gap_webhook_status(db: Path, statuses: dict[int, str]) -> None:
    if not statuses:
        return
    with open_write(db) as con:
        for alert_id, status in statuses.items():
            con.execute("UPDATE gap_alerts SET webhook_status = ? WHERE alert_id = ?", [status, alert_id])


# ------------------------------------------------------------------------------------------ dashboard


def _whole_organisation(selection: UsageFilter) -> None:
    if selection.teams is not None:
        raise InputError(
            "billed costs are per organisation or project, not per team: only a viewer who sees every team "
            "may read them"
        )


def reconcile_days(
    db: StoreLike, *, catalog: Catalog, selection: UsageFilter, threshold: Decimal = DEFAULT_THRESHOLD
) -> list[ReconcileRow]:
    """The dashboard's reconciliation: by day and provider over `selection`'s period. The bill cannot be
    split by team, so a selection scoped to some teams is refused rather than shown a bill it may not see."""
    _whole_organisation(selection)
    return reconcile_report(db, catalog, selection.since, selection.until, ("day", "provider"), threshold)


def read_pull_history(db: Path, *, selection: UsageFilter, limit: int = 20) -> pl.DataFrame:
    """The latest pulls, newest first, with their days and counts (how fresh the bill on the page is)."""
    _whole_organisation(selection)
    with open_read(db) as con:
        return query_frame(
            con,
            "SELECT finished_at, kind, account, CAST(since AS DATE) AS first_day, "
            "CAST(until - INTERVAL 1 DAY AS DATE) AS last_day, rows_read, rows_stored, rows_duplicate, "
            "rows_rejected, rows_replaced FROM pull_runs ORDER BY run_id DESC LIMIT ?",
            [max(0, int(limit))],
        )


def read_gap_alerts(db: Path, *, selection: UsageFilter) -> pl.DataFrame:
    """Gap alerts raised for days in `selection`'s period, newest first (organisation-wide, like the bill)."""
    _whole_organisation(selection)
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if selection.since is not None:
        clauses.append("day >= ?")
        params.append(selection.since.date())
    if selection.until is not None:
        clauses.append("day <= ?")
        params.append(selection.until.date())
    with open_read(db) as con:
        return query_frame(
            con,
            "SELECT alert_id, day, provider, billed, computed, gap, gap_share, currency, threshold, message, "
            f"raised_at, webhook_status FROM gap_alerts WHERE {' AND '.join(clauses)} "
            "ORDER BY raised_at DESC, alert_id DESC",
            params,
        )
