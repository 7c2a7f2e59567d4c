"""Endpoints: what each probed endpoint really delivers, over time, against alert thresholds."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import streamlit as st

from dashboard import charts, state
from dashboard.tables import Column
from models.errors import QuotascopeError
from models.money import FxTable, Money
from models.outside_text import for_markdown
from models.probe import TTFT_DEFINITIONS
from storage.probes import probe_percentiles, probe_rate_limits, probe_runs

ERROR_COLUMNS = {
    "errors_quota_429": "quota 429",
    "errors_overload_5xx": "overload 5xx",
    "errors_timeout": "timeout",
    "errors_connection": "connection",
    "errors_protocol": "protocol",
    "errors_client_4xx": "client 4xx",
}


def _summary(frame: pl.DataFrame, ttft_alert_ms: float, success_alert: float) -> pl.DataFrame:
    success = pl.when(pl.col("requests") > 0).then(pl.col("ok") / pl.col("requests")).otherwise(None)
    alerts = pl.concat_str(
        [
            pl.when(pl.col("ttft_p99_ms") > ttft_alert_ms).then(pl.lit("P99 TTFT high")),
            pl.when(success < success_alert).then(pl.lit("success low")),
            pl.when(pl.col("canary_pass_rate") < 1).then(pl.lit("canary failed")),
            pl.when(pl.col("errors_quota_429") > 0).then(pl.lit("429s")),
        ],
        separator=", ",
        ignore_nulls=True,
    )
    return frame.with_columns((success * 100).round(1).alias("success_percent"), alerts.alias("alerts"))


def _in_currency(frame: pl.DataFrame, fx: FxTable, currency: str) -> pl.DataFrame:
    """The probes' own cost (`cost`, `cost_currency`) in `currency`, at the rate of the last run's day."""
    costs = [
        None
        if cost is None or own is None
        else fx.convert(Money(Decimal(cost), own), currency, last.date()).money.amount
        for cost, own, last in frame.select("cost", "cost_currency", "last_run").iter_rows()
    ]
    return frame.with_columns(pl.Series("cost_shown", costs, dtype=pl.Decimal(38, 12)))


def _columns(currency: str) -> list[Column]:
    return [
        Column("endpoint", "Endpoint"),
        Column("tool", "Measured by"),
        Column("runs", "Runs"),
        Column("requests", "Requests"),
        Column("success_percent", "Success (%)", 1, missing="no requests"),
        Column("ttft_p50_ms", "Time to first token, median (ms)", 0, missing="no token"),
        Column("ttft_p95_ms", "Time to first token, p95 (ms)", 0, missing="no token"),
        Column("ttft_p99_ms", "Time to first token, p99 (ms)", 0, missing="no token"),
        Column("ttfo_p50_ms", "Time to first answer token, median (ms)", 0, missing="no answer token"),
        Column("output_tokens_per_s_p50", "Output tokens per second, median", 1, missing="no tokens"),
        Column("e2e_p99_ms", "End to end, p99 (ms)", 0, missing="no response"),
        Column("errors_quota_429", "Refused for quota (429)"),
        Column("errors_overload_5xx", "Server errors (5xx)"),
        Column("errors_timeout", "Timeouts"),
        Column("canary_pass_rate_percent", "Canary passed (%)", 0, missing="no canary asked"),
        Column("cost_shown", f"Cost of the probes ({currency})", 6, missing="unpriced"),
        Column("alerts", "Alerts", missing="none"),
    ]


def _series(frame: pl.DataFrame) -> pl.DataFrame:
    """One chart series per endpoint and measuring tool: a peer's runs are never joined to quotascope's."""
    return frame.with_columns(
        pl.when(pl.col("tool") == "quotascope")
        .then(pl.col("endpoint"))
        .otherwise(pl.concat_str([pl.col("endpoint"), pl.lit(" ("), pl.col("tool"), pl.lit(")")]))
        .alias("series")
    )


def _definitions(frame: pl.DataFrame) -> None:
    """Each tool's TTFT definition, as stored with its runs (older quotascope runs: today's definition)."""
    tools = frame.select("tool", "ttft_definition").unique("tool").sort("tool")
    lines = [
        f"- **{for_markdown(row['tool'])}**: "
        + for_markdown(row["ttft_definition"] or TTFT_DEFINITIONS.get(row["tool"], ""))
        for row in tools.iter_rows(named=True)
    ]
    st.markdown("TTFT as each tool times it:\n" + "\n".join(lines))


def render() -> None:
    st.header("Endpoints")
    st.caption(
        "Probe results per endpoint: TTFT (first token of any kind), TTFO (first answer token), "
        "output tokens/s, success, errors by class, limits announced in x-ratelimit-* headers, canary. "
        "Runs imported from AIPerf, GuideLLM or vLLM (`quotascope probe import FILE`) are shown beside "
        "quotascope's, never pooled with them: each tool times TTFT its own way."
    )
    if not state.has_database():
        state.empty_state("No database yet.", "quotascope demo --no-serve")
        return
    if not state.db_path().exists():  # probes live in the DuckDB file, beside a ClickHouse holding usage
        state.empty_state("No probe results yet.", "quotascope probe --endpoint NAME")
        return
    filters = state.filters()
    try:
        runs = state.read(probe_runs, since=filters.since, until=filters.until)
    except QuotascopeError as e:
        st.error(for_markdown(e))
        return
    if runs.is_empty():
        state.empty_state("No probe results in this period.", "quotascope probe --endpoint NAME")
        return
    names = sorted(runs["endpoint"].unique().to_list())
    chosen = st.multiselect("Endpoints", names, default=names, key="endpoints_selected")
    cols = st.columns(2)
    ttft_alert = cols[0].number_input(
        "Alert when P99 TTFT exceeds (ms)", min_value=1.0, value=500.0, step=50.0, key="endpoints_ttft_alert"
    )
    success_alert = (
        cols[1].number_input(
            "Alert when success falls below (%)",
            min_value=0.0,
            max_value=100.0,
            value=99.0,
            step=0.5,
            key="endpoints_success_alert",
        )
        / 100
    )
    selected = tuple(chosen) or tuple(names)
    summary = state.read(probe_percentiles, endpoints=selected, since=filters.since, until=filters.until)
    currency = filters.display_currency or "USD"
    table = _in_currency(_summary(summary, ttft_alert, success_alert), state.catalog().fx, currency)
    table = table.with_columns((pl.col("canary_pass_rate") * 100).alias("canary_pass_rate_percent"))
    state.show_table(table, _columns(currency), "endpoints_table")
    if summary["tool"].n_unique() > 1 or summary["tool"][0] != "quotascope":
        _definitions(summary)
    for row in table.filter(pl.col("alerts") != "").iter_rows(named=True):
        who = "" if row["tool"] == "quotascope" else f" (measured by {for_markdown(row['tool'])})"
        message = f"**{for_markdown(row['endpoint'])}**{who}: {for_markdown(row['alerts'])}"
        if "canary failed" in row["alerts"]:
            message += (
                " — the model behind it may not be the one you pay for (a distilled model fails the canary)"
            )
        st.warning(message, icon=":material/warning:")
    runs = _series(runs.filter(pl.col("endpoint").is_in(selected)))
    left, right = st.columns(2)
    left.plotly_chart(
        charts.threshold_series(
            runs,
            x="started_at",
            y="ttft_p99_ms",
            color="series",
            title="P99 time to first token per run",
            y_title="P99 TTFT (ms)",
            threshold=ttft_alert,
            threshold_label=f"alert {ttft_alert:.0f} ms",
        ),
        key="endpoints_ttft_chart",
    )
    right.plotly_chart(
        charts.threshold_series(
            runs,
            x="started_at",
            y="output_tokens_per_s_p50",
            color="series",
            title="Median output tokens per second per run",
            y_title="output tokens/s (p50)",
        ),
        key="endpoints_speed_chart",
    )
    errors = (
        runs.unpivot(index=["endpoint"], on=list(ERROR_COLUMNS), variable_name="class", value_name="errors")
        .with_columns(pl.col("class").replace_strict(ERROR_COLUMNS))
        .group_by("endpoint", "class")
        .agg(pl.col("errors").sum())
        .filter(pl.col("errors") > 0)
    )
    st.plotly_chart(
        charts.time_series(
            errors,
            x="endpoint",
            y="errors",
            color="class",
            title="Errors by class",
            y_title="failed requests",
            x_title="endpoint",
        ),
        key="endpoints_errors_chart",
    )
    limits = state.read(probe_rate_limits, endpoints=selected)
    st.subheader("Limits discovered from headers")
    if limits.is_empty():
        st.caption("No endpoint announced x-ratelimit-limit-* headers.")
    else:
        columns = [
            Column("endpoint", "Endpoint"),
            Column("header", "Header"),
            Column("value", "Value announced"),
            Column("seen_at", "Last seen (UTC)"),
        ]
        state.show_table(limits, columns, "endpoints_limits")


render()
