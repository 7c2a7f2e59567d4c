"""Planner (what-if): a token profile and a demand against offers side by side."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import streamlit as st

from dashboard import charts, state
from models.capacity import Latency
from models.cost import Demand
from models.errors import QuotascopeError
from models.mix import mix_by_weights
from models.money import Money
from models.outside_text import display_frame, for_markdown
from models.plan import Plan, capacity_curve, cost_curve, plan_offers
from models.profile import PRESETS, TokenProfile, rounded_usage_profile
from models.selfhost import SelfHost, break_even

DEFAULT_OFFERS = (
    "volcengine/deepseek-r1",
    "deepseek/deepseek-v4-pro",
    "deepseek/deepseek-flash",
    "cloud/deepseek-r1-10k",
)
PRESET_LABELS = {
    "r1-reasoning": "R1 reasoning (≈4,000 tokens)",
    "chat": "Chat (no chain of thought)",
    "web-search": "Web search / documents (≥10,000)",
    "usage": "From stored usage",
}
TOKEN_GRID = (500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000)
HIT_RATES = tuple(Decimal(i) / 10 for i in range(11))


def _apply_preset() -> None:
    """Fill the token inputs from the chosen preset (a callback, so the inputs stay editable)."""
    name = st.session_state["planner_preset"]
    if name == "usage":
        profile = st.session_state.get("planner_usage_profile")
        if profile is None:
            return
    else:
        profile = PRESETS[name]
    st.session_state["planner_input_tokens"] = int(profile.input)
    st.session_state["planner_output_tokens"] = int(profile.output)
    st.session_state["planner_reasoning_tokens"] = int(profile.reasoning)


def _usage_profile() -> TokenProfile | None:
    if not state.has_database():
        return None
    from storage.reports import read_usage_profile

    try:
        usage = state.read(read_usage_profile)
    except QuotascopeError:
        return None
    if usage.requests == 0:
        return None
    return rounded_usage_profile(usage)


def _inputs() -> tuple[TokenProfile, Latency, Demand, Decimal | None, list[str]]:
    usage = _usage_profile()
    st.session_state["planner_usage_profile"] = usage
    if "planner_input_tokens" not in st.session_state:
        st.session_state["planner_preset"] = st.session_state.get("planner_preset", "r1-reasoning")
        _apply_preset()
    presets: list[str] = [*PRESETS, *(["usage"] if usage is not None else [])]
    left, middle, right = st.columns(3)
    with left:
        st.selectbox(
            "Profile preset",
            presets,
            key="planner_preset",
            format_func=lambda name: PRESET_LABELS.get(name, name),
            on_change=_apply_preset,
        )
        input_tokens = st.number_input(
            "Input tokens per question", min_value=0, step=100, key="planner_input_tokens"
        )
        output_tokens = st.number_input(
            "Output tokens per question (reasoning included)",
            min_value=1,
            step=100,
            key="planner_output_tokens",
        )
        reasoning = st.number_input(
            "of which reasoning", min_value=0, step=100, key="planner_reasoning_tokens"
        )
    with middle:
        peak = st.number_input(
            "Peak questions per minute", min_value=0.1, value=1000.0, step=100.0, key="planner_peak_qpm"
        )
        factor = st.number_input(
            "Peak over average", min_value=1.0, value=3.0, step=0.5, key="planner_peak_factor"
        )
        use_rate = st.toggle(
            "Set a cache-hit rate",
            key="planner_use_hit_rate",
            help="Otherwise none: the direct profile has no reusable prefix",
        )
        hit_rate = st.slider(
            "Cache-hit rate", 0.0, 1.0, 0.5, 0.05, key="planner_hit_rate", disabled=not use_rate
        )
    with right:
        seed = Latency.seed()  # the seed's measurement, the one default every planner starts from
        ttft = st.number_input(
            "TTFT (ms)", min_value=0.0, value=float(seed.ttft_ms), step=10.0, key="planner_ttft_ms"
        )
        speed = st.number_input(
            "Output tokens/s per stream",
            min_value=0.1,
            value=float(seed.tokens_per_s),
            step=1.0,
            key="planner_tokens_per_s",
        )
        catalog = state.catalog()
        chosen = st.multiselect(
            "Offers",
            sorted(catalog.offers),
            key="planner_offers",
            default=[o for o in DEFAULT_OFFERS if o in catalog.offers],
        )
    profile = TokenProfile.direct(
        int(input_tokens), int(output_tokens), reasoning_tokens=min(int(reasoning), int(output_tokens))
    )
    latency = Latency(Decimal(str(ttft)), Decimal(str(speed)))
    demand = Demand.from_peak(Decimal(str(peak)), Decimal(str(factor)))
    return profile, latency, demand, Decimal(str(hit_rate)) if use_rate else None, chosen


def _table(plans: list[Plan]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "offer": p.label,
                "questions / min": None
                if p.capacity.questions_per_minute is None
                else float(p.capacity.questions_per_minute),
                "binding limit": (p.capacity.binding_limit or "none published").upper(),
                "concurrency at peak": None if p.peak_concurrency is None else float(p.peak_concurrency),
                "keys needed": (
                    f"{p.ptu.to_buy} PTU" if p.ptu else f"{p.keys_needed} ({p.request.version.limits.scope})"
                ),
                "cost / question": None if p.cost is None else str(p.cost.per_question.quantize(6)),
                "cost / 1,000 questions": None
                if p.cost is None
                else str(p.cost.per_1k_questions.quantize(4)),
                "monthly": None if p.monthly_cost is None else str(p.monthly_cost.quantize(2)),
                "price version": p.request.version.version_id,
            }
            for p in plans
        ]
    )


def render() -> None:
    st.header("Planner")
    st.caption(
        "How many questions per minute can each offer's limits carry for this profile, at what cost? "
        "Sustainable rate = the minimum over every limit; the binding one is named."
    )
    profile, latency, demand, hit_rate, offer_ids = _inputs()
    if not offer_ids:
        st.info("Choose at least one offer above (the catalog's offers are listed on the Catalog page).")
        return
    filters = state.filters()
    try:
        plans = plan_offers(
            state.catalog(),
            offer_ids,
            profile,
            latency,
            state.now(),
            demand=demand,
            cache_hit_rate=hit_rate,
            display_currency=filters.display_currency,
        )
    except QuotascopeError as e:
        st.error(for_markdown(e))
        return
    best = max(
        (p for p in plans if p.capacity.questions_per_minute is not None),
        key=lambda p: p.capacity.questions_per_minute or 0,
        default=None,
    )
    cols = st.columns(3)
    cols[0].metric("Tokens per question", f"{profile.tokens_per_question:,.0f}")
    if best is not None and best.capacity.questions_per_minute is not None:
        cols[1].metric(
            f"Most q/min: {for_markdown(best.label)}", f"{best.capacity.questions_per_minute:,.1f}"
        )
    cols[2].metric("Questions per month", f"{demand.questions_per_month:,.0f}")
    st.dataframe(
        display_frame(_table(plans)),
        hide_index=True,
        key="planner_table",
        column_config={
            "questions / min": st.column_config.NumberColumn(format="%.1f"),
            "concurrency at peak": st.column_config.NumberColumn(format="%.0f"),
        },
    )
    notes = sorted({a for p in plans for a in p.assumptions})
    if notes:
        st.caption("  \n".join(f"• {for_markdown(n)}" for n in notes))
    left, right = st.columns(2)
    left.plotly_chart(
        charts.capacity_curve(capacity_curve(plans, TOKEN_GRID), float(profile.tokens_per_question)),
        key="planner_capacity_chart",
    )
    right.plotly_chart(charts.cost_curve(cost_curve(plans, HIT_RATES)), key="planner_cost_chart")
    _mix(plans, demand)
    _selfhost(plans)


def _mix(plans: list[Plan], demand: Demand) -> None:
    if len(plans) < 2:
        return
    with st.expander("Multi-offer mix"):
        weights = [
            Decimal(
                str(
                    st.number_input(
                        f"Weight of {p.label}", min_value=0.0, value=1.0, step=0.5, key=f"planner_weight_{i}"
                    )
                )
            )
            for i, p in enumerate(plans)
        ]
        try:
            mix = mix_by_weights(plans, weights, demand)
        except QuotascopeError as e:
            st.error(for_markdown(e))
            return
        st.dataframe(
            display_frame(
                pl.DataFrame(
                    [
                        {
                            "offer": s.label,
                            "share": float(s.share),
                            "peak q/min": float(s.peak_per_minute),
                            "keys": s.keys,
                        }
                        for s in mix.shares
                    ]
                )
            ),
            hide_index=True,
            key="planner_mix_table",
        )
        if mix.cost_per_question is not None and mix.monthly_cost is not None:
            st.metric("Blended cost per 1,000 questions", str((mix.cost_per_question * 1000).quantize(4)))
            st.metric("Blended monthly cost", str(mix.monthly_cost.quantize(2)))
        else:
            st.caption("The mix includes an unpriced offer: no blended cost.")


def _selfhost(plans: list[Plan]) -> None:
    priced = [p for p in plans if p.cost is not None]
    if not priced:
        return
    with st.expander("Self-host vs API"):
        plan = priced[0]
        assert plan.cost is not None
        currency = plan.cost.per_question.currency
        st.caption(f"Compared with {for_markdown(plan.label)}; node cost in {currency}.")
        cols = st.columns(3)
        cost = cols[0].number_input(
            f"Node cost per hour ({currency})", min_value=0.0, value=250.0, key="planner_node_cost"
        )
        speed = cols[1].number_input(
            "Aggregate tokens/s per node", min_value=1.0, value=5000.0, key="planner_node_tps"
        )
        utilization = cols[2].slider("Utilisation", 0.05, 1.0, 0.6, 0.05, key="planner_node_util")
        host = SelfHost(Money(Decimal(str(cost)), currency), Decimal(str(speed)), Decimal(str(utilization)))
        tokens = plan.request.profile.tokens_per_question
        api = Money(plan.cost.per_question.amount / tokens * 1_000_000, currency)
        demand = plan.request.demand
        volume = None if demand is None else demand.questions_per_month * tokens / 1_000_000
        result = break_even(host, api, volume)
        cols = st.columns(3)
        cols[0].metric("Self-hosted per 1M tokens", str(result.selfhost_per_mtok.quantize(4)))
        cols[1].metric("API per 1M tokens", str(result.api_per_mtok.quantize(4)))
        cols[2].metric(
            "Break-even (M tokens/month)",
            "never"
            if result.break_even_mtok_per_month is None
            else f"{result.break_even_mtok_per_month:,.0f}",
        )
        if result.cheaper is not None:
            st.write(
                f"At this demand ({result.demand_mtok_per_month:,.0f}M tokens/month, "
                f"{result.nodes_for_demand} node(s)), the cheaper is **{result.cheaper}**."
            )


render()
