"""Spend (finance): cost over time by provider, model, team or key; cache savings; off-peak share; top
consumers; the price versions used; CSV export."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, state
from models.budget import forecast_band
from models.forecast import month_start
from models.outside_text import for_markdown, to_csv
from storage.budgets import budget_statuses
from storage.reports import spend_report

GROUPS = {"team": "team", "provider": "provider", "model": "model", "project": "project", "key": "key"}


def _frame(rows: list, keys: tuple[str, ...]) -> pl.DataFrame:  # type: ignore[type-arg]
    return pl.DataFrame(
        [
            {
                **{k: row.keys.get(k) for k in keys},
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "cached_input_tokens": row.cached_input_tokens,
                "output_tokens": row.output_tokens,
                "reasoning_tokens": row.reasoning_tokens,
                "cost": None if row.cost is None else float(row.cost.amount),
                "cache_savings": None if row.cache_savings is None else float(row.cache_savings.amount),
                "price_versions": ", ".join(row.price_versions),
                "periods": ", ".join(row.periods),
            }
            for row in rows
        ],
        infer_schema_length=None,
        # a selection of unpriced usage only has no cost at all: still a number column, never NULL-typed
        schema_overrides={"cost": pl.Float64, "cache_savings": pl.Float64},
    )


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
    frame = _frame(rows, (grain, GROUPS[group]))
    totals = state.read(
        spend_report, priced=True, selection=selection, by=(GROUPS[group],), currency=currency
    )
    table = _frame(totals, (GROUPS[group],)).sort("cost", descending=True, nulls_last=True)
    total_cost = (table["cost"].sum() or 0.0) if table.height else 0.0
    savings = (table["cache_savings"].sum() or 0.0) if table.height else 0.0
    m = st.columns(4)
    m[0].metric("Spend in period", f"{total_cost:,.2f} {currency}")
    m[1].metric(
        "Cache savings",
        f"{savings:,.2f} {currency}",
        help="What the cached input tokens would have cost at the miss price, minus what they cost",
    )
    m[2].metric("Requests", f"{int(table['requests'].sum()):,}")
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
        st.dataframe(
            table.head(10).select(GROUPS[group], "requests", "cost", "cache_savings"),
            hide_index=True,
            key="spend_top",
            column_config={
                "cost": st.column_config.NumberColumn(format="%.2f"),
                "cache_savings": st.column_config.NumberColumn(format="%.2f"),
            },
        )
    st.subheader("Detail")
    st.dataframe(table, hide_index=True, key="spend_table")
    unpriced = sorted({m for r in totals for m in r.unpriced_models})
    if unpriced:
        names = ", ".join(for_markdown(n) for n in sorted({u.split(" (")[0] for u in unpriced}))
        st.info(f"Unpriced (not counted above, never as free): {names}")
    st.download_button(
        "Download CSV",
        to_csv(table),
        file_name=f"quotascope-spend-by-{group}.csv",
        mime="text/csv",
        key="spend_csv",
    )
    st.caption(
        f"Money in {currency}. Price versions used: "
        + ", ".join(for_markdown(v) for v in sorted({v for r in totals for v in r.price_versions}))
    )


def _discounted_share(rows: list) -> float | None:  # type: ignore[type-arg]
    """The share of spend priced in discounted time-of-day periods (see models.pricing.discounted_period)."""
    priced = [r for r in rows if r.cost is not None]
    total = sum(float(r.cost.amount) for r in priced)
    if not total:
        return None
    return sum(float(r.discounted_cost.amount) for r in priced if r.discounted_cost is not None) / total


def _budget(currency: str) -> None:
    now = state.now()
    statuses = state.read(budget_statuses, priced=True, month=month_start(now.date()), now=now)
    shown = [s for s in statuses if s.budget.currency == currency]
    if not shown:
        st.caption(
            "No budget in this currency for this month: `quotascope budget set --scope total --amount N "
            f"--currency {currency}`."
        )
        return
    labels = [s.budget.label for s in shown]
    label = st.selectbox("Budget", labels, key="spend_budget")
    status = shown[labels.index(label)]
    st.plotly_chart(charts.budget_forecast(forecast_band(status), currency), key="spend_budget_chart")


render()
