"""What tokens cost under an offer version: time-of-day windows, promotions, long-context tiers.

Token semantics follow the canonical usage record (DESIGN.md): `input` is *all* prompt tokens, cache hits
and writes included; `output` is all generated tokens, reasoning included. So the cache-miss part of the
prompt is `input - cached_input - cache_write`, and reasoning is never added on top of output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from models.catalog import MINUTES_PER_DAY, OfferVersion, Prices, to_utc_naive
from models.errors import InputError, UnpricedError
from models.money import MILLION, Money


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token totals of one request or of an aggregate of requests priced alike."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0
    requests: int = 1

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write", "reasoning", "requests"):
            if getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', ' ')} tokens cannot be negative")
        if self.cached_input + self.cache_write > self.input:
            raise InputError("cached and cache-write tokens cannot exceed all input tokens")
        if self.reasoning > self.output:
            raise InputError("reasoning tokens are part of output and cannot exceed it")

    @property
    def miss_input(self) -> int:
        return self.input - self.cached_input - self.cache_write


@dataclass(frozen=True, slots=True)
class Rates:
    """Effective per-1M-token prices at one moment, and what made them so."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning_output: Decimal
    currency: str
    version_id: str
    period: str  # the time-of-day window's name, or the version's base period
    promotion: str | None = None
    tier: int | None = None  # the long-context threshold that applied
    discounted: bool = False  # `period` is cheaper than the version's dearest hours (see discounted_period)

    def cost(self, tokens: TokenCounts) -> Money:
        return self.cost_of(
            Decimal(tokens.input),
            Decimal(tokens.output),
            cached_input=Decimal(tokens.cached_input),
            cache_write=Decimal(tokens.cache_write),
            reasoning=Decimal(tokens.reasoning),
        )

    def cost_of(
        self,
        input_tokens: Decimal,
        output_tokens: Decimal,
        *,
        cached_input: Decimal = Decimal(0),
        cache_write: Decimal = Decimal(0),
        reasoning: Decimal = Decimal(0),
    ) -> Money:
        """The same rule on averages (token counts need not be whole)."""
        amount = (
            (input_tokens - cached_input - cache_write) * self.input
            + cached_input * self.cached_input
            + cache_write * self.cache_write
            + (output_tokens - reasoning) * self.output
            + reasoning * self.reasoning_output
        ) / MILLION
        return Money(amount, self.currency)

    def cache_savings(self, tokens: TokenCounts) -> Money:
        """What the cached tokens would have cost at the miss price, minus what they cost."""
        return Money(tokens.cached_input * (self.input - self.cached_input) / MILLION, self.currency)

    def scaled(self, factor: Decimal) -> Rates:
        return Rates(
            self.input * factor,
            self.cached_input * factor,
            self.cache_write * factor,
            self.output * factor,
            self.reasoning_output * factor,
            self.currency,
            self.version_id,
            self.period,
            self.promotion,
            self.tier,
            self.discounted,
        )


def base_prices(
    version: OfferVersion, input_tokens_per_request: int | None = None
) -> tuple[Prices, int | None]:
    """The version's list prices, or a long-context tier's when one request's input exceeds it."""
    if input_tokens_per_request is not None and version.prices is not None:
        for tier in reversed(version.tiers):
            if input_tokens_per_request > tier.above_input_tokens:
                return tier.prices, tier.above_input_tokens
    if version.prices is None:
        raise UnpricedError(
            f"offer {version.offer_id!r} publishes no token price for the version of "
            f"{version.effective_from.date().isoformat()}; give prices with --price-input/--price-output"
        )
    return version.prices, None


def resolve_prices(version: OfferVersion, prices: Prices) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(cached, write, output, reasoning) with the cache multipliers and output filling gaps."""
    cache = version.cache
    if prices.cached_input is not None:
        cached = prices.cached_input
    elif cache.read_multiplier is not None:
        cached = prices.input * cache.read_multiplier
    else:
        cached = prices.input  # no discount known: a hit costs what a miss does
    if prices.cache_write is not None:
        write = prices.cache_write
    elif cache.write_multiplier is not None:
        write = prices.input * cache.write_multiplier
    else:
        write = prices.input
    reasoning = prices.reasoning_output if prices.reasoning_output is not None else prices.output
    return cached, write, prices.output, reasoning


def period_at(version: OfferVersion, at: datetime) -> tuple[str, Decimal]:
    for window in version.windows:
        if window.contains(at):
            return window.name, window.multiplier
    return version.base_period, Decimal(1)


def discounted_period(version: OfferVersion, multiplier: Decimal) -> bool:
    """Whether hours priced at `multiplier` (a time-of-day window's, or 1 outside every window) are cheaper
    than the version's dearest hours: DeepSeek's off-peak window (x0.5), or the hours outside a peak window
    (x1 beside a x1.5 peak)."""
    dearest = max((w.multiplier for w in version.windows), default=Decimal(1))
    return multiplier < max(dearest, Decimal(1))


def rates_at(
    version: OfferVersion,
    at: datetime,
    input_tokens_per_request: int | None = None,
    *,
    time_multiplier: Decimal | None = None,
) -> Rates:
    """Prices in force at `at` (UTC) for a request of the given input size.

    The time-of-day window is the one `at` falls in, unless `time_multiplier` gives a demand-weighted one
    (see `weighted_multiplier`); the promotion is the one active at `at`.
    """
    at = to_utc_naive(at)
    prices, tier = base_prices(version, input_tokens_per_request)
    cached, write, output, reasoning = resolve_prices(version, prices)
    if time_multiplier is None:
        period, multiplier = period_at(version, at)
        discounted = discounted_period(version, multiplier)
    else:
        period, multiplier, discounted = "demand-weighted", time_multiplier, False
    promotion = next((p for p in version.promotions if p.active(at)), None)
    if promotion is not None:
        multiplier *= promotion.multiplier
    rates = Rates(
        prices.input,
        cached,
        write,
        output,
        reasoning,
        version.currency,
        version.version_id,
        period,
        promotion.name if promotion else None,
        tier,
        discounted,
    )
    return rates.scaled(multiplier) if multiplier != 1 else rates


def window_multiplier(version: OfferVersion, weekday: int, minute: int) -> Decimal:
    for window in version.windows:
        if window.contains_minute(weekday, minute):
            return window.multiplier
    return Decimal(1)


def weighted_multiplier(
    version: OfferVersion, hourly_shape: Sequence[float | Decimal] | None = None
) -> Decimal:
    """The demand-weighted average time-of-day multiplier.

    `hourly_shape` gives the share of demand in each UTC hour: 24 values (every day alike) or 168
    (Monday 00:00 first). Demand is spread evenly within an hour. None means flat demand all day.
    """
    if not version.windows:
        return Decimal(1)
    if hourly_shape is None:
        hourly_shape = [1] * 24
    if len(hourly_shape) not in (24, 168):
        raise InputError(f"an hourly demand shape has 24 or 168 values, got {len(hourly_shape)}")
    weights = [Decimal(str(w)) for w in hourly_shape]
    if any(w < 0 for w in weights) or sum(weights) == 0:
        raise InputError("an hourly demand shape needs non-negative values that are not all zero")
    total = Decimal(0)
    weight_sum = Decimal(0)
    for weekday in range(7):
        for hour in range(24):
            weight = weights[hour] if len(weights) == 24 else weights[weekday * 24 + hour]
            if weight == 0:
                continue
            minutes = [window_multiplier(version, weekday, hour * 60 + m) for m in range(60)]
            total += weight * sum(minutes, Decimal(0)) / 60
            weight_sum += weight
    return total / weight_sum


def period_shares(
    version: OfferVersion, hourly_shape: Sequence[float | Decimal] | None = None
) -> dict[str, Decimal]:
    """The share of demand falling in each named period (window names and the base period)."""
    shares: dict[str, Decimal] = {}
    weights = [Decimal(str(w)) for w in (hourly_shape or [1] * 24)]
    weight_sum = Decimal(0)
    for weekday in range(7):
        for minute in range(MINUTES_PER_DAY):
            hour = minute // 60
            weight = weights[hour] if len(weights) == 24 else weights[weekday * 24 + hour]
            name = next(
                (w.name for w in version.windows if w.contains_minute(weekday, minute)), version.base_period
            )
            shares[name] = shares.get(name, Decimal(0)) + weight
            weight_sum += weight
    return {name: value / weight_sum for name, value in shares.items()}


def price_tokens(version: OfferVersion, tokens: TokenCounts, at: datetime) -> Money:
    """The cost of `tokens` sent at `at`; the long-context tier is decided by the average request size."""
    per_request = tokens.input // tokens.requests if tokens.requests else tokens.input
    return rates_at(version, at, per_request).cost(tokens)
