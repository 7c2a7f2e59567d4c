"""Catalog: offers, prices, limits and rules, FX, each with its source and date; local overrides."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import state
from models.catalog import Offer, OfferVersion
from models.money import plain
from models.outside_text import for_markdown
from quotascope import settings


def _price(value: object) -> str | None:
    return None if value is None else plain(value)  # type: ignore[arg-type]


def _offers_frame(offers: list[Offer]) -> pl.DataFrame:
    rows = []
    for offer in offers:
        v = (
            offer.version_at(state.now())
            if offer.versions[0].effective_from <= state.now()
            else offer.versions[0]
        )
        limits = v.limits.effective()
        rows.append(
            {
                "offer": offer.id,
                "provider": offer.provider,
                "model": offer.model,
                "region": offer.region,
                "currency": v.currency,
                "input / 1M": _price(v.prices.input if v.prices else None),
                "cached / 1M": _price(v.prices.cached_input if v.prices else None),
                "output / 1M": _price(v.prices.output if v.prices else None),
                "TPM": limits.tpm,
                "RPM": limits.rpm,
                "ITPM": limits.itpm,
                "OTPM": limits.otpm,
                "concurrency": limits.max_concurrency,
                "scope": limits.scope,
                "time windows": ", ".join(f"{w.name} ×{plain(w.multiplier)}" for w in v.windows) or None,
                "versions": len(offer.versions),
                "as of": v.as_of,
                "file": offer.origin.rsplit("/", 1)[-1],
            }
        )
    return pl.DataFrame(rows)


def _version_details(v: OfferVersion) -> None:
    to = v.effective_to.date().isoformat() if v.effective_to else "open"
    st.markdown(
        f"**{for_markdown(v.version_id)}** — in force {v.effective_from.date()} → {to}, "
        f"{for_markdown(v.currency)}, as of {v.as_of}  \nSource: {for_markdown(v.source)}"
    )
    if v.prices is None:
        st.caption("No token price published for this version (unpriced).")
    else:
        p = v.prices
        st.write(
            {
                k: _price(getattr(p, k))
                for k in ("input", "cached_input", "cache_write", "output", "reasoning_output")
                if getattr(p, k) is not None
            }
        )
    for w in v.windows:
        days = (
            "every day"
            if len(w.weekdays) == 7
            else "weekdays " + ",".join(str(d) for d in sorted(w.weekdays))
        )
        st.caption(
            f"Window {for_markdown(w.name)}: {', '.join(s.label() for s in w.spans)} UTC, {days}, prices ×"
            f"{plain(w.multiplier)} (other hours: {v.base_period})"
        )
    for promo in v.promotions:
        st.caption(
            f"Promotion {for_markdown(promo.name)}: {promo.start.date()} → {promo.end.date()}, "
            f"×{plain(promo.multiplier)}"
        )
    for tier in v.tiers:
        st.caption(
            f"Above {tier.above_input_tokens:,} input tokens: input {plain(tier.prices.input)}, "
            f"output {plain(tier.prices.output)}"
        )
    for name, fee in v.fees_per_1k_calls.items():
        st.caption(f"Fee {for_markdown(name)}: {plain(fee)} {for_markdown(v.currency)} per 1,000 calls")
    c, k = v.counting, v.cache
    st.caption(
        f"Counting: {c.tokens} tokens, cached {'counted' if c.cached_counted else 'not counted'}, "
        f"max_tokens {'reserved at start' if c.reserve_max_tokens else 'not reserved'}, output ×"
        f"{plain(c.output_burndown)}, enforced per {c.window}.  \nCache: "
        + (f"from {k.min_tokens} tokens in steps of {k.step_tokens}" if k.enabled else "none known")
    )
    if v.ptu is not None:
        st.caption(
            f"PTU: {v.ptu.input_tpm_per_ptu:,} input TPM per PTU, output ×{plain(v.ptu.output_weight)}, "
            f"from {v.ptu.min_ptu} in steps of {v.ptu.step_ptu}"
        )
    if v.notes:
        st.caption(f"Notes: {for_markdown(v.notes)}")


def render() -> None:
    st.header("Catalog")
    catalog = state.catalog()
    user = settings.get("user_catalog")
    st.caption(
        f"{len(catalog.offers)} offers from `{settings.get('catalog_dir')}`"
        + (
            f" and your overrides in `{user}`"
            if user
            else "; add or override offers in your own TOML (QUOTASCOPE_USER_CATALOG or --catalog)."
        )
    )
    providers = sorted({o.provider for o in catalog.offers.values()})
    chosen = st.multiselect("Providers", providers, key="catalog_providers")
    offers = [o for o in catalog.offers.values() if not chosen or o.provider in chosen]
    st.dataframe(_offers_frame(offers), hide_index=True, key="catalog_table")
    offer_id = st.selectbox("Offer details", [o.id for o in offers], key="catalog_offer")
    if offer_id:
        for version in reversed(catalog.get(offer_id).versions):
            _version_details(version)
            st.divider()
    st.subheader("FX rates")
    st.dataframe(
        pl.DataFrame(
            [
                {"pair": f"{r.base}/{r.quote}", "rate": plain(r.rate), "as of": r.as_of, "source": r.source}
                for r in catalog.fx.rates
            ]
        ),
        hide_index=True,
        key="catalog_fx",
    )


render()
