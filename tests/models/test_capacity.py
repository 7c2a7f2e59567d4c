from __future__ import annotations

from decimal import Decimal

import pytest

from models.capacity import (
    CacheUse,
    Latency,
    cache_use,
    concurrency_at,
    counted_tokens,
    keys_needed,
    ptu_limits,
    ptu_needed,
    sustainable_rate,
)
from models.catalog import CacheRules, CountingRules, Limits, PtuRule
from models.errors import InputError
from models.profile import TokenProfile

NO_CACHE = CacheUse(Decimal(0), Decimal(0), "none")
FAST = Latency(Decimal(0), Decimal(1000))


def rate(
    limits: Limits,
    profile: TokenProfile,
    counting: CountingRules | None = None,
    cache: CacheUse = NO_CACHE,
    latency: Latency = FAST,
) -> Decimal | None:
    return sustainable_rate(profile, limits, counting or CountingRules(), cache, latency).questions_per_minute


# ---- the seed article's anchors (Volcano Engine Ark) -------------------------------------------------


@pytest.mark.parametrize(
    ("tpm", "tokens", "expected"),
    [(10_000, 4_000, Decimal("2.5")), (5_000_000, 4_000, Decimal(1250)), (5_000_000, 10_000, Decimal(500))],
)
def test_seed_article_figures_exactly(tpm: int, tokens: int, expected: Decimal) -> None:
    profile = TokenProfile.direct(tokens // 2, tokens // 2)
    capacity = sustainable_rate(profile, Limits(tpm=tpm), CountingRules(), NO_CACHE, Latency.seed())
    assert capacity.questions_per_minute == expected
    assert capacity.binding_limit == "tpm"


def test_slower_generation_raises_concurrency_not_rate() -> None:
    profile = TokenProfile.direct(2000, 2000)
    fast = sustainable_rate(
        profile, Limits(tpm=5_000_000), CountingRules(), NO_CACHE, Latency(Decimal(390), Decimal(70))
    )
    slow = sustainable_rate(
        profile, Limits(tpm=5_000_000), CountingRules(), NO_CACHE, Latency(Decimal(390), Decimal("35.4"))
    )
    assert fast.questions_per_minute == slow.questions_per_minute == 1250
    assert slow.concurrency is not None and fast.concurrency is not None
    assert slow.concurrency > fast.concurrency
    # Little's law by hand: 1,250 q/min × (0.39 s + 2,000 / 35.4 s) / 60
    expected = Decimal(1250) * (Decimal("0.39") + Decimal(2000) / Decimal("35.4")) / 60
    assert slow.concurrency == expected


# ---- every limit, and the binding one is named -------------------------------------------------------


def test_binding_limit_is_the_minimum_and_is_named() -> None:
    profile = TokenProfile.direct(1000, 1000, calls=2)
    capacity = sustainable_rate(
        profile, Limits(tpm=100_000, rpm=40, tpd=1_440_000_000), CountingRules(), NO_CACHE, FAST
    )
    by_name = {r.name: r.questions_per_minute for r in capacity.limits}
    assert by_name == {"tpm": Decimal(25), "rpm": Decimal(20), "tpd": Decimal(250)}
    assert capacity.binding_limit == "rpm"
    assert capacity.questions_per_minute == 20


def test_daily_limits_spread_over_1440_minutes() -> None:
    profile = TokenProfile.direct(500, 500)
    assert rate(Limits(tpd=1_440_000), profile) == 1
    assert rate(Limits(rpd=2880), profile) == 2


def test_concurrency_cap_uses_call_duration() -> None:
    # each call lasts 1 s TTFT + 1,000 tokens at 50/s = 21 s; 7 streams → 20 calls a minute
    profile = TokenProfile.direct(100, 1000)
    latency = Latency(Decimal(1000), Decimal(50))
    assert rate(Limits(max_concurrency=7), profile, latency=latency) == 20


def test_no_limit_means_unbounded_not_zero() -> None:
    capacity = sustainable_rate(TokenProfile.direct(1, 1), Limits(), CountingRules(), NO_CACHE, FAST)
    assert capacity.questions_per_minute is None
    assert capacity.binding_limit is None


def test_zero_limit_is_an_input_error() -> None:
    with pytest.raises(InputError, match="allows nothing"):
        rate(Limits(tpm=0), TokenProfile.direct(1, 1))


# ---- counting rules ----------------------------------------------------------------------------------


def test_input_only_counting_gemini() -> None:
    profile = TokenProfile.direct(3000, 1000)
    assert rate(Limits(tpm=30_000), profile, CountingRules(tokens="input")) == 10


def test_itpm_otpm_split_excluding_cache_reads_anthropic() -> None:
    profile = TokenProfile.direct(10_000, 500)
    cache = CacheUse(Decimal(8000), Decimal(0), "hit-rate")
    counting = CountingRules(cached_counted=False)
    capacity = sustainable_rate(profile, Limits(itpm=40_000, otpm=8_000), counting, cache, FAST)
    assert {r.name: r.questions_per_minute for r in capacity.limits} == {"itpm": 20, "otpm": 16}
    assert capacity.binding_limit == "otpm"


def test_cached_tokens_count_unless_excluded() -> None:
    profile = TokenProfile.direct(4000, 1000)
    cache = CacheUse(Decimal(3000), Decimal(0), "hit-rate")
    assert counted_tokens(profile, CountingRules(), cache).total == 5000
    assert counted_tokens(profile, CountingRules(cached_counted=False), cache).total == 2000


def test_max_tokens_reserved_at_start_azure_bedrock() -> None:
    profile = TokenProfile.direct(1000, 500, max_tokens=4000)
    assert rate(Limits(tpm=50_000), profile, CountingRules(reserve_max_tokens=True)) == 10
    assert rate(Limits(tpm=50_000), profile, CountingRules()) == Decimal(50_000) / 1500


def test_output_burndown_bedrock() -> None:
    profile = TokenProfile.direct(1000, 1000)
    assert rate(Limits(tpm=60_000), profile, CountingRules(output_burndown=Decimal(5))) == 10


def test_azure_rpm_per_tpm_rule_derives_rpm() -> None:
    profile = TokenProfile.direct(10, 10)
    limits = Limits(tpm=60_000, rpm_per_tpm=(6, 1000))
    assert limits.effective().rpm == 360
    capacity = sustainable_rate(profile, limits, CountingRules(), NO_CACHE, FAST)
    assert capacity.binding_limit == "rpm" and capacity.questions_per_minute == 360
    assert Limits(tpm=60_000, rpm_per_tpm=(1, 6000)).effective().rpm == 10  # o1


# ---- cache rules -------------------------------------------------------------------------------------


def test_deepseek_64_token_units() -> None:
    rules = CacheRules(enabled=True, min_tokens=64, step_tokens=64)
    assert [rules.cacheable(n) for n in (63, 64, 127, 128, 1000)] == [0, 64, 64, 128, 960]


def test_openai_1024_then_128_steps() -> None:
    rules = CacheRules(enabled=True, min_tokens=1024, step_tokens=128)
    assert [rules.cacheable(n) for n in (1023, 1024, 1151, 1152, 5000)] == [0, 1024, 1024, 1152, 4992]


def test_anthropic_minimum_whole_prefix() -> None:
    rules = CacheRules(enabled=True, min_tokens=1024, step_tokens=1)
    assert [rules.cacheable(n) for n in (1000, 1024, 3001)] == [0, 1024, 3001]


def test_growing_history_keeps_prefix_sliding_breaks_it() -> None:
    rules = CacheRules(enabled=True, min_tokens=64, step_tokens=64)
    growing = TokenProfile.from_components(system=1000, user=100, answer=400, rounds=3, history="growing")
    sliding = TokenProfile.from_components(system=1000, user=100, answer=400, rounds=3, history="sliding")
    assert growing.input == sliding.input == 1000 + 3 * 500 + 100
    # growing: system + 2 older rounds + the previous user turn = 2,100 → 2,048 in 64-token units
    assert cache_use(growing, rules).cached_input == 2048
    # sliding: only the system prompt survives = 1,000 → 960
    assert cache_use(sliding, rules).cached_input == 960


def test_context_between_history_and_turn_stops_the_prefix() -> None:
    profile = TokenProfile.from_components(system=640, context=3000, user=100, answer=400, rounds=2)
    # system + 1 older round; the previous user turn sat behind the previous context
    assert profile.stable_prefix == 640 + 500


def test_hit_factor_and_given_hit_rate() -> None:
    profile = TokenProfile.direct(2000, 100, stable_prefix=1280)
    rules = CacheRules(enabled=True, min_tokens=64, step_tokens=64, hit_factor=Decimal("0.5"))
    assert cache_use(profile, rules).cached_input == 640
    assert cache_use(profile, rules, Decimal("0.25")).cached_input == 500
    with pytest.raises(InputError):
        cache_use(profile, rules, Decimal("1.5"))


def test_cache_writes_only_where_billed() -> None:
    rules = CacheRules(enabled=True, min_tokens=1024, step_tokens=1)
    profile = TokenProfile.from_components(system=2000, user=100, answer=400, rounds=2)
    billed = cache_use(profile, rules, bills_writes=True)
    assert billed.cached_input == 2000 + 500 + 100
    assert billed.cache_write == (2000 + 2 * 500 + 100) - billed.cached_input
    assert cache_use(profile, rules).cache_write == 0


# ---- keys, concurrency, PTU --------------------------------------------------------------------------


def test_keys_needed_rounds_up() -> None:
    capacity = sustainable_rate(
        TokenProfile.direct(2000, 2000), Limits(tpm=10_000), CountingRules(), NO_CACHE, FAST
    )
    assert keys_needed(Decimal(10), capacity) == 4
    assert keys_needed(Decimal("2.5"), capacity) == 1


def test_littles_law_at_a_given_rate() -> None:
    profile = TokenProfile.direct(100, 600, calls=2)
    latency = Latency(Decimal(0), Decimal(10))  # 60 s a call
    assert concurrency_at(Decimal(5), profile, latency) == 10


def test_azure_ptu_worked_example() -> None:
    # provider-facts: gpt-5.2 3,400 TPM/PTU, weight 8, 1,000 RPM, 200 prompt / 20 response → 105.88 → 150 PTU
    rule = PtuRule(input_tpm_per_ptu=3400, output_weight=Decimal(8), min_ptu=50, step_ptu=50)
    exact, to_buy = ptu_needed(rule, Decimal(1000), Decimal(200), Decimal(20))
    assert round(exact, 2) == Decimal("105.88") and to_buy == 150
    exact, to_buy = ptu_needed(rule, Decimal(1000), Decimal(200), Decimal(20), Decimal("0.5"))
    assert round(exact, 2) == Decimal("76.47") and to_buy == 100


def test_ptu_as_limits_deepseek_r1() -> None:
    rule = PtuRule(input_tpm_per_ptu=4000, output_weight=Decimal(4), min_ptu=100, step_ptu=100)
    limits, counting = ptu_limits(rule, 100)
    assert limits.tpm == 400_000
    profile = TokenProfile.direct(2000, 2000)
    assert rate(limits, profile, counting) == Decimal(400_000) / (2000 + 4 * 2000)
    with pytest.raises(InputError, match="steps of 100"):
        ptu_limits(rule, 150)
