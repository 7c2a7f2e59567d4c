"""The shipped catalog (data/catalog/*.toml) loads, and its figures match reference/provider-facts.md.

Expected figures here are typed from provider-facts.md (and the LiteLLM excerpt in tests/data), not read
back from the catalog, so a typo in a TOML file fails a test.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from collectors.prices.litellm import import_litellm
from models.catalog import Catalog, Offer
from models.errors import UnpricedError
from models.money import Money
from models.pricing import TokenCounts, price_tokens, rates_at
from quotascope import settings
from storage.catalog import load_catalog

CATALOG_DIR = Path(settings.BY_NAME["catalog_dir"].default)
EXCERPT = Path(__file__).parent.parent / "data" / "litellm_prices_excerpt.json"

# the ids the planner, its tests and the README use
REQUIRED_IDS = {
    "deepseek/deepseek-chat",
    "deepseek/deepseek-reasoner",
    "deepseek/deepseek-flash",
    "deepseek/deepseek-v4-pro",
    "volcengine/deepseek-r1",
    "cloud/deepseek-r1-10k",
    "azure/deepseek-r1-ptu",
    "azure/o1",
    "azure/o3-mini",
    "anthropic/claude-sonnet-4-5",
    "google/gemini-2.5-pro",
    "bedrock/deepseek-r1",
    "openai/o1",
}


def d(text: str | int) -> Decimal:
    return Decimal(text)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CATALOG_DIR)


def offer(catalog: Catalog, offer_id: str) -> Offer:
    return catalog.get(offer_id)


def test_every_shipped_file_loads_with_the_required_offers(catalog: Catalog) -> None:
    assert set(catalog.offers) >= REQUIRED_IDS
    assert {Path(o.origin).name for o in catalog.offers.values()} | {"fx.toml"} == {
        p.name for p in CATALOG_DIR.glob("*.toml")
    }


def test_every_version_cites_a_source_and_a_date_not_in_the_future(catalog: Catalog) -> None:
    for o in catalog.offers.values():
        for v in o.versions:
            assert len(v.source) > 20, v.version_id
            assert v.as_of <= date(2026, 11, 23), v.version_id
            if v.prices is not None:
                assert v.prices.input > 0 and v.prices.output > 0, v.version_id


def test_deepseek_chat_versions_follow_the_price_history(catalog: Catalog) -> None:
    chat = offer(catalog, "deepseek/deepseek-chat")
    at_2024 = rates_at(chat.version_at(datetime(2024, 9, 1, 12)), datetime(2024, 9, 1, 12))
    assert (at_2024.currency, at_2024.input, at_2024.cached_input, at_2024.output) == ("CNY", 1, d("0.1"), 2)
    at_2025 = rates_at(chat.version_at(datetime(2025, 3, 3, 12)), datetime(2025, 3, 3, 12))
    assert (at_2025.currency, at_2025.input, at_2025.cached_input, at_2025.output) == (
        "USD",
        d("0.27"),
        d("0.07"),
        d("1.10"),
    )
    v32 = chat.version_at(datetime(2026, 1, 5))
    assert (v32.currency, v32.prices) is not None and v32.prices is not None
    assert (v32.prices.input, v32.prices.cached_input, v32.prices.output) == (
        d("0.28"),
        d("0.028"),
        d("0.42"),
    )
    assert v32.windows == ()  # no off-peak stated for V3.2
    assert chat.versions[0].cache.cacheable(63) == 0 and chat.versions[0].cache.cacheable(200) == 192


def test_chat_off_peak_2025_is_half_price_across_midnight(catalog: Catalog) -> None:
    version = offer(catalog, "deepseek/deepseek-chat").version_at(datetime(2025, 3, 3))
    for at, factor in (
        (datetime(2025, 3, 3, 16, 29), 1),
        (datetime(2025, 3, 3, 16, 30), d("0.5")),
        (datetime(2025, 3, 4, 0, 29), d("0.5")),
        (datetime(2025, 3, 4, 0, 30), 1),
    ):
        assert rates_at(version, at).output == d("1.10") * factor, at


def test_reasoner_off_peak_at_17_utc_costs_a_quarter(catalog: Catalog) -> None:
    reasoner = offer(catalog, "deepseek/deepseek-reasoner")
    version = reasoner.version_at(datetime(2025, 3, 3))
    assert version.currency == "CNY"
    tokens = TokenCounts(input=10_000, cached_input=4_000, output=2_000)
    day = price_tokens(version, tokens, datetime(2025, 3, 3, 12, 0))
    night = price_tokens(version, tokens, datetime(2025, 3, 3, 17, 0))
    # 6,000 miss x 4 + 4,000 hit x 1 + 2,000 out x 16 per 1M CNY
    assert day.amount == d("0.06")
    assert night.amount == day.amount * d("0.25")
    assert rates_at(version, datetime(2025, 3, 3, 17)).period == "off-peak"
    assert "deepseek-r1" in reasoner.aliases


def test_flash_peak_monday_is_double_and_saturday_is_off_peak(catalog: Catalog) -> None:
    version = offer(catalog, "deepseek/deepseek-flash").version_at(datetime(2026, 11, 23))
    monday = datetime(2026, 11, 23)  # a Monday
    assert monday.weekday() == 0
    off_peak = rates_at(version, monday + timedelta(hours=12))
    assert (off_peak.currency, off_peak.input, off_peak.cached_input, off_peak.output) == (
        "CNY",
        1,
        d("0.02"),
        4,
    )
    assert off_peak.period == "off-peak"
    peak = rates_at(version, monday + timedelta(hours=2))
    assert (peak.period, peak.input, peak.cached_input, peak.output) == ("peak", 2, d("0.04"), 8)
    saturday = rates_at(version, monday + timedelta(days=5, hours=2))
    assert (saturday.period, saturday.input) == ("off-peak", 1)
    # both peak spans, ends exclusive
    for hhmm, period in (
        ((0, 59), "off-peak"),
        ((1, 0), "peak"),
        ((3, 59), "peak"),
        ((4, 0), "off-peak"),
        ((5, 59), "off-peak"),
        ((6, 0), "peak"),
        ((9, 59), "peak"),
        ((10, 0), "off-peak"),
    ):
        at = monday + timedelta(days=4, hours=hhmm[0], minutes=hhmm[1])  # Friday
        assert rates_at(version, at).period == period, at


def test_v4_pro_peak_prices_are_the_published_peak_list(catalog: Catalog) -> None:
    version = offer(catalog, "deepseek/deepseek-v4-pro").version_at(datetime(2026, 11, 23))
    peak = rates_at(version, datetime(2026, 11, 24, 7, 0))  # Tuesday 07:00 UTC
    assert (peak.cached_input, peak.input, peak.output) == (d("0.30"), 9, 27)


@pytest.mark.parametrize(
    ("offer_id", "concurrency"), [("deepseek/deepseek-flash", 2500), ("deepseek/deepseek-v4-pro", 500)]
)
def test_2026_offers_cap_concurrency_per_account_and_charge_web_search(
    catalog: Catalog, offer_id: str, concurrency: int
) -> None:
    o = offer(catalog, offer_id)
    current = o.version_at(datetime(2026, 11, 23))
    assert (current.limits.max_concurrency, current.limits.scope) == (concurrency, "account")
    assert (current.limits.tpm, current.limits.rpm) == (None, None)
    assert current.fees_per_1k_calls == {"web_search": d(5)}
    assert current.effective_from == datetime(2026, 11, 1)
    # from 2026-08-16 the peak hours apply, but no price is known before the 2026-11 list
    early = o.version_at(datetime(2026, 9, 1))
    assert early.effective_from == datetime(2026, 8, 16) and early.prices is None and early.windows
    with pytest.raises(UnpricedError):
        rates_at(early, datetime(2026, 9, 1))


def test_volcengine_r1_limits_prices_and_february_promotion(catalog: Catalog) -> None:
    ark = offer(catalog, "volcengine/deepseek-r1")
    now = ark.version_at(datetime(2026, 11, 23))
    assert (now.limits.tpm, now.limits.rpm) == (5_000_000, 30_000)
    assert now.prices is not None
    assert (now.prices.input, now.prices.cached_input, now.prices.output) == (4, d("0.8"), 16)
    assert now.prices.cache_storage_per_hour == d("0.017")
    assert "800,000 TPM / 15,000 RPM" in now.notes
    feb = ark.version_at(datetime(2025, 2, 10))
    assert feb.limits.tpm == 5_000_000
    (promotion,) = feb.promotions
    assert promotion.multiplier == d("0.5")
    assert promotion.active(datetime(2025, 2, 28, 23)) and not promotion.active(datetime(2025, 3, 1))
    assert "DeepSeek-R1-250120" in ark.aliases


def test_seed_anchors_follow_from_the_shipped_tpm(catalog: Catalog) -> None:
    """The seed article's 2.5 q/min and 1,250 / 500 q/min, from the catalog's TPM figures."""
    cloud = offer(catalog, "cloud/deepseek-r1-10k").version_at()
    ark = offer(catalog, "volcengine/deepseek-r1").version_at()
    assert cloud.limits.tpm is not None and ark.limits.tpm is not None
    assert Decimal(cloud.limits.tpm) / 4000 == d("2.5")
    assert (Decimal(ark.limits.tpm) / 4000, Decimal(ark.limits.tpm) / 10_000) == (1250, 500)
    assert "ESTIMATE" in cloud.notes


def test_azure_rules(catalog: Catalog) -> None:
    ptu = offer(catalog, "azure/deepseek-r1-ptu").version_at()
    assert ptu.ptu is not None and ptu.prices is None
    assert (ptu.ptu.input_tpm_per_ptu, ptu.ptu.output_weight, ptu.ptu.min_ptu, ptu.ptu.step_ptu) == (
        4000,
        4,
        100,
        100,
    )
    assert ptu.ptu.cached_excluded and not ptu.counting.cached_counted
    o1 = offer(catalog, "azure/o1").version_at()
    assert o1.limits.rpm_per_tpm == (1, 6000)
    assert o1.counting.reserve_max_tokens and o1.counting.window == "second"
    assert replace(o1.limits, tpm=600_000).effective().rpm == 100
    assert offer(catalog, "azure/o3-mini").version_at().limits.rpm_per_tpm == (1, 10_000)
    assert offer(catalog, "azure/o4-mini").version_at().limits.rpm_per_tpm == (1, 1000)


def test_anthropic_counting_and_cache(catalog: Catalog) -> None:
    sonnet = offer(catalog, "anthropic/claude-sonnet-4-5").version_at()
    assert sonnet.prices is not None
    assert (
        sonnet.prices.input,
        sonnet.prices.output,
        sonnet.prices.cache_write,
        sonnet.prices.cached_input,
    ) == (
        3,
        15,
        d("3.75"),
        d("0.30"),
    )
    assert not sonnet.counting.cached_counted and sonnet.counting.window == "bucket"
    cache = sonnet.cache
    assert (cache.min_tokens, cache.write_multiplier, cache.read_multiplier, cache.ttl_s) == (
        1024,
        d("1.25"),
        d("0.1"),
        300,
    )


def test_gemini_counts_input_only_per_project_with_a_long_context_tier(catalog: Catalog) -> None:
    pro = offer(catalog, "google/gemini-2.5-pro").version_at()
    assert (pro.counting.tokens, pro.limits.scope) == ("input", "project")
    short = rates_at(pro, datetime(2026, 11, 23, 12), 100_000)
    long = rates_at(pro, datetime(2026, 11, 23, 12), 200_001)
    assert (short.input, short.output, long.input, long.output, long.tier) == (
        d("1.25"),
        10,
        d("2.5"),
        15,
        200_000,
    )


def test_bedrock_and_openai(catalog: Catalog) -> None:
    bedrock = offer(catalog, "bedrock/deepseek-r1").version_at()
    assert bedrock.prices is not None and (bedrock.prices.input, bedrock.prices.output) == (
        d("1.35"),
        d("5.40"),
    )
    assert bedrock.counting.reserve_max_tokens and bedrock.counting.output_burndown == 1
    assert bedrock.effective_from == datetime(2025, 7, 1)
    o1 = offer(catalog, "openai/o1").version_at()
    assert o1.prices is not None
    assert (o1.prices.input, o1.prices.cached_input, o1.prices.output) == (15, d("7.50"), 60)
    assert o1.counting.reserve_max_tokens and o1.effective_from == datetime(2024, 12, 1)
    assert (o1.cache.cacheable(1023), o1.cache.cacheable(1024), o1.cache.cacheable(1300)) == (0, 1024, 1280)


def test_fx_rates_are_looked_up_by_date(catalog: Catalog) -> None:
    fx = catalog.fx
    assert fx.rate("USD", "CNY", date(2025, 6, 1)).rate == d("7.306")
    assert fx.rate("USD", "CNY", date(2026, 11, 23)).rate == d("6.818")
    # a day before every rate takes the earliest
    assert fx.rate("USD", "CNY", date(2024, 8, 15)).as_of == date(2025, 2, 1)
    # the 2025 rate is what DeepSeek's own dual list implies: 16 CNY = 2.19 USD
    assert abs(fx.rate("USD", "CNY", date(2025, 2, 1)).rate - d(16) / d("2.19")) < d("0.001")
    converted = fx.convert(Money(d("73.06"), "CNY"), "USD", date(2025, 6, 1))
    assert converted.money == Money(d(10), "USD") and converted.rate is not None
    assert converted.rate.as_of == date(2025, 2, 1)


def test_prices_shipped_from_litellm_match_the_litellm_excerpt(catalog: Catalog) -> None:
    """Offers that cite LiteLLM carry its figures (real excerpt of litellm 1.109.1 in tests/data)."""
    imported = import_litellm(json.loads(EXCERPT.read_text()), as_of=date(2026, 11, 23)).catalog
    pairs = {
        "anthropic/claude-sonnet-4-5": "litellm/claude-sonnet-4-5",
        "azure/o1": "litellm/azure/o1",
        "azure/o3-mini": "litellm/azure/o3-mini",
        "google/gemini-2.5-pro": "litellm/gemini/gemini-2.5-pro",
        "google/gemini-2.5-flash": "litellm/gemini/gemini-2.5-flash",
        "bedrock/deepseek-r1": "litellm/us.deepseek.r1-v1:0",
        "openai/o1": "litellm/o1",
    }
    for shipped_id, imported_id in pairs.items():
        shipped = catalog.get(shipped_id).version_at()
        theirs = imported.get(imported_id).version_at()
        assert shipped.prices == theirs.prices, shipped_id
        assert [t.prices for t in shipped.tiers] == [t.prices for t in theirs.tiers], shipped_id
        if theirs.limits.tpm is not None:
            assert (shipped.limits.tpm, shipped.limits.rpm) == (theirs.limits.tpm, theirs.limits.rpm)


def test_flash_hours_agree_with_litellms_off_peak_windows(catalog: Catalog) -> None:
    """Two sources, one schedule: the facts' peak hours and LiteLLM's off_peak_pricing windows."""
    ours = catalog.get("deepseek/deepseek-flash").version_at(datetime(2026, 11, 23))
    imported = import_litellm(json.loads(EXCERPT.read_text()), as_of=date(2026, 11, 23)).catalog
    theirs = imported.get("litellm/deepseek/deepseek-flash").version_at()
    monday = datetime(2026, 11, 23)
    for minute in range(0, 7 * 1440, 10):
        at = monday + timedelta(minutes=minute)
        our_peak = rates_at(ours, at).period == "peak"
        their_off_peak = rates_at(theirs, at).period == "off-peak"
        assert our_peak != their_off_peak, at
    # and the same 2:1 ratio between the two periods
    peak, off = rates_at(theirs, monday + timedelta(hours=2)), rates_at(theirs, monday + timedelta(hours=12))
    assert peak.input == 2 * off.input and peak.output == 2 * off.output
