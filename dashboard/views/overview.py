"""Overview: this month's spend against budget and its forecast, cache savings, traffic, and the providers
in use with what their limits carry for the workload actually seen."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import polars as pl
import streamlit as st

from dashboard import charts, state
from dashboard.tables import Column
from models.budget import BudgetStatus, forecast_band
from models.capacity import measured_latency
from models.catalog import Limits
from models.errors import QuotascopeError
from models.forecast import month_start
from models.money import format_amount
from models.outside_text import for_markdown
from models.plan import PlanRequest, make_plan
from models.profile import rounded_usage_profile
from storage.budgets import budget_statuses, read_daily_spend
from storage.explore import usage_dimensions
from storage.replay import UsageFilter
from storage.reports import read_usage_profiles, spend_report


def _money(amount: Decimal | None, currency: str) -> str:
    return "—" if amount is None else f"{format_amount(amount, 2)} {currency}"


def _limits_text(limits: Limits) -> str:
    parts = [(name.upper(), getattr(limits, name)) for name in ("tpm", "rpm", "itpm", "otpm", "tpd")]
    text = " · ".join(f"{label} {value:,}" for label, value in parts if value is not None)
    if limits.max_concurrency is not None:
        text += (" · " if text else "") + f"{limits.max_concurrency:,} concurrent"
    return f"{text} per {limits.scope}" if text else ""


def _providers_table(since: datetime, until: datetime, currency: str) -> pl.DataFrame:
    """Each (provider, model) seen this month: its offer, price, limits, what was measured, and what its
    limits carry for the workload's own profile."""
    catalog = state.catalog()
    rows = []
    month = UsageFilter(since, until)
    profiles = state.read(read_usage_profiles, selection=month, by=("provider", "model"))
    for row in state.read(
        spend_report, priced=True, selection=month, by=("provider", "model"), currency=currency
    ):
        provider, model = row.keys.get("provider"), str(row.keys.get("model"))
        usage = profiles.get((provider, model))  # none only if an ingest landed between the two reads
        offer = catalog.find(provider, model)
        entry: dict[str, object] = dict.fromkeys(_PROVIDER_COLUMNS_SOURCES)
        entry |= {
            "provider": provider,
            "model": model,
            "requests": row.requests,
            "offer": offer.id if offer else "not in catalog",
            "cost": None if row.cost is None else row.cost.amount,
        }
        rows.append(entry)
        if usage is None:
            continue
        if usage.ttft_ms is not None:
            entry["ttft_p50_ms"] = round(usage.ttft_ms.p50)
        if usage.tokens_per_s is not None:
            entry["tokens_per_s_p50"] = round(usage.tokens_per_s.p50, 1)
        if offer is not None and usage.requests:
            version = offer.version_at(until - timedelta(seconds=1))
            limits = version.limits.effective()
            entry["limits"] = _limits_text(limits) or "none published"
            profile = rounded_usage_profile(usage)
            latency = measured_latency(usage)
            plan = make_plan(
                PlanRequest(
                    version,
                    profile,
                    latency,
                    until,
                    label=offer.id,
                    cache_hit_rate=Decimal(str(round(usage.cached_share, 4))),
                    fx=catalog.fx,
                    display_currency=currency,
                )
            )
            rate = plan.capacity.questions_per_minute
            entry["questions_per_minute"] = None if rate is None else round(float(rate), 1)
            entry["binding"] = plan.capacity.binding_limit
            entry["cost_per_1k_requests"] = None if plan.cost is None else plan.cost.per_1k_questions.amount
    if not rows:  # no usage this month up to now (the month's first minute, or only older usage stored)
        return pl.DataFrame(schema=dict.fromkeys(_PROVIDER_COLUMNS_SOURCES, pl.String()))
    return pl.DataFrame(rows, infer_schema_length=None)


def _provider_columns(currency: str) -> list[Column]:
    return [
        Column("provider", "Provider", missing="not in the log"),
        Column("model", "Model"),
        Column("offer", "Offer"),
        Column("requests", "Requests"),
        Column("cost", f"Cost ({currency})", 2, missing="unpriced"),
        Column("ttft_p50_ms", "Time to first token, median (ms)", missing="not logged"),
        Column("tokens_per_s_p50", "Output tokens per second, median", 1, missing="not logged"),
        Column("limits", "Limits", missing="offer not in catalog"),
        Column("questions_per_minute", "Sustainable requests per minute", 1, missing="no limit published"),
        Column("binding", "Binding limit", missing="none"),
        Column("cost_per_1k_requests", f"Cost per 1,000 requests ({currency})", 4, missing="unpriced"),
    ]


_PROVIDER_COLUMNS_SOURCES = [c.source for c in _provider_columns("")]


def _budget_alerts(statuses: list[BudgetStatus]) -> None:
    """One alert per budget and month, at the highest threshold crossed, in the display currency."""
    for status in statuses:
        if status.alert is not None:
            st.warning(for_markdown(status.alert.message), icon=":material/warning:")


def render() -> None:
    st.header("Overview")
    if not state.has_database():
        state.empty_state(
            "No database yet: nothing has been ingested or probed.", "quotascope demo --no-serve"
        )
        return
    try:
        dims = state.read(usage_dimensions)
    except QuotascopeError as e:
        st.error(for_markdown(e))
        return
    if dims.requests == 0:
        state.empty_state("No usage stored yet.", "quotascope ingest PATH")
        return
    now = state.now()
    month = month_start(now.date())
    since = datetime.combine(month, datetime.min.time())
    currency = state.filters().display_currency or "USD"
    st.caption(f"{month:%B %Y} up to {now:%Y-%m-%d %H:%M} UTC; money in {currency} (catalog FX rates).")
    spend = state.read(read_daily_spend, priced=True, currency=currency, selection=UsageFilter(since, now))
    spent = Decimal(sum(spend.daily["amount"].to_list(), Decimal(0))) if spend.daily.height else Decimal(0)
    rows = state.read(spend_report, priced=True, selection=UsageFilter(since, now), by=(), currency=currency)
    total = rows[0] if rows else None
    # every budget converted to the display currency with the dated rate, which the page names
    statuses = state.read(budget_statuses, priced=True, month=month, now=now, currency=currency)
    # the total budget; for a team lead (who sees no total) their team's
    overall = next((s for s in statuses if s.budget.scope == "total"), None) or next(
        (s for s in statuses if s.budget.scope == "team"), None
    )
    cols = st.columns(4)
    cols[0].metric("Spent this month", _money(spent, currency))
    if overall is not None:
        f = overall.forecast
        cols[1].metric(
            "Forecast month end",
            _money(f.forecast, currency),
            help=f"{f.confidence:.0%} interval {_money(f.low, currency)} – {_money(f.high, currency)}",
        )
        cols[2].metric(
            "Budget used",
            f"{overall.share_spent:.0%}",
            delta=f"forecast {overall.share_forecast:.0%} of {_money(overall.budget.amount, currency)}"
            + ("" if overall.budget.scope == "total" else f" ({overall.budget.label})"),
            delta_color="inverse",
            help=f"Budget {overall.describe_amount()}",
        )
    else:
        cols[1].metric("Forecast month end", "no budget")
        cols[2].metric("Budget used", "—", help="quotascope budget set --scope total --amount N --currency C")
    savings = total.cache_savings.amount if total is not None and total.cache_savings is not None else None
    cols[3].metric("Cache savings", _money(savings, currency))
    cols = st.columns(4)
    if total is not None:
        cols[0].metric("Requests", f"{total.requests:,}")
        cols[1].metric("Input tokens", f"{total.input_tokens:,}")
        cols[2].metric("Cached share", f"{total.cached_input_tokens / max(total.input_tokens, 1):.0%}")
        cols[3].metric("Output tokens", f"{total.output_tokens:,}")
    if overall is not None:
        st.plotly_chart(
            charts.budget_forecast(forecast_band(overall), currency), key="overview_forecast_chart"
        )
    converted = [s for s in statuses if s.rate is not None]
    if converted:
        st.caption(
            "Budgets converted to the display currency with the catalog's dated rate (sources on the "
            "Catalog page): " + "; ".join(f"{s.budget.label} {s.describe_amount()}" for s in converted)
        )
    _budget_alerts(statuses)
    if total is not None and total.unpriced_requests:
        unknown = ", ".join(
            for_markdown(m) for m in sorted({m.split(" (")[0] for m in total.unpriced_models})
        )
        st.info(
            f"{total.unpriced_requests:,.0f} requests this month are unpriced ({unknown}); "
            "they are not counted as free. Add the offer with your own catalog file (see the Catalog page)."
        )
    st.subheader("Providers in use")
    st.caption(
        "Sustainable q/min and cost per 1,000 requests for this month's average request to each model, "
        "under the offer's limits, with the measured TTFT, tokens/s and cache share."
    )
    providers = _providers_table(since, now, currency)
    state.show_table(providers, _provider_columns(currency), "overview_providers")


render()
