"""Switch: last period's real traffic replayed against other offers' limits and prices."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import polars as pl
import streamlit as st

from dashboard import charts, state
from dashboard.tables import Column
from models.catalog import Catalog
from models.errors import QuotascopeError
from models.replay import ReplayOptions
from storage.replay import UsageFilter
from storage.simulation import MAX_REPLAY_REQUESTS, replay_window, simulate_offers
from storage.store import StoreLike

DEFAULT_TARGETS = ("volcengine/deepseek-r1", "deepseek/deepseek-v4-pro", "cloud/deepseek-r1-10k")


def _compare(
    db: StoreLike,
    catalog: Catalog,
    offers: tuple[str, ...],
    keys: int,
    policy: str,
    low: float,
    high: float,
    currency: str,
    selection: UsageFilter,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The offers side by side, and the recorded demand per minute (from the same read of the traffic)."""
    options = ReplayOptions(
        keys=keys,
        accounts=keys,
        policy=policy,  # type: ignore[arg-type]
        tokenizer_ratio=(Decimal(str(low)), Decimal(str(high))),
        currency=currency,
    )
    simulation = simulate_offers(db, catalog, offers, options, selection, demand_every_s=60)
    assert simulation.demand is not None
    return simulation.comparison(), simulation.demand


def _columns(currency: str) -> list[Column]:
    not_queued = "not queued: refused with a 429"
    return [
        Column("offer", "Target offer"),
        Column("policy", "Over the limit"),
        Column("throttled_percent", "Requests throttled (%)", 2),
        Column("minutes_over_limit", "Minutes over the limit"),
        Column("delay_p50_s", "Added delay, median (s)", 2, missing=not_queued),
        Column("delay_p99_s", "Added delay, 99th percentile (s)", 2, missing=not_queued),
        Column("keys", "Keys replayed"),
        Column("scope", "Limit scope"),
        Column("keys_needed", "Keys needed for no throttling", missing="no limit published"),
        Column("cost", f"Cost on the target ({currency})", 2, missing="unpriced"),
        Column("cost_low", f"Low, tokenizer ratio ({currency})", 2, missing="unpriced"),
        Column("cost_high", f"High, tokenizer ratio ({currency})", 2, missing="unpriced"),
        Column("cost_actual", f"As served ({currency})", 2, missing="unpriced"),
    ]


def render() -> None:
    st.header("Switch")
    st.caption(
        "What the recorded traffic would have cost on another offer, and how often its limits would have "
        "throttled it: demand rebuilt per second and pushed through each target's limits as enforced."
    )
    selection = state.usage_selection("No usage stored yet to replay.")
    if selection is None:
        return
    assert selection.since is not None and selection.until is not None
    # a replay holds every request of its period in memory: the last week by default, a month on request
    days = st.slider("Days to replay (up to the period's end)", 1, 31, 7, key="switch_days")
    asked = replace(selection, since=max(selection.since, selection.until - timedelta(days=days)))
    selection = state.read(replay_window, selection=asked)
    assert selection.since is not None
    shorter = (
        f" (the latest {MAX_REPLAY_REQUESTS:,} requests at most, in whole half hours: the {days} days asked "
        "for hold more than a replay keeps in memory)"
        if selection.since != asked.since
        else ""
    )
    st.caption(
        f"Replaying {selection.since:%Y-%m-%d %H:%M} to {selection.until:%Y-%m-%d %H:%M} UTC{shorter}."
    )
    currency = state.filters().display_currency or "USD"
    catalog = state.catalog()
    cols = st.columns([3, 1, 1, 2])
    targets = cols[0].multiselect(
        "Targets",
        sorted(catalog.offers),
        key="switch_targets",
        default=[t for t in DEFAULT_TARGETS if t in catalog.offers],
    )
    keys = cols[1].number_input("Keys / accounts", min_value=1, value=1, step=1, key="switch_keys")
    policy = cols[2].radio("Over the limit", ["reject", "queue"], key="switch_policy", horizontal=False)
    low, high = cols[3].slider(
        "Tokenizer ratio (target ÷ recorded)", 0.5, 1.5, (0.9, 1.1), 0.05, key="switch_ratio"
    )
    if not targets:
        st.info("Choose at least one target offer.")
        return
    try:
        frame, demand = state.read(
            _compare,
            priced=True,
            offers=tuple(targets),
            keys=int(keys),
            policy=str(policy),
            low=float(low),
            high=float(high),
            currency=currency,
            selection=selection,
        )
    except QuotascopeError as e:
        st.error(str(e))
        return
    frame = frame.with_columns((pl.col("throttled_share") * 100).alias("throttled_percent"))
    state.show_table(frame, _columns(currency), "switch_table")
    left, right = st.columns(2)
    left.plotly_chart(charts.switch_costs(frame), key="switch_cost_chart")
    limits: dict[str, float] = {}
    for offer_id in targets:
        version = catalog.get(offer_id).version_at(None).limits.effective()
        if version.tpm is not None:
            limits[f"{offer_id} ×{keys}"] = float(version.tpm * int(keys))
    right.plotly_chart(charts.demand_against_limits(demand, limits), key="switch_demand_chart")
    if not limits:
        right.caption("None of these targets publishes a TPM; their limits are concurrency or none.")


render()
