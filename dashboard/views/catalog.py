"""Catalog: offers, prices, limits and rules, FX, each with its source and date; local overrides."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import streamlit as st

from dashboard import state
from dashboard.tables import Column
from models.catalog import Offer, OfferVersion
from models.catalog_view import prices_text
from models.money import FxTable, Money, plain
from models.outside_text import for_markdown
from quotascope import settings


def _price(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def _offers_frame(offers: list[Offer], currency: str, fx: FxTable) -> pl.DataFrame:
    """One row per offer, its version in force now: prices in the offer's own currency and in `currency`
    (at the catalog's rate in force today), limits, windows."""
    rows = []
    today = state.now()
    for offer in offers:
        v = offer.version_at(today) if offer.versions[0].effective_from <= today else offer.versions[0]
        limits = v.limits.effective()
        p = v.prices

        def shown(value: Decimal | None, own: str = v.currency) -> Decimal | None:
            if value is None:
                return None
            return fx.convert(Money(value, own), currency, today.date()).money.amount

        rows.append(
            {
                "offer": offer.id,
                "provider": offer.provider,
                "model": offer.model,
                "region": offer.region or None,
                "own": None
                if p is None
                else f"{_price(p.input)} / {_price(p.cached_input) or '–'} / {_price(p.output)} {v.currency}",
                "input_per_mtok": shown(p.input if p else None),
                "cached_input_per_mtok": shown(p.cached_input if p else None),
                "output_per_mtok": shown(p.output if p else None),
                "tpm": limits.tpm,
                "rpm": limits.rpm,
                "itpm": limits.itpm,
                "otpm": limits.otpm,
                "max_concurrent_requests": limits.max_concurrency,
                "scope": limits.scope,
                "windows": ", ".join(f"{w.name} ×{plain(w.multiplier)}" for w in v.windows) or None,
                "versions": len(offer.versions),
                "as_of": v.as_of.isoformat(),
                "file": offer.origin.rsplit("/", 1)[-1],
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def _offer_columns(currency: str) -> list[Column]:
    unpublished = "not published"
    return [
        Column("offer", "Offer"),
        Column("provider", "Provider"),
        Column("model", "Model"),
        Column("region", "Region", missing="any"),
        Column("own", "Input / cached / output per 1M tokens, own currency", missing="unpriced"),
        Column("input_per_mtok", f"Input per 1M tokens ({currency})", 4, missing="unpriced"),
        Column(
            "cached_input_per_mtok", f"Cached input per 1M tokens ({currency})", 4, missing="no cache price"
        ),
        Column("output_per_mtok", f"Output per 1M tokens ({currency})", 4, missing="unpriced"),
        Column("tpm", "Tokens per minute", missing=unpublished),
        Column("rpm", "Requests per minute", missing=unpublished),
        Column("itpm", "Input tokens per minute", missing=unpublished),
        Column("otpm", "Output tokens per minute", missing=unpublished),
        Column("max_concurrent_requests", "Concurrent requests", missing=unpublished),
        Column("scope", "Limits apply per"),
        Column("windows", "Time-of-day prices", missing="same all day"),
        Column("versions", "Versions"),
        Column("as_of", "Prices as of"),
        Column("file", "Catalog file"),
    ]


def _version_details(v: OfferVersion) -> None:
    to = v.effective_to.date().isoformat() if v.effective_to else "open"
    st.markdown(
        f"**{for_markdown(v.version_id)}** — in force {v.since} → {to}, "
        f"{for_markdown(v.currency)}, as of {v.as_of}  \nSource: {for_markdown(v.source)}"
    )
    if v.prices is None:
        st.caption("No token price published for this version (unpriced).")
    else:
        # our own labels and numbers; only the currency code comes from a catalog file
        st.markdown(f"Prices per 1M tokens ({for_markdown(v.currency)}): {prices_text(v.prices)}.")
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
    currency = state.filters().display_currency or "USD"
    st.caption(
        f"Prices in {currency} at the catalog's FX rate in force today (below), beside each offer's own."
    )
    state.show_table(_offers_frame(offers, currency, catalog.fx), _offer_columns(currency), "catalog_table")
    offer_id = st.selectbox("Offer details", [o.id for o in offers], key="catalog_offer")
    if offer_id:
        for version in reversed(catalog.get(offer_id).versions):
            _version_details(version)
            st.divider()
    st.subheader("FX rates")
    fx = pl.DataFrame(
        [
            {"pair": f"{r.base}/{r.quote}", "rate": r.rate, "as_of": r.as_of.isoformat(), "source": r.source}
            for r in catalog.fx.rates
        ],
        schema={"pair": pl.String, "rate": pl.Float64, "as_of": pl.String, "source": pl.String},
    )
    state.show_table(
        fx,
        [
            Column("pair", "Pair (1 base = rate quote)"),
            Column("rate", "Rate", 4),
            Column("as_of", "Published on"),
            Column("source", "Source"),
        ],
        "catalog_fx",
    )


render()
