"""Sustainable questions per minute under an offer's limits, and the concurrency that rate needs.

The rate is the minimum over every limit the offer has, and the limit that gives it is named (DESIGN.md):

    TPM / counted    ITPM / counted_in    OTPM / counted_out    RPM / calls
    TPD / (1440 · counted)    RPD / (1440 · calls)    max_concurrency / (calls · W)

with `W = TTFT + O / tokens_per_second` in minutes, and Little's law `L = λ · W` for the concurrency a rate
needs. At a fixed TPM slower generation raises the concurrency needed, not the questions per minute.

What a request counts against the limits follows the offer's counting rules: which tokens count
(input+output, input only — Gemini, output only), whether cache reads count (Anthropic ITPM: no), whether
`max_tokens` is charged at the start (Azure, Bedrock, OpenAI), and an output burn-down multiplier (Bedrock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from models.catalog import CacheRules, CountingRules, Limits, PtuRule
from models.errors import InputError
from models.profile import ZERO, TokenProfile
from models.usage import UsageProfile

MINUTES_PER_DAY = Decimal(1440)
SECONDS_PER_MINUTE = Decimal(60)

# The seed article's measurement on Volcano Engine Ark, used when no latency is given (and said so).
SEED_TTFT_MS = Decimal("390")
SEED_TOKENS_PER_S = Decimal("35.4")


@dataclass(frozen=True, slots=True)
class Latency:
    ttft_ms: Decimal
    tokens_per_s: Decimal
    assumed: bool = False  # True when taken from the seed measurement rather than given or measured

    def __post_init__(self) -> None:
        if self.ttft_ms < 0:
            raise InputError("TTFT cannot be negative")
        if self.tokens_per_s <= 0:
            raise InputError("tokens per second must be positive")

    def call_minutes(self, output_tokens: Decimal) -> Decimal:
        """W: how long one call holds a stream open, in minutes."""
        seconds = self.ttft_ms / 1000 + output_tokens / self.tokens_per_s
        return seconds / SECONDS_PER_MINUTE

    @classmethod
    def seed(cls) -> Latency:
        return cls(SEED_TTFT_MS, SEED_TOKENS_PER_S, assumed=True)


def given_latency(ttft_ms: Decimal | None, tokens_per_s: Decimal | None) -> Latency:
    """The latency a user gave; a figure left out is the seed measurement's, and the latency is then marked
    assumed. Zero is a figure (a TTFT of 0 ms), never "not given"."""
    seed = Latency.seed()
    if ttft_ms is None and tokens_per_s is None:
        return seed
    return Latency(
        seed.ttft_ms if ttft_ms is None else ttft_ms,
        seed.tokens_per_s if tokens_per_s is None else tokens_per_s,
        assumed=ttft_ms is None or tokens_per_s is None,
    )


def measured_latency(usage: UsageProfile) -> Latency:
    """The median TTFT and tokens/s that stored usage logged, each falling back to the seed measurement
    (and then marked assumed) where the logs did not have it."""
    seed = Latency.seed()
    ttft = Decimal(str(round(usage.ttft_ms.p50))) if usage.ttft_ms else seed.ttft_ms
    speed = Decimal(str(round(usage.tokens_per_s.p50, 1))) if usage.tokens_per_s else seed.tokens_per_s
    return Latency(ttft, speed, assumed=usage.ttft_ms is None)


@dataclass(frozen=True, slots=True)
class CacheUse:
    """Prompt tokens of one call served from cache (hits) and written to it (billed writes)."""

    cached_input: Decimal
    cache_write: Decimal
    method: str  # "prefix", "hit-rate" or "none"


@dataclass(frozen=True, slots=True)
class Counted:
    """What one call counts against the limits."""

    input: Decimal  # against ITPM (and TPM when input counts)
    output: Decimal  # against OTPM (and TPM when output counts)
    total: Decimal  # against TPM / TPD


@dataclass(frozen=True, slots=True)
class LimitRate:
    name: str  # "tpm", "rpm", ...
    limit: int
    questions_per_minute: Decimal


@dataclass(frozen=True, slots=True)
class Capacity:
    questions_per_minute: Decimal | None  # None: no limit applies (unbounded as far as we know)
    binding_limit: str | None
    limits: tuple[LimitRate, ...]
    counted: Counted
    call_minutes: Decimal
    concurrency: Decimal | None  # streams open at the sustainable rate (Little's law)

    def rate_under(self, name: str) -> Decimal | None:
        return next((r.questions_per_minute for r in self.limits if r.name == name), None)


def cache_use(
    profile: TokenProfile, cache: CacheRules, hit_rate: Decimal | None = None, *, bills_writes: bool = False
) -> CacheUse:
    """Cache hits from prefix reuse under the offer's rules, or from a given hit rate.

    With prefix reuse the stable prefix is rounded down to what the provider caches (DeepSeek: 64-token units;
    OpenAI: 1,024 then 128-token steps), times the best-effort hit factor. Where the provider bills cache
    writes, the part of the next request's prefix not already cached is written once per call.
    """
    if hit_rate is not None:
        if not Decimal(0) <= hit_rate <= 1:
            raise InputError(f"a cache-hit rate is a share between 0 and 1, got {hit_rate}")
        return CacheUse(profile.input * hit_rate, ZERO, "hit-rate")
    if not cache.enabled:
        return CacheUse(ZERO, ZERO, "none")
    cached = Decimal(cache.cacheable(_floor(profile.stable_prefix))) * cache.hit_factor
    write = ZERO
    if bills_writes:
        next_cacheable = Decimal(cache.cacheable(_floor(profile.next_prefix)))
        write = max(ZERO, min(next_cacheable - cached, profile.input - cached))
    return CacheUse(min(cached, profile.input), write, "prefix")


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def counted_tokens(profile: TokenProfile, counting: CountingRules, cache: CacheUse) -> Counted:
    counted_in = profile.input if counting.cached_counted else profile.input - cache.cached_input
    out = profile.output
    if counting.reserve_max_tokens and profile.max_tokens is not None:
        out = max(out, Decimal(profile.max_tokens))
    counted_out = out * counting.output_burndown
    total = {
        "input+output": counted_in + counted_out,
        "input": counted_in,
        "output": counted_out,
    }[counting.tokens]
    return Counted(counted_in, counted_out, total)


def _per_question(limit: int | None, units_per_question: Decimal) -> Decimal | None:
    if limit is None:
        return None
    if units_per_question <= 0:
        return None  # the question uses none of what this limit counts
    return Decimal(limit) / units_per_question


def sustainable_rate(
    profile: TokenProfile,
    limits: Limits,
    counting: CountingRules,
    cache: CacheUse,
    latency: Latency,
) -> Capacity:
    """Questions per minute the limits allow, the binding limit, and the concurrency at that rate."""
    limits = limits.effective()
    for name in ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency"):
        value = getattr(limits, name)
        if value is not None and value <= 0:
            raise InputError(f"a {name.upper().replace('_', ' ')} limit of {value} allows nothing")
    counted = counted_tokens(profile, counting, cache)
    calls = profile.calls
    call_minutes = latency.call_minutes(profile.output)
    candidates: list[tuple[str, int | None, Decimal | None]] = [
        ("tpm", limits.tpm, _per_question(limits.tpm, calls * counted.total)),
        ("itpm", limits.itpm, _per_question(limits.itpm, calls * counted.input)),
        ("otpm", limits.otpm, _per_question(limits.otpm, calls * counted.output)),
        ("rpm", limits.rpm, _per_question(limits.rpm, calls)),
        ("tpd", limits.tpd, _per_question(limits.tpd, MINUTES_PER_DAY * calls * counted.total)),
        ("rpd", limits.rpd, _per_question(limits.rpd, MINUTES_PER_DAY * calls)),
        ("concurrency", limits.max_concurrency, _per_question(limits.max_concurrency, calls * call_minutes)),
    ]
    rates = tuple(
        LimitRate(name, limit, rate)
        for name, limit, rate in candidates
        if limit is not None and rate is not None
    )
    if not rates:
        return Capacity(None, None, (), counted, call_minutes, None)
    binding = min(rates, key=lambda r: r.questions_per_minute)
    concurrency = binding.questions_per_minute * calls * call_minutes
    return Capacity(binding.questions_per_minute, binding.name, rates, counted, call_minutes, concurrency)


def concurrency_at(rate_per_minute: Decimal, profile: TokenProfile, latency: Latency) -> Decimal:
    """Little's law: streams open at a given question rate."""
    return rate_per_minute * profile.calls * latency.call_minutes(profile.output)


def keys_needed(peak_per_minute: Decimal, capacity: Capacity) -> int:
    """Keys (or accounts, or projects: the limit's scope) for a peak: ceil(peak / sustainable per scope)."""
    if peak_per_minute < 0:
        raise InputError("a peak demand cannot be negative")
    if capacity.questions_per_minute is None or peak_per_minute == 0:
        return 1
    return max(1, math.ceil(peak_per_minute / capacity.questions_per_minute))


def ptu_needed(
    rule: PtuRule,
    requests_per_minute: Decimal,
    prompt_tokens: Decimal,
    response_tokens: Decimal,
    cache_hit_rate: Decimal = ZERO,
) -> tuple[Decimal, int]:
    """Azure provisioned throughput: (exact PTU, PTU to buy in the offer's minimum and steps).

    Normalised TPM = RPM · prompt · (1 − cache rate) + weight · RPM · response, divided by input TPM per PTU.
    """
    uncached = (1 - cache_hit_rate) if rule.cached_excluded else Decimal(1)
    normalised = requests_per_minute * prompt_tokens * uncached + rule.output_weight * requests_per_minute * (
        response_tokens
    )
    exact = normalised / Decimal(rule.input_tpm_per_ptu)
    steps = math.ceil(exact / rule.step_ptu) if exact > 0 else 0
    return exact, max(rule.min_ptu, steps * rule.step_ptu)


def ptu_limits(rule: PtuRule, ptus: int) -> tuple[Limits, CountingRules]:
    """Provisioned units as limits: input TPM with output weighted and cached input excluded."""
    if ptus < rule.min_ptu or ptus % rule.step_ptu:
        raise InputError(
            f"PTU are bought from {rule.min_ptu} in steps of {rule.step_ptu}; {ptus} is not one of them"
        )
    counting = CountingRules(
        tokens="input+output", cached_counted=not rule.cached_excluded, output_burndown=rule.output_weight
    )
    return Limits(tpm=ptus * rule.input_tpm_per_ptu, scope="account"), counting
