from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from models.capacity import Latency
from models.catalog import CacheRules, CountingRules, Limits, Prices, PtuRule
from models.cost import Demand
from models.errors import InputError, UnpricedError
from models.mix import mix_by_overflow, mix_by_weights
from models.money import Money
from models.plan import Plan, PlanRequest, make_plan, with_overrides
from models.profile import PRESETS, TokenProfile
from models.selfhost import SelfHost, break_even
from tests.models.factories import d, version

AT = datetime(2025, 6, 1)
LATENCY = Latency(d(400), d(40))


def plan(limits: Limits, prices: Prices | None = None, demand: Demand | None = None, **kw: object) -> Plan:
    v = version(limits=limits, prices=prices, **kw)  # type: ignore[arg-type]
    return make_plan(PlanRequest(v, PRESETS["r1-reasoning"], LATENCY, AT, demand=demand, label=v.offer_id))


def test_presets_match_the_seed_profiles() -> None:
    assert PRESETS["r1-reasoning"].tokens_per_question == 4000
    assert PRESETS["chat"].input == 2000 and PRESETS["chat"].output == 500
    assert PRESETS["web-search"].tokens_per_question >= 10_000


def test_components_formula() -> None:
    p = TokenProfile.from_components(
        system=300, context=1000, user=50, answer=200, reasoning=800, rounds=4, calls=3
    )
    assert p.input == 300 + 4 * (50 + 200) + 1000 + 50
    assert p.output == 1000 and p.reasoning == 800
    assert p.tokens_per_question == 3 * (p.input + p.output)


@pytest.mark.parametrize("bad", [{"system": -1}, {"rounds": -1}, {"history": "forever"}])
def test_components_reject_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(InputError):
        TokenProfile.from_components(**bad)  # type: ignore[arg-type]


def test_plan_document_has_the_contract_fields() -> None:
    p = plan(Limits(tpm=10_000, rpm=100), Prices(input=d(1), output=d(2)), Demand.from_peak(10))
    doc = p.to_json()
    assert doc["questions_per_minute"] == 2.5
    assert doc["binding_limit"] == "tpm"
    assert doc["limits"] == {"tpm": 2.5, "rpm": 100}
    assert doc["tokens_per_question"] == {
        "input": 2000,
        "cached_input": 0,
        "cache_write": 0,
        "output": 2000,
        "reasoning": 1500,
        "counted": 4000,
    }
    assert doc["cost_per_question"] == {"amount": "0.006", "currency": "USD"}
    assert doc["cost_per_1k_questions"] == {"amount": "6", "currency": "USD"}
    assert doc["keys_needed"] == 4
    assert doc["monthly_cost"] == {"amount": "2592", "currency": "USD"}  # 10 q/min × 43,200 min × 0.006
    assert isinstance(doc["concurrency"], float)


def test_unpriced_offer_still_plans_capacity() -> None:
    p = plan(Limits(tpm=10_000))
    assert p.cost is None and p.capacity.questions_per_minute == d("2.5")
    assert any("no token price" in a for a in p.assumptions)


def test_reservation_without_max_tokens_is_flagged() -> None:
    p = plan(Limits(tpm=10_000), counting=CountingRules(reserve_max_tokens=True))
    assert any("max_tokens" in a for a in p.assumptions)


def test_overrides_win_over_the_offer() -> None:
    base = version(limits=Limits(tpm=10_000, rpm=5), prices=Prices(input=d(1), output=d(2)))
    new = with_overrides(base, limits={"tpm": 20_000, "rpm": None}, prices={"output": d(3)})
    assert new.limits.tpm == 20_000 and new.limits.rpm == 5
    assert new.prices == Prices(input=d(1), output=d(3))
    with pytest.raises(UnpricedError):
        with_overrides(version(prices=None), prices={"input": d(1)})


def test_ptu_plan_for_a_demand() -> None:
    rule = PtuRule(4000, d(4), 100, 100)
    v = version(ptu=rule, prices=Prices(input=d(1), output=d(1)))
    p = make_plan(PlanRequest(v, TokenProfile.direct(2000, 2000), LATENCY, AT, demand=Demand.from_peak(500)))
    assert p.ptu is not None
    assert p.ptu.exact == d(500) * (2000 + 4 * 2000) / 4000 and p.ptu.to_buy == 1300
    p100 = make_plan(PlanRequest(v, TokenProfile.direct(2000, 2000), LATENCY, AT, ptus=100))
    assert p100.capacity.questions_per_minute == 40


def test_prefix_cache_lowers_cost_not_tpm_unless_excluded() -> None:
    profile = TokenProfile.from_components(system=6400, user=100, answer=500, rounds=2, history="growing")
    deepseek_like = version(
        prices=Prices(input=d(4), cached_input=d(1), output=d(16)),
        limits=Limits(tpm=10**6),
        cache=CacheRules(enabled=True, min_tokens=64, step_tokens=64),
    )
    p = make_plan(PlanRequest(deepseek_like, profile, LATENCY, AT))
    # system + 1 older round + the previous user turn = 7,100 → 7,040 in 64-token units
    assert p.cache.cached_input == 7040
    assert p.capacity.questions_per_minute == Decimal(10**6) / (profile.input + profile.output)
    assert p.cost is not None
    miss = profile.input - 7040
    assert p.cost.per_question.amount == (miss * 4 + 7040 * 1 + profile.output * 16) / Decimal(10**6)
    excluded = version(
        prices=Prices(input=d(4), cached_input=d(1), output=d(16)),
        limits=Limits(tpm=10**6),
        cache=CacheRules(enabled=True, min_tokens=64, step_tokens=64),
        counting=CountingRules(cached_counted=False),
    )
    q = make_plan(PlanRequest(excluded, profile, LATENCY, AT))
    assert q.capacity.questions_per_minute == Decimal(10**6) / (profile.input - 7040 + profile.output)


# ---- mixes -------------------------------------------------------------------------------------------


def _two() -> tuple[Plan, Plan]:
    a = plan(Limits(tpm=40_000), Prices(input=d(1), output=d(1)), Demand.from_peak(25), offer_id="a")
    b = plan(Limits(tpm=400_000), Prices(input=d(2), output=d(2)), Demand.from_peak(25), offer_id="b")
    return a, b


def test_mix_by_weights() -> None:
    a, b = _two()
    assert a.request.demand is not None
    mix = mix_by_weights([a, b], [d(3), d(1)], a.request.demand)
    first, second = mix.shares
    assert (
        first.share == d("0.75") and first.peak_per_minute == d("18.75") and first.keys == 2
    )  # 10 q/min a key
    assert second.keys == 1
    assert mix.cost_per_question == Money(d("0.75") * d("0.004") + d("0.25") * d("0.008"), "USD")


def test_mix_fill_then_overflow() -> None:
    a, b = _two()
    assert a.request.demand is not None
    mix = mix_by_overflow([a, b], [2, 1], a.request.demand)
    assert [s.peak_per_minute for s in mix.shares] == [20, 5]
    assert mix.unserved_per_minute == 0
    tight = mix_by_overflow([a, a], [1, 1], a.request.demand)
    assert tight.unserved_per_minute == 5
    with pytest.raises(InputError):
        mix_by_overflow([a, b], [1], a.request.demand)


# ---- self-host ---------------------------------------------------------------------------------------


def test_selfhost_break_even() -> None:
    # a node at $36/h doing 5,000 tokens/s at full load → $2 per 1M tokens
    host = SelfHost(Money(d(36), "USD"), d(5000))
    assert host.cost_per_mtok == Money(d(2), "USD")
    result = break_even(host, Money(d(7), "USD"), demand_mtok_per_month=d(10_000))
    assert result.monthly_selfhost == Money(d(36) * 730, "USD")
    assert result.break_even_mtok_per_month == d(36) * 730 / 7
    assert result.capacity_mtok_per_month == d(5000) * 3600 * 730 / 10**6
    assert result.nodes_for_demand == 1 and result.cheaper == "self-host"
    small = break_even(host, Money(d(7), "USD"), demand_mtok_per_month=d(100))
    assert small.cheaper == "api"
    half = SelfHost(Money(d(36), "USD"), d(5000), utilization=d("0.5"))
    assert half.cost_per_mtok == Money(d(4), "USD")
    with pytest.raises(InputError):
        break_even(host, Money(d(7), "CNY"))
