"""Billing gap: what the provider billed against the cost computed from the logs, per day, flagged above a
threshold, with what explains each gap and the alerts raised. Organisation-wide, like the bill itself."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import polars as pl
import streamlit as st

from dashboard import charts, state
from dashboard.tables import Column
from models.errors import QuotascopeError
from models.money import Money
from models.outside_text import for_display, for_markdown
from models.reconcile import ReconcileRow, parse_threshold, rows_frame
from quotascope import settings
from storage.reconcile import has_pulls, read_gap_alerts, read_pull_history, reconcile_days
from storage.replay import UsageFilter

PULL_COMMAND = "quotascope pull openai-costs --admin-key-env OPENAI_ADMIN_KEY"
DEFAULT_DAYS = 30


def _period() -> UsageFilter:
    """The sidebar's period (whole UTC days), or the last 30 days when the sidebar has none."""
    f = state.filters()
    until = f.until or datetime.combine(state.now().date() + timedelta(days=1), time())
    since = f.since or until - timedelta(days=DEFAULT_DAYS)
    return UsageFilter(since, until)


def _money(value: Money | None) -> str:
    return "-" if value is None else f"{value.amount.quantize(Decimal('0.0001'))} {value.currency}"


def _columns(currency: str) -> list[Column]:
    return [
        Column("day", "Day (UTC)"),
        Column("provider", "Provider", missing="not in the log"),
        Column("computed", f"Computed from logs ({currency})", 4, missing="nothing logged"),
        Column("billed", f"Billed ({currency})", 4, missing="no bill pulled"),
        Column("gap", f"Gap, billed - computed ({currency})", 4, missing="no bill pulled"),
        Column("gap_percent", "Gap share of the bill (%)", 2, missing="nothing billed"),
        Column("flagged", "Flagged"),
        Column("explanations", "What explains it", missing="nothing to explain"),
    ]


def _table(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows in words; outside text (provider and model names) made safe for a table cell."""
    safe = pl.col("provider").map_elements(for_display, return_dtype=pl.String)
    return frame.with_columns(
        pl.col("day").cast(pl.String),
        safe.alias("provider"),
        (pl.col("gap_share").cast(pl.Float64) * 100).alias("gap_percent"),
        pl.when(pl.col("flagged")).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("flagged"),
        pl.col("explanations").map_elements(for_display, return_dtype=pl.String),
    )


def _chart_frame(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("gap").is_not_null()).select(
        "day",
        "provider",
        pl.col("gap").cast(pl.Float64),
        pl.col("gap_share").cast(pl.Float64),
        "flagged",
    )


def _share(row: ReconcileRow) -> str:
    return "n/a" if row.gap_share is None else f"{row.gap_share:.1%}"


def _totals(rows: list[ReconcileRow], field: str) -> Money | None:
    values = [getattr(r, field) for r in rows if getattr(r, field) is not None]
    if not values:
        return None
    total = values[0]
    for value in values[1:]:
        total = total + value
    assert isinstance(total, Money)
    return total


def render() -> None:
    st.header("Billing gap")
    if not state.sees_all_teams():
        st.info(
            "Billed costs come per organisation or project, not per team, so this page is shown only to "
            "viewers who see every team. Ask someone who does, or an administrator to widen your access.",
            icon=":material/lock:",
        )
        return
    if not state.has_database():
        state.empty_state("No database yet.", PULL_COMMAND)
        return
    selection = _period()
    try:
        pulled = state.read(has_pulls, selection=selection)
    except QuotascopeError as e:
        st.error(str(e))
        return
    if not pulled:
        state.empty_state(
            "No bill pulled yet: this page compares what the provider billed with the cost of your logs.",
            PULL_COMMAND,
        )
        return
    default = float(parse_threshold(settings.get("reconcile_threshold")) * 100)
    threshold_pct = st.number_input(
        "Flag a day above this gap (% of the bill)",
        min_value=0.0,
        max_value=100.0,
        value=default,
        step=0.5,
        key="reconcile_threshold",
    )
    threshold = Decimal(str(threshold_pct)) / 100
    rows = state.read(reconcile_days, priced=True, selection=selection, threshold=threshold)
    assert selection.since is not None and selection.until is not None
    st.caption(
        f"{selection.since:%Y-%m-%d} to {(selection.until - timedelta(microseconds=1)):%Y-%m-%d} (UTC), all "
        "teams: the bill cannot be split by team. Computed = the Spend page's figure for the logs; billed = "
        "the cost reports pulled with `quotascope pull`."
    )
    if not rows:
        state.empty_state("Nothing billed or logged in this period.", PULL_COMMAND)
        return
    billed, computed = _totals(rows, "billed"), _totals(rows, "computed")
    flagged = [r for r in rows if r.flagged]
    a, b, c, d = st.columns(4)
    a.metric("Billed", _money(billed))
    b.metric("Computed from logs", _money(computed))
    gap = Money(billed.amount - computed.amount, billed.currency) if billed and computed else billed
    c.metric("Gap", _money(gap))
    d.metric("Flagged days", f"{len({r.keys.get('day') for r in flagged})}")
    currency = billed.currency if billed else (computed.currency if computed else "USD")
    frame = rows_frame(rows)
    st.plotly_chart(
        charts.billing_gap(_chart_frame(frame), float(threshold), currency), key="reconcile_chart"
    )
    state.show_table(_table(frame), _columns(currency), "reconcile_table")
    for row in flagged:
        where = ", ".join(for_display(v) for v in row.keys.values() if v is not None)
        st.markdown(f"**{for_markdown(where)}** flagged: {_share(row)} of the bill")
        st.text(
            "\n".join(f"- {for_display(text)}" for text in row.explanations) or "- nothing known explains it"
        )
    alerts = state.read(read_gap_alerts, selection=selection)
    st.subheader("Alerts")
    if alerts.is_empty():
        st.caption("No gap alert raised in this period (`quotascope report reconcile` raises them).")
    else:
        shown = alerts.select(
            "raised_at",
            pl.col("day").cast(pl.String),
            pl.col("provider").map_elements(for_display, return_dtype=pl.String),
            pl.col("message").map_elements(for_display, return_dtype=pl.String),
            "webhook_status",
        )
        columns = [
            Column("raised_at", "Raised (UTC)"),
            Column("day", "Day (UTC)"),
            Column("provider", "Provider", missing="all"),
            Column("message", "Alert"),
            Column("webhook_status", "Webhook", missing="no webhook set"),
        ]
        state.show_table(shown, columns, "reconcile_alerts")
    _pulls(selection)


def _pulls(selection: UsageFilter) -> None:
    st.subheader("Latest pulls")
    history = state.read(read_pull_history, selection=selection)
    shown = history.with_columns(
        pl.col("account").map_elements(for_display, return_dtype=pl.String),
        pl.col("first_day").cast(pl.String),
        pl.col("last_day").cast(pl.String),
    )
    columns = [
        Column("finished_at", "Finished (UTC)"),
        Column("kind", "Report"),
        Column("account", "Account (API base)"),
        Column("first_day", "First day"),
        Column("last_day", "Last day"),
        Column("rows_read", "Results read"),
        Column("rows_stored", "Stored"),
        Column("rows_duplicate", "Duplicates"),
        Column("rows_rejected", "Rejected"),
        Column("rows_replaced", "Earlier rows replaced"),
    ]
    state.show_table(shown, columns, "reconcile_pulls")


render()
