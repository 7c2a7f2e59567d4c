"""The genai-prices base layer priced by quotascope's engine equals genai-prices' own `calc_price`.

Property test over models x dates x usages (hypothesis): every converted model of the installed package, a
request time between 2023 and 2027, and a usage with cache reads, 5-minute and 1-hour cache writes and
reasoning; standard, batch and service-tier prices. Equal to 1e-9 except where we know better, each written
down in `collectors.prices.genai` with its source:

- batch prices genai-prices does not list for a date (it models batch tables from 2026-10-14 on): we apply
  the providers' published 50 % discount (`BATCH_DISCOUNT`), genai-prices charges the standard price;
- per-request fees (`requests_kcount`) are not token prices: quotascope leaves them out.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage
from genai_prices.data import providers
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.prices.genai import BaseLayer, convert_providers
from models.catalog import Offer
from models.pricing import TokenCounts, rates_at
from quotascope.settings import BY_NAME
from storage.catalog import load_catalog

AS_OF = date(2026, 12, 7)


@cache
def layer() -> BaseLayer:
    return convert_providers(providers, "genai-prices (test)", AS_OF)


@cache
def pairs() -> list[tuple[Offer, Any, Any]]:
    """(our offer, their provider, their model) for every converted model."""
    theirs = {f"{p.id}/{m.id}": (p, m) for p in reversed(providers) for m in reversed(p.models)}
    return [(o, *theirs[o.id]) for o in layer().offers]


def their_price(
    provider: Any, model: Any, tokens: TokenCounts, at: datetime, context: dict[str, str]
) -> Decimal:
    usage = Usage(
        input_tokens=tokens.input,
        cache_read_tokens=tokens.cached_input,
        cache_write_tokens=tokens.cache_write,
        cache_write_1h_tokens=tokens.cache_write_1h,
        output_tokens=tokens.output,
        output_reasoning_tokens=tokens.reasoning,
    )
    result = model.calc_price(usage, provider, genai_request_timestamp=at, price_context=context or None)
    return Decimal(result.total_price)


def has_request_fee(model: Any, at: datetime) -> bool:
    return getattr(model.get_prices(at), "requests_kcount", None) is not None


def listed_variant(model: Any, at: datetime, context: dict[str, str]) -> bool:
    """Whether genai-prices lists prices for this variant in force at `at`."""
    return any(
        all(context.get(k) == v for k, v in variant.when.items())
        and (variant.constraint is None or variant.constraint.active(at))
        for variant in model.price_variants or ()
    )


usages = st.builds(
    lambda i, c, w, h, o, r: (i, c, w, h, o, r),
    st.integers(0, 400_000),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 50_000),
    st.integers(0, 100),
)


def tokens_of(raw: tuple[int, int, int, int, int, int]) -> TokenCounts:
    total, cached_pct, write_pct, hour_pct, output, reasoning_pct = raw
    cached = total * cached_pct // 200
    write = (total - cached) * write_pct // 200
    return TokenCounts(
        input=total,
        output=output,
        cached_input=cached,
        cache_write=write,
        cache_write_1h=write * hour_pct // 100,
        reasoning=output * reasoning_pct // 100,
    )


def test_every_model_is_converted_and_most_are_priced_chat_models() -> None:
    offers = layer().offers
    assert len(offers) >= 2_000
    priced = [o for o in offers if (p := o.versions[-1].prices) is not None and (p.input > 0 or p.output > 0)]
    assert len(priced) >= 1_500


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 10**9),
    st.datetimes(datetime(2023, 1, 1), datetime(2027, 12, 31)),
    usages,
    st.sampled_from([{}, {"processing": "batch"}, {"service_tier": "flex"}, {"service_tier": "priority"}]),
)
def test_our_price_equals_calc_price(pick: int, at: datetime, raw: Any, context: dict[str, str]) -> None:
    offer, provider, model = pairs()[pick % len(pairs())]
    tokens = tokens_of(raw)
    aware = at.replace(tzinfo=UTC)
    if has_request_fee(model, aware):
        return  # exception: a per-request fee is not a token price
    if context and not listed_variant(model, aware, context):
        if context == {"processing": "batch"} and provider.id in ("openai", "anthropic", "google"):
            return  # exception: the published batch discount where genai-prices lists none for the date
        context = {}  # no such variant: both price the standard list
    ours = rates_at(
        offer.version_at(at),
        at,
        tokens.input,
        service_tier=context.get("service_tier"),
        batch=context.get("processing") == "batch",
    ).cost(tokens)
    assert ours.currency == "USD"
    theirs = their_price(provider, model, tokens, aware, context)
    assert abs(ours.amount - theirs) <= Decimal("1e-9"), (offer.id, at, tokens, context, ours.amount, theirs)


@pytest.mark.parametrize(
    ("offer_id", "at"),
    [
        ("deepseek/deepseek-chat", datetime(2025, 6, 2, 17, 0)),  # off-peak list 16:30-00:30 UTC
        ("deepseek/deepseek-chat", datetime(2025, 6, 2, 3, 0)),
        ("google/gemini-2.5-pro", datetime(2025, 7, 1, 12, 0)),
        ("openai/o3", datetime(2025, 5, 20)),  # before the 2025-06-10 price cut
        ("openai/o3", datetime(2025, 6, 20)),
        ("anthropic/claude-sonnet-4-5", datetime(2025, 10, 1)),
    ],
)
def test_known_models_across_their_rules(offer_id: str, at: datetime) -> None:
    match = {o.id: (o, p, m) for o, p, m in pairs()}
    offer, provider, model = match[offer_id]
    for size in (1_000, 150_000, 250_000):
        tokens = TokenCounts(
            input=size, cached_input=size // 4, cache_write=size // 8, cache_write_1h=size // 16, output=3_000
        )
        ours = rates_at(offer.version_at(at), at, tokens.input).cost(tokens).amount
        assert abs(ours - their_price(provider, model, tokens, at.replace(tzinfo=UTC), {})) <= Decimal("1e-9")


def test_a_day_boundary_starts_the_new_price_at_midnight_utc() -> None:
    o3 = {o.id: o for o in layer().offers}["openai/o3"]
    cut = datetime(2025, 6, 10)
    before = rates_at(o3.version_at(cut - timedelta(microseconds=1)), cut - timedelta(microseconds=1))
    after = rates_at(o3.version_at(cut), cut)
    assert (before.input, before.output) == (Decimal(10), Decimal(40))
    assert (after.input, after.output) == (Decimal(2), Decimal(8))


# ------------------------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("provider", "model", "offer_id"),
    [
        (None, "gpt-4o", "openai/gpt-4o"),  # several sellers; the maker's name family decides
        (None, "gpt-4o-2024-08-06", "openai/gpt-4o"),  # a dated snapshot
        ("openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        (None, "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
        ("google", "gemini-2.5-pro", "google/gemini-2.5-pro"),
        ("gemini", "gemini-2.5-pro", "google/gemini-2.5-pro"),  # provider aliases
        ("vertex_ai", "gemini-2.5-pro", "google/gemini-2.5-pro"),
        (None, "gemini/gemini-2.5-pro", "google/gemini-2.5-pro"),  # a gateway's provider/model name
        (None, "openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        (None, "anthropic/claude-haiku-4-5", "anthropic/claude-haiku-4-5"),
    ],
)
def test_names_from_logs_and_gateways_find_their_offer(
    provider: str | None, model: str, offer_id: str
) -> None:
    found = layer().catalog().match(provider, model)
    assert found.offer is not None and found.offer.id == offer_id, found.reason


def test_azure_prices_its_own_models_and_falls_back_to_openais() -> None:
    catalog = layer().catalog()
    azure = catalog.match("azure", "gpt-4o")
    assert azure.offer is not None and azure.offer.provider in ("azure", "openai")
    own = [o for o in layer().offers if o.provider == "azure"]
    assert own, "genai-prices lists Azure's own models"
    named = own[0].match.names() if own[0].match is not None else ()
    if named:
        found = catalog.match("azure", named[0])
        assert found.offer is not None and found.offer.provider == "azure"


def test_a_name_several_providers_sell_stays_unpriced_and_says_why() -> None:
    found = layer().catalog().match(None, "deepseek-ai/DeepSeek-R1")
    assert found.offer is None and found.reason.startswith("sold by several providers (")
    nothing = layer().catalog().match(None, "no-such-model-7b")
    assert nothing.offer is None and nothing.reason == "no catalog offer sells this model"
    wrong_provider = layer().catalog().match("anthropic", "gpt-4o")
    assert wrong_provider.offer is None and "no offer of anthropic" in wrong_provider.reason


# ------------------------------------------------------------------------------------------- layering


def test_the_shipped_catalog_wins_from_its_first_version_and_genai_prices_fills_the_history() -> None:
    shipped = load_catalog(Path(BY_NAME["catalog_dir"].default))
    both = shipped.over(layer().catalog())
    gemini = both.get("google/gemini-2.5-pro")
    first_shipped = shipped.get("google/gemini-2.5-pro").versions[0]
    assert gemini.versions[-1].origin == first_shipped.origin  # the shipped versions, unchanged, on top
    history = [v for v in gemini.versions if v.effective_from < first_shipped.effective_from]
    assert history and all(v.origin == "genai-prices (test)" for v in history)
    assert history[-1].effective_to == first_shipped.effective_from
    # a request of 2025 is priced (the issue: it was unpriced before 2026-11-23), per request over 200k
    at = datetime(2025, 7, 1, 12)
    small = rates_at(gemini.version_at(at), at, 150_000)
    large = rates_at(gemini.version_at(at), at, 250_000)
    assert (small.input, small.output, large.input, large.output) == (
        Decimal("1.25"),
        Decimal(10),
        Decimal("2.5"),
        Decimal(15),
    )
    # the shipped version lists no batch price: the base layer's comes along
    assert "batch" in gemini.versions[-1].variants
    assert "google/gemini-2.5-pro" in both.offers and len(both.offers) >= len(layer().offers)
