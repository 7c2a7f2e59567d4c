"""Cost of a question and of a month of demand: time-of-day windows weighted by the demand's hourly shape,
promotions by date, long-context tiers, per-call fees, and FX into a display currency.

Cost per call = (miss·p_in + hit·p_hit + write·p_write + answer·p_out + reasoning·p_reasoning) / 1e6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from models.capacity import CacheUse
from models.catalog import OfferVersion, to_utc_naive
from models.errors import InputError
from models.money import FxRate, FxTable, Money
from models.pricing import Rates, rates_at, weighted_multiplier
from models.profile import TokenProfile

DAYS_PER_MONTH = Decimal(30)
MINUTES_PER_DAY = Decimal(1440)


@dataclass(frozen=True, slots=True)
class Demand:
    """Questions per minute at peak and on average over the month."""

    peak_per_minute: Decimal
    average_per_minute: Decimal
    peak_factor: Decimal
    described: str

    @property
    def questions_per_month(self) -> Decimal:
        return self.average_per_minute * MINUTES_PER_DAY * DAYS_PER_MONTH

    @classmethod
    def from_users(
        cls, users: Decimal | int, questions_per_user_day: Decimal | int, peak_factor: Decimal | int = 1
    ) -> Demand:
        users, per_day, factor = Decimal(users), Decimal(questions_per_user_day), Decimal(peak_factor)
        if users <= 0 or per_day <= 0:
            raise InputError("users and questions per user per day must be positive")
        if factor < 1:
            raise InputError(f"a peak factor is at least 1 (peak over average), got {factor}")
        average = users * per_day / MINUTES_PER_DAY
        return cls(
            average * factor,
            average,
            factor,
            f"{users:,} users × {per_day:,} questions/day, peak {factor}× average",
        )

    @classmethod
    def from_peak(cls, peak_per_minute: Decimal | int, peak_factor: Decimal | int = 1) -> Demand:
        peak, factor = Decimal(peak_per_minute), Decimal(peak_factor)
        if peak <= 0:
            raise InputError("a peak demand must be positive")
        if factor < 1:
            raise InputError(f"a peak factor is at least 1 (peak over average), got {factor}")
        return cls(peak, peak / factor, factor, f"peak {peak:,} questions/min, average peak / {factor}")


@dataclass(frozen=True)
class QuestionCost:
    per_question: Money  # in the display currency
    native: Money  # in the offer's own currency
    cache_savings: Money  # per question, display currency: hits at the miss price minus what they cost
    rates: Rates  # the native rates used (after window weighting, promotion, tier)
    time_multiplier: Decimal
    fx: FxRate | None
    fees: Money = field(default_factory=lambda: Money.zero("USD"))

    @property
    def per_1k_questions(self) -> Money:
        return self.per_question * 1000


def question_cost(
    version: OfferVersion,
    profile: TokenProfile,
    cache: CacheUse,
    *,
    at: datetime,
    hourly_shape: Sequence[float | Decimal] | None = None,
    fx: FxTable | None = None,
    display_currency: str | None = None,
    fee_calls_per_question: Mapping[str, Decimal] | None = None,
) -> QuestionCost:
    """What one question costs under `version` on the date of `at`.

    Demand is spread over the day by `hourly_shape` (None: flat), which weights the time-of-day windows.
    """
    multiplier = weighted_multiplier(version, hourly_shape)
    per_request_input = math.floor(profile.input)
    rates = rates_at(version, at, per_request_input, time_multiplier=multiplier)
    per_call = rates.cost_of(
        profile.input,
        profile.output,
        cached_input=cache.cached_input,
        cache_write=cache.cache_write,
        reasoning=profile.reasoning,
    )
    savings = Money(
        cache.cached_input * (rates.input - rates.cached_input) / Decimal(1_000_000), rates.currency
    )
    fees = Money.zero(version.currency)
    for name, calls in (fee_calls_per_question or {}).items():
        if name not in version.fees_per_1k_calls:
            known = ", ".join(sorted(version.fees_per_1k_calls)) or "none"
            raise InputError(f"offer {version.offer_id!r} has no per-call fee {name!r} (known: {known})")
        if calls < 0:
            raise InputError("per-call fee counts cannot be negative")
        fees = fees + Money(version.fees_per_1k_calls[name] * calls / 1000, version.currency)
    native = per_call * profile.calls + fees
    rate: FxRate | None = None
    shown, shown_savings = native, savings * profile.calls
    target = display_currency.upper() if display_currency else None
    if target and target != native.currency:
        if fx is None:
            raise InputError(f"no FX rates to show {native.currency} in {target}")
        day = to_utc_naive(at).date()
        conversion = fx.convert(native, target, day)
        rate = conversion.rate
        shown = conversion.money
        shown_savings = fx.convert(shown_savings, target, day).money
    return QuestionCost(shown, native, shown_savings, rates, multiplier, rate, fees)


def monthly_cost(cost: QuestionCost, demand: Demand) -> Money:
    return cost.per_question * demand.questions_per_month
