"""Spend (finance): cost over time by provider, model, team or key; cache savings; off-peak share; top
consumers; the price versions used; CSV export."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import charts, state
from dashboard.tables import Column, in_words
from models.budget import forecast_band
from models.focus import focus_csv
from models.forecast import month_start
from models.money import format_amount
from models.outside_text import for_markdown, to_csv
from models.spend import SpendRow
from quotascope import settings
from storage.budgets import budget_statuses
from storage.reports import UsageFilter, focus_export, spend_report

GROUPS = {"team": "team", "provider": "provider", "model": "model", "project": "project", "key": "key"}


def _frame(rows: list[SpendRow], keys: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                **{k: row.keys.get(k) for k in keys},
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "cached_input_tokens": row.cached_input_tokens,
                "output_tokens": row.output_tokens,
                "reasoning_tokens": row.reasoning_tokens,
                "cost": None if row.cost is None else row.cost.amount,
                "cache_savings": None if row.cache_savings is None else row.cache_savings.amount,
                "price_versions": ", ".join(row.price_versions) or None,
                "periods": ", ".join(row.periods) or None,
                "unpriced_requests": row.unpriced_requests,
            }
            for row in rows
        ],
        infer_schema_length=None,
    )


def _columns(group: str, currency: str) -> list[Column]:
    return [
        Column(GROUPS[group], group.capitalize(), missing="not in the log"),
        Column("requests", "Requests"),
        Column("input_tokens", "Input tokens (cache included)"),
        Column("cached_input_tokens", "Cached input tokens"),
        Column("output_tokens", "Output tokens (reasoning included)"),
        Column("reasoning_tokens", "Reasoning tokens"),
        Column("cost", f"Cost ({currency})", 2, missing="unpriced"),
        Column("cache_savings", f"Cache savings ({currency})", 2, missing="unpriced"),
        Column("unpriced_requests", "Unpriced requests"),
        Column("price_versions", "Price versions", missing="none (unpriced)"),
        Column("periods", "Priced in", missing="none (unpriced)"),
    ]


def render() -> None:
    st.header("Spend")
    selection = state.usage_selection()
    if selection is None:
        return
    currency = state.filters().display_currency or "USD"
    cols = st.columns([2, 1])
    group = cols[0].segmented_control("Break down by", list(GROUPS), default="team", key="spend_by") or "team"
    grain = cols[1].segmented_control("Per", ["day", "hour"], default="day", key="spend_grain") or "day"
    rows = state.read(
        spend_report, priced=True, selection=selection, by=(grain, GROUPS[group]), currency=currency
    )
    frame = _frame(rows, (grain, GROUPS[group])).with_columns(
        pl.col("cost", "cache_savings").cast(pl.Float64)
    )
    totals = state.read(
        spend_report, priced=True, selection=selection, by=(GROUPS[group],), currency=currency
    )
    table = _frame(totals, (GROUPS[group],)).sort("cost", descending=True, nulls_last=True)
    total_cost = sum((r.cost.amount for r in totals if r.cost is not None), Decimal(0))
    savings = sum((r.cache_savings.amount for r in totals if r.cache_savings is not None), Decimal(0))
    m = st.columns(4)
    m[0].metric("Spend in period", f"{format_amount(total_cost, 2)} {currency}")
    m[1].metric(
        "Cache savings",
        f"{format_amount(savings, 2)} {currency}",
        help="What the cached input tokens would have cost at the miss price, minus what they cost",
    )
    m[2].metric("Requests", f"{sum(r.requests for r in totals):,}")
    offpeak = _discounted_share(totals)
    m[3].metric(
        "Spend in discounted hours",
        "—" if offpeak is None else f"{offpeak:.0%}",
        help="Share of spend priced in hours cheaper than the offer's dearest: an off-peak window "
        "(DeepSeek), or the hours outside a peak window",
    )
    st.plotly_chart(
        charts.time_series(
            frame.filter(pl.col("cost").is_not_null()),
            x=grain,
            y="cost",
            color=GROUPS[group],
            title=f"Spend per {grain} by {group}",
            y_title=f"cost ({currency})",
            x_title=f"{grain} (UTC)",
        ),
        key="spend_chart",
    )
    _budget(currency)
    left, right = st.columns(2)
    left.plotly_chart(
        charts.time_series(
            frame.filter(pl.col("cache_savings").is_not_null()),
            x=grain,
            y="cache_savings",
            color=GROUPS[group],
            title="Cache savings",
            y_title=f"saved ({currency})",
            x_title=f"{grain} (UTC)",
        ),
        key="spend_savings_chart",
    )
    with right:
        st.markdown("**Top consumers**")
        columns = _columns(group, currency)
        top = [c for c in columns if c.source in (GROUPS[group], "requests", "cost", "cache_savings")]
        state.show_table(table.head(10), top, "spend_top")
    st.subheader("Detail")
    state.show_table(table, columns, "spend_table")
    unpriced = sorted({m for r in totals for m in r.unpriced_models})
    if unpriced:
        names = ", ".join(for_markdown(n) for n in sorted({u.split(" (")[0] for u in unpriced}))
        st.info(f"Unpriced (not counted above, never as free): {names}")
    cols = st.columns([1, 1, 3])
    cols[0].download_button(
        "Download CSV",
        to_csv(in_words(table, columns)),
        file_name=f"quotascope-spend-by-{group}.csv",
        mime="text/csv",
        key="spend_csv",
    )
    _focus_download(cols[1], selection)
    st.caption(
        f"Money in {currency}. Price versions used: "
        + ", ".join(for_markdown(v) for v in sorted({v for r in totals for v in r.price_versions}))
    )


def _focus_download(column: DeltaGenerator, selection: UsageFilter) -> None:
    """The period's usage as FOCUS 1.0 rows for finance's FinOps tools (what `quotascope export focus`
    writes), made when the button is clicked, within the viewer's teams as the page ran."""
    viewer = state.scope()
    catalog_dir = settings.get("catalog_dir")

    def focus_file() -> str:
        export = state.read(
            focus_export, priced=True, viewer=viewer, catalog_dir=catalog_dir, selection=selection
        )
        return focus_csv(export.rows)

    since = f"{selection.since:%Y-%m-%d}" if selection.since else "start"
    until = f"{selection.until:%Y-%m-%d}" if selection.until else "now"
    column.download_button(
        "Download FOCUS 1.0 (CSV)",
        focus_file,
        file_name=f"quotascope-focus-{since}-{until}.csv",
        mime="text/csv",
        key="spend_focus",
        on_click="ignore",
        help="One row per day, provider, model, token type and team/project/key with list, contracted and "
        "effective cost: the FinOps Foundation's FOCUS 1.0 format (as `quotascope export focus`)",
    )


def _discounted_share(rows: list[SpendRow]) -> float | None:
    """The share of spend priced in discounted time-of-day periods (see models.pricing.discounted_period)."""
    total = sum((r.cost.amount for r in rows if r.cost is not None), Decimal(0))
    if not total:
        return None
    discounted = sum((r.discounted_cost.amount for r in rows if r.discounted_cost is not None), Decimal(0))
    return float(discounted / total)


def _budget(currency: str) -> None:
    now = state.now()
    statuses = state.read(
        budget_statuses, priced=True, month=month_start(now.date()), now=now, currency=currency
    )
    if not statuses:
        st.caption(
            "No budget for this month: `quotascope budget set --scope total --amount N "
            f"--currency {currency}`."
        )
        return
    labels = [s.budget.label for s in statuses]
    label = st.selectbox("Budget", labels, key="spend_budget")
    status = statuses[labels.index(label)]
    st.caption(f"Budget {status.describe_amount()}")
    st.plotly_chart(charts.budget_forecast(forecast_band(status), currency), key="spend_budget_chart")


render()
