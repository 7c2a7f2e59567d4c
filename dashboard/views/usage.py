"""Usage profile: what a request really looks like (input, cached share, output, reasoning), and the
derived profile the planner can take."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, state
from models.profile_bins import PRECISION
from storage.explore import SAMPLE_ROWS, SAMPLE_SPAN, usage_sample
from storage.profiles import PERCENTILES
from storage.reports import read_usage_profile


def _open_in_planner(input_tokens: int, output_tokens: int, reasoning: int) -> None:
    st.session_state["planner_preset"] = "usage"
    st.session_state["planner_input_tokens"] = input_tokens
    st.session_state["planner_output_tokens"] = max(1, output_tokens)
    st.session_state["planner_reasoning_tokens"] = min(reasoning, max(1, output_tokens))


def render() -> None:
    st.header("Usage profile")
    selection = state.usage_selection()
    if selection is None:
        return
    since, until = selection.since, selection.until
    provider, model, team = selection.provider, selection.model, selection.team
    assert since is not None and until is not None
    profile = state.read(read_usage_profile, selection=selection)
    if profile.requests == 0:
        st.info("No requests match the sidebar's filters.")
        return
    st.caption(
        f"{profile.requests:,} requests from {since:%Y-%m-%d} to {until:%Y-%m-%d}"
        + "".join(f", {k} {v}" for k, v in (("provider", provider), ("model", model), ("team", team)) if v)
    )
    rows = [
        ("input tokens (all prompt)", profile.input_tokens),
        ("cached input tokens", profile.cached_input_tokens),
        ("output tokens (reasoning included)", profile.output_tokens),
        ("reasoning tokens", profile.reasoning_tokens),
    ]
    if profile.ttft_ms is not None:
        rows.append(("TTFT (ms)", profile.ttft_ms))
    if profile.tokens_per_s is not None:
        rows.append(("output tokens/s", profile.tokens_per_s))
    # a percentile is its bin's value (`models.profile_bins.PRECISION`): whole numbers say so
    table = pl.DataFrame(
        [
            {"per request": name, "mean": round(d.mean, 1)}
            | {k: round(getattr(d, k)) for k, _ in PERCENTILES}
            for name, d in rows
        ]
    )
    left, right = st.columns([3, 2])
    left.dataframe(table, hide_index=True, key="usage_profile_table")
    left.caption(f"{PRECISION.capitalize()}.")
    with right:
        st.metric("Cached share of input", f"{profile.cached_share:.1%}")
        st.metric(
            "Tokens per request (mean)", f"{profile.input_tokens.mean + profile.output_tokens.mean:,.0f}"
        )
        st.button(
            "Open this profile in the planner",
            key="usage_to_planner",
            type="primary",
            on_click=_open_in_planner,
            args=(
                round(profile.input_tokens.mean),
                round(profile.output_tokens.mean),
                round(profile.reasoning_tokens.mean),
            ),
        )
        if st.session_state.get("planner_preset") == "usage" and st.session_state.get("usage_to_planner"):
            st.switch_page("views/planner.py")
    sample = state.read(usage_sample, selection=selection)
    st.caption(
        f"Distributions over a random sample of {sample.height:,} stored rows "
        f"({int(sample['requests'].sum()):,} requests: an aggregated export row counts as its requests, "
        f"each of the row's average size), drawn from the period's latest {SAMPLE_SPAN * SAMPLE_ROWS:,} "
        "requests at most."
    )
    cached = sample.filter(pl.col("cached_share").is_not_null())
    reasoned = sample.filter(pl.col("reasoning_tokens") > 0)
    a, b = st.columns(2)
    a.plotly_chart(
        charts.histogram(
            sample["input_tokens"],
            title="Input tokens per request",
            x_title="input tokens (log)",
            log_x=True,
            weights=sample["requests"],
        ),
        key="usage_input_hist",
    )
    b.plotly_chart(
        charts.histogram(
            cached["cached_share"],
            title="Cached share of input",
            x_title="cached input / input",
            weights=cached["requests"],
        ),
        key="usage_cached_hist",
    )
    c, d = st.columns(2)
    c.plotly_chart(
        charts.histogram(
            sample["output_tokens"],
            title="Output tokens per request",
            x_title="output tokens (reasoning included)",
            weights=sample["requests"],
        ),
        key="usage_output_hist",
    )
    d.plotly_chart(
        charts.histogram(
            reasoned["reasoning_tokens"],
            title="Reasoning tokens (requests that reasoned)",
            x_title="reasoning tokens",
            weights=reasoned["requests"],
        ),
        key="usage_reasoning_hist",
    )


render()
