"""Figure builders: polars frames in, Plotly figures out. No `st.*` here, so each is tested directly
(AppTest cannot see inside a Plotly chart). Every axis says what it measures and in which unit.

Plotly obeys a few HTML tags in any label (`<a href>`, `<br>`, `<b>`): every name that came from data (a
model, team, offer or endpoint) passes `models.outside_text.for_chart` before it becomes a trace name or a
category."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

import plotly.graph_objects as go
import polars as pl

from models.outside_text import for_chart

DAY_MS = 86_400_000  # a day on a Plotly date axis
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def log_axis(*values: Iterable[float]) -> dict[str, object]:
    """A log axis for these values, every tick written out (1,000; 20,000).

    Over three decades or fewer it is labelled at 1, 2 and 5 of each decade ("D2"): Plotly's default labels
    the 2s and 5s with a bare "2" or "5", which read as figures of their own, and within one decade labels
    every digit, which written out run into each other ("5,0006,0007,000"); ticks at powers of ten only would
    leave data inside one decade unlabelled. Over more decades the 2s and 5s crowd a chart's height (the
    Planner's seven decades of q/min put 21 labels in 200 pixels), so only powers of ten are labelled."""
    shown = [v for part in values for v in part if v is not None and v > 0]
    decades = math.log10(max(shown) / min(shown)) if shown else 0.0
    return {"type": "log", "tickformat": ",~r", "dtick": 1 if decades > 3 else "D2"}


LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 70, "r": 20, "t": 50, "b": 40},
    # below the plot, anchored to the figure's bottom edge (not the plot's): Plotly then keeps the x axis's
    # title clear of it, which a legend placed under the plot by a fraction of its height overlapped when the
    # axis's ticks took two lines (dates)
    "legend": {
        "orientation": "h",
        "yref": "container",
        "yanchor": "bottom",
        "y": 0,
        "xanchor": "left",
        "x": 0,
    },
    "hovermode": "x unified",
    "height": 440,
}


def _figure(title: str, x_title: str, y_title: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(title={"text": title, "x": 0, "y": 0.98, "yanchor": "top"}, **LAYOUT)
    figure.update_xaxes(title_text=x_title)
    figure.update_yaxes(title_text=y_title, rangemode="tozero")
    return figure


def empty_figure(title: str, message: str) -> go.Figure:
    figure = _figure(title, "", "")
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def capacity_curve(frame: pl.DataFrame, marker_tokens: float | None = None) -> go.Figure:
    """Sustainable questions/minute against tokens per question, one line per offer (log-log)."""
    figure = _figure(
        "Sustainable questions per minute by tokens per question",
        "tokens per question (log)",
        "questions per minute (log)",
    )
    bounded = frame.filter(pl.col("questions_per_minute").is_not_null())
    if bounded.is_empty():
        return empty_figure("Sustainable questions per minute", "No offer here publishes a limit")
    for i, (offer, part) in enumerate(
        bounded.sort("tokens_per_question").group_by("offer", maintain_order=True)
    ):
        figure.add_trace(
            go.Scatter(
                x=part["tokens_per_question"].to_list(),
                y=part["questions_per_minute"].to_list(),
                name=str(offer[0]),
                mode="lines+markers",
                line={"color": PALETTE[i % len(PALETTE)]},
                customdata=part["binding_limit"].to_list(),
                hovertemplate="%{y:,.2f} q/min (binding: %{customdata})<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_xaxes(**log_axis(bounded["tokens_per_question"].to_list()))
    figure.update_yaxes(**log_axis(bounded["questions_per_minute"].to_list()), rangemode="normal")
    if marker_tokens:
        figure.add_vline(
            x=marker_tokens,
            line_dash="dot",
            line_color="#6b7280",
            annotation_text="this profile",
            annotation_position="top left",
        )
    return figure


def cost_curve(frame: pl.DataFrame) -> go.Figure:
    """Cost per 1,000 questions against the cache-hit rate, one line per priced offer."""
    if frame.is_empty():
        return empty_figure("Cost by cache-hit rate", "None of these offers publishes a price")
    currency = frame["currency"][0]
    figure = _figure(
        "Cost per 1,000 questions by cache-hit rate",
        "cache-hit rate (share of input tokens)",
        f"cost per 1,000 questions ({currency})",
    )
    for i, (offer, part) in enumerate(frame.sort("cache_hit_rate").group_by("offer", maintain_order=True)):
        figure.add_trace(
            go.Scatter(
                x=part["cache_hit_rate"].to_list(),
                y=[float(v) for v in part["cost_per_1k_questions"].to_list()],
                name=str(offer[0]),
                mode="lines+markers",
                line={"color": PALETTE[i % len(PALETTE)]},
                hovertemplate=f"%{{y:,.4f}} {currency}<extra>%{{fullData.name}}</extra>",
            )
        )
    figure.update_xaxes(tickformat=".0%", range=[0, 1])
    return figure


def time_series(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    color: str | None,
    title: str,
    y_title: str,
    kind: str = "bar",
    x_title: str = "date (UTC)",
) -> go.Figure:
    """A stacked bar or line series over time, one trace per value of `color`."""
    if frame.is_empty():
        return empty_figure(title, "Nothing in this period")
    figure = _figure(title, x_title, y_title)
    groups: Sequence[tuple[str, pl.DataFrame]]
    if color is None:
        groups = [(y_title, frame)]
    else:
        totals = frame.group_by(color).agg(pl.col(y).sum()).sort(y, descending=True)
        groups = [(str(key), frame.filter(pl.col(color) == key).sort(x)) for key in totals[color].to_list()]
    stable = {name: i for i, name in enumerate(sorted(name for name, _ in groups))}  # same colour everywhere
    for name, part in groups:
        # arrays, not lists: plotly checks and copies a list element by element (0.3 s for a month of
        # 15-minute probe points) and sends an array as one typed block; a missing value is a gap (NaN)
        values = part[y].cast(pl.Float64).to_numpy()
        trace_color = PALETTE[stable[name] % len(PALETTE)]
        if kind == "bar":
            figure.add_trace(
                go.Bar(x=part[x].to_numpy(), y=values, name=for_chart(name), marker_color=trace_color)
            )
        else:
            figure.add_trace(
                go.Scatter(
                    x=part[x].to_numpy(),
                    y=values,
                    name=for_chart(name),
                    mode="lines+markers",
                    line={"color": trace_color},
                )
            )
    figure.update_layout(barmode="stack")
    return figure


def histogram(
    values: pl.Series,
    *,
    title: str,
    x_title: str,
    bins: int = 40,
    log_x: bool = False,
    weights: pl.Series | None = None,
) -> go.Figure:
    """Requests per bin of `values`; `weights` is the requests each value stands for (an aggregated export
    bucket is `n_requests` requests of its average size), one each when None."""
    if values.is_empty():
        return empty_figure(title, "No requests in this selection")
    figure = _figure(title, x_title, "requests")
    known = values.is_not_null()  # arrays, as in `time_series`; a missing value is no request to count
    x = values.filter(known).to_numpy()
    if weights is None:
        trace = go.Histogram(x=x, nbinsx=bins, marker_color=PALETTE[0])
    else:
        y = weights.filter(known).to_numpy()
        trace = go.Histogram(x=x, y=y, histfunc="sum", nbinsx=bins, marker_color=PALETTE[0])
    figure.add_trace(trace)
    if log_x:
        figure.update_xaxes(**log_axis(x.tolist()))
    figure.update_layout(hovermode="closest", showlegend=False)
    return figure


def threshold_series(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    title: str,
    y_title: str,
    threshold: float | None = None,
    threshold_label: str = "",
) -> go.Figure:
    """Lines per `color` with an optional alert threshold line (e.g. P99 TTFT > 500 ms)."""
    figure = time_series(
        frame, x=x, y=y, color=color, title=title, y_title=y_title, kind="line", x_title="time (UTC)"
    )
    if threshold is not None and not frame.is_empty():
        figure.add_hline(
            y=threshold,
            line_dash="dash",
            line_color="#dc2626",
            annotation_text=threshold_label,
            annotation_position="top left",
        )
    return figure


def budget_forecast(band: pl.DataFrame, currency: str) -> go.Figure:
    """Cumulative spend this month, the month-end forecast with its band, and the budget lines.

    `band`: date, actual_cumulative, forecast, low, high, budget, pro_rata (money in `currency`).
    """
    figure = _figure("Spend this month against budget", "date (UTC)", f"cumulative spend ({currency})")
    if band.is_empty():
        return empty_figure("Spend this month against budget", "No spend this month yet")

    def values(column: str) -> list[float | None]:
        return [None if v is None else float(v) for v in band[column].to_list()]

    dates = band["date"].to_list()
    figure.add_trace(
        go.Scatter(
            x=dates, y=values("high"), mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"
        )
    )
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=values("low"),
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(37, 99, 235, 0.15)",
            name="forecast interval",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=values("forecast"),
            mode="lines",
            name="forecast",
            line={"color": PALETTE[0], "dash": "dash"},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=values("actual_cumulative"),
            mode="lines+markers",
            name="spent",
            line={"color": PALETTE[0], "width": 3},
        )
    )
    figure.add_trace(
        go.Scatter(x=dates, y=values("budget"), mode="lines", name="budget", line={"color": PALETTE[1]})
    )
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=values("pro_rata"),
            mode="lines",
            name="on-budget pace",
            line={"color": PALETTE[1], "dash": "dot"},
        )
    )
    return figure


def switch_costs(frame: pl.DataFrame) -> go.Figure:
    """What the period cost as served, beside what each target would have cost (with the tokenizer band).

    `frame`: offer, cost, cost_low, cost_high, cost_actual, currency (one row per target).
    """
    priced = frame.filter(pl.col("cost").is_not_null())
    if priced.is_empty():
        return empty_figure("Cost of the period", "No target prices this traffic")
    currency = priced["currency"][0]
    figure = _figure("Cost of the period: as served and on each target", "", f"cost ({currency})")
    actual = next((v for v in frame["cost_actual"].to_list() if v is not None), None)
    labels = ["as served", *(for_chart(offer) for offer in priced["offer"].to_list())]
    costs = [None if actual is None else float(actual), *(float(v) for v in priced["cost"].to_list())]
    upper = [
        0.0,
        *(float(h - c) for h, c in zip(priced["cost_high"].to_list(), priced["cost"].to_list(), strict=True)),
    ]
    lower = [
        0.0,
        *(
            float(c - lo)
            for lo, c in zip(priced["cost_low"].to_list(), priced["cost"].to_list(), strict=True)
        ),
    ]
    colours = ["#6b7280", *PALETTE[: priced.height]]
    figure.add_trace(
        go.Bar(
            x=labels,
            y=costs,
            marker_color=colours,
            showlegend=False,
            error_y={"type": "data", "array": upper, "arrayminus": lower, "visible": True},
            hovertemplate=f"%{{y:,.2f}} {currency}<extra>%{{x}}</extra>",
        )
    )
    figure.update_layout(hovermode="closest")
    return figure


def demand_against_limits(demand: pl.DataFrame, limits: dict[str, float]) -> go.Figure:
    """Tokens per minute as recorded (the busiest minute of each hour) against each target's TPM line.

    `demand`: at, total_tokens (per minute; `models.traffic.demand_series`). `limits`: label → tokens per
    minute the target allows.
    """
    title = "Busiest minute of each hour against each target's token limit"
    if demand.is_empty():
        return empty_figure(title, "No traffic in this period")
    peaks = (
        demand.group_by(pl.col("at").dt.truncate("1h").alias("hour"))
        .agg(pl.col("total_tokens").max().alias("tokens_per_minute"))
        .sort("hour")
    )
    figure = _figure(title, "hour (UTC)", "tokens per minute")
    figure.add_trace(
        go.Scatter(
            x=peaks["hour"].to_list(),
            y=peaks["tokens_per_minute"].to_list(),
            mode="lines",
            name="recorded demand (peak minute)",
            line={"color": "#111827"},
        )
    )
    span = [peaks["hour"][0], peaks["hour"][-1]]
    for i, (label, value) in enumerate(limits.items()):
        figure.add_trace(
            go.Scatter(
                x=span,
                y=[value, value],
                mode="lines",
                name=f"{for_chart(label)}: {value:,.0f}/min",
                line={"color": PALETTE[i % len(PALETTE)], "dash": "dash"},
            )
        )
    figure.update_yaxes(**log_axis(peaks["tokens_per_minute"].to_list(), limits.values()), rangemode="normal")
    return figure


def billing_gap(frame: pl.DataFrame, threshold: float, currency: str) -> go.Figure:
    """The gap between the bill and the cost computed from the logs, per day and provider (`day`,
    `provider`, `gap`, `gap_share`, `flagged`): bars of the gap in money, flagged days in red, each bar's
    share of the bill in its hover, and the threshold named in the title."""
    figure = _figure(
        f"Billed minus computed per day (flagged above {threshold:.1%} of the bill)",
        "day (UTC)",
        f"gap ({currency})",
    )
    figure.update_yaxes(rangemode="normal")
    if frame.is_empty():
        return empty_figure(figure.layout.title.text, "nothing billed or logged in this period")
    for i, provider in enumerate(sorted(set(frame["provider"].fill_null("?").to_list()))):
        part = frame.filter(pl.col("provider").fill_null("?") == provider).sort("day")
        colours = [
            "#dc2626" if flagged else PALETTE[i % len(PALETTE)] for flagged in part["flagged"].to_list()
        ]
        shares = ["n/a" if s is None else f"{s:.2%}" for s in part["gap_share"].to_list()]
        figure.add_bar(
            x=part["day"].to_list(),
            y=part["gap"].to_list(),
            name=for_chart(provider),
            marker_color=colours,
            customdata=shares,
            width=DAY_MS * 0.8,
            hovertemplate="%{x|%Y-%m-%d}: %{y:.4f} "
            + currency
            + " (%{customdata} of the bill)<extra>"
            + for_chart(provider)
            + "</extra>",
        )
    figure.add_hline(y=0, line_color="#4b5563", line_width=1)
    # whole days on the axis, even for a single day (Plotly would zoom a lone bar into microseconds)
    first, last = frame["day"].min(), frame["day"].max()
    assert isinstance(first, date) and isinstance(last, date)
    half_day = timedelta(hours=12)
    figure.update_xaxes(
        type="date",
        tickformat="%Y-%m-%d",
        dtick=DAY_MS,
        range=[
            (datetime.combine(first, time()) - half_day).isoformat(),
            (datetime.combine(last, time()) + half_day).isoformat(),
        ],
    )
    return figure
