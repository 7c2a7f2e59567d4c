"""Figures are built from frames and checked here (AppTest cannot see inside Plotly)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl

from dashboard import charts


def test_capacity_curve_draws_bounded_offers_on_log_axes() -> None:
    frame = pl.DataFrame(
        {
            "offer": ["a", "a", "b", "b", "c"],
            "tokens_per_question": [1000, 4000, 1000, 4000, 1000],
            "questions_per_minute": [5000.0, 1250.0, 10.0, 2.5, None],
            "binding_limit": ["tpm", "tpm", "tpm", "tpm", None],
        }
    )
    figure = charts.capacity_curve(frame, marker_tokens=4000)
    assert [t.name for t in figure.data] == ["a", "b"]  # c has no limit: no line
    assert list(figure.data[0].y) == [5000.0, 1250.0]
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"
    # every label written out: no bare "2" and "5" between the powers of ten
    assert figure.layout.xaxis.tickformat == ",~r" and figure.layout.yaxis.tickformat == ",~r"
    assert figure.layout.xaxis.dtick == "D2"  # 1, 2 and 5 of each decade: no run-together labels
    assert "tokens per question" in figure.layout.xaxis.title.text
    assert "questions per minute" in figure.layout.yaxis.title.text
    assert figure.layout.shapes  # the profile marker


def test_capacity_curve_says_when_nothing_is_bounded() -> None:
    frame = pl.DataFrame(
        {"offer": ["c"], "tokens_per_question": [1], "questions_per_minute": [None], "binding_limit": [None]},
        schema_overrides={"questions_per_minute": pl.Float64, "binding_limit": pl.String},
    )
    figure = charts.capacity_curve(frame)
    assert not figure.data and "No offer" in figure.layout.annotations[0].text


def test_cost_curve_states_its_currency() -> None:
    frame = pl.DataFrame(
        {
            "offer": ["a", "a"],
            "cache_hit_rate": [0.0, 1.0],
            "cost_per_1k_questions": [Decimal("40"), Decimal("33.6")],
            "currency": ["CNY", "CNY"],
        },
        schema_overrides={"cost_per_1k_questions": pl.Decimal(20, 4)},
    )
    figure = charts.cost_curve(frame)
    assert list(figure.data[0].y) == [40.0, 33.6]
    assert "(CNY)" in figure.layout.yaxis.title.text
    assert figure.layout.xaxis.tickformat == ".0%"


def test_time_series_stacks_by_group_largest_first() -> None:
    frame = pl.DataFrame(
        {
            "day": [date(2026, 11, 1), date(2026, 11, 1), date(2026, 11, 2)],
            "team": ["small", "big", "big"],
            "cost": [1.0, 5.0, 6.0],
        }
    )
    figure = charts.time_series(frame, x="day", y="cost", color="team", title="Spend", y_title="cost (USD)")
    assert [t.name for t in figure.data] == ["big", "small"]
    assert figure.layout.barmode == "stack" and figure.layout.yaxis.title.text == "cost (USD)"
    assert (
        charts.time_series(frame.clear(), x="day", y="cost", color="team", title="Spend", y_title="x")
        .layout.annotations[0]
        .text
        == "Nothing in this period"
    )


def test_threshold_line() -> None:
    frame = pl.DataFrame({"t": [1, 2], "endpoint": ["e", "e"], "p99": [300.0, 700.0]})
    figure = charts.threshold_series(
        frame,
        x="t",
        y="p99",
        color="endpoint",
        title="TTFT",
        y_title="P99 TTFT (ms)",
        threshold=500,
        threshold_label="alert",
    )
    assert figure.layout.shapes[0].y0 == 500


def test_a_log_axis_over_many_decades_labels_powers_of_ten_only() -> None:
    """The 2s and 5s of seven decades crowd a chart's height into touching labels; three or fewer keep them
    (a one-decade axis labelled at powers of ten only would show no label at all)."""
    assert charts.log_axis([0.05, 50_000.0])["dtick"] == 1
    assert charts.log_axis([10.0], [10_000.0])["dtick"] == "D2"  # exactly three decades
    assert charts.log_axis([5_000.0, 9_000.0])["dtick"] == "D2"
    assert charts.log_axis([], [0.0])["dtick"] == "D2"  # nothing to show: no log of zero
    wide = pl.DataFrame(
        {
            "offer": ["a", "a"],
            "tokens_per_question": [500, 100_000],
            "questions_per_minute": [50_000.0, 0.05],
            "binding_limit": ["tpm", "tpm"],
        }
    )
    figure = charts.capacity_curve(wide)
    assert figure.layout.yaxis.dtick == 1 and figure.layout.xaxis.dtick == "D2"
