"""Catalog values: offers, effective-dated price versions, limits, counting and cache rules, FX.

An *offer* is a (provider, model, region/tier) sold at a price under limits. Each version of an offer is
complete (prices, limits, rules) and carries `effective_from`, an optional `effective_to`, its `source` and
`as_of` date. Cost is always computed with the version in force at the request's timestamp.

Parsing catalog documents into these values is `models.catalog_parse`'s job, reading the files
`storage.catalog`'s, and the genai-prices base layer is converted by `collectors.prices.genai`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from models.errors import InputError
from models.money import FxTable

Scope = Literal["key", "account", "project"]
CountedTokens = Literal["input+output", "input", "output"]
Window = Literal["minute", "second", "bucket"]

SCOPES: tuple[Scope, ...] = ("key", "account", "project")
COUNTED_TOKENS: tuple[CountedTokens, ...] = ("input+output", "input", "output")
WINDOWS: tuple[Window, ...] = ("minute", "second", "bucket")
# Bounds every catalog value keeps, checked when a catalog is read (`catalog validate` included): beyond them
# a value is a unit mistake or hostile, and would carry money past Decimal's 28 digits. The dearest model
# today costs USD 600 per 1M output tokens, 15 million in Vietnamese dong: a billion leaves room for both.
MAX_PRICE_PER_MTOK = Decimal(1_000_000_000)
MAX_CATALOG_NUMBER = Decimal(1_000_000_000)  # any other number: multipliers, fees, FX rates, PTU weights
MAX_CATALOG_WHOLE = 10**15  # limits (TPM, RPM, ...), cache steps, token thresholds

ALL_DAYS = frozenset(range(7))
MINUTES_PER_DAY = 1440


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Prices:
    """Per 1M tokens, in the version's currency. `None` means the offer does not sell it separately."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning_output: Decimal | None = None
    cache_write_1h: Decimal | None = None  # Anthropic's 1-hour cache writes; None: priced as `cache_write`
    # keeping tokens in a provider's cache, per 1M tokens per hour (Volcano Engine Ark bills it); shown, not
    # yet used in costs
    cache_storage_per_hour: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """Minutes of the day in UTC, [start, end). `end <= start` wraps past midnight."""

    start_minute: int
    end_minute: int

    def label(self) -> str:
        if self.start_minute == self.end_minute:  # only a whole day parses this way
            return "00:00-24:00"
        return f"{_hhmm(self.start_minute)}-{_hhmm(self.end_minute)}"


@dataclass(frozen=True, slots=True)
class PriceWindow:
    """A time-of-day window (DeepSeek off-peak/peak): its own price list where `prices` is given, and every
    token price times `multiplier`. Which minutes it holds is decided by `models.pricing` (the one engine)."""

    name: str
    spans: tuple[TimeSpan, ...]
    multiplier: Decimal
    weekdays: frozenset[int] = ALL_DAYS  # 0 = Monday
    prices: Prices | None = None


@dataclass(frozen=True, slots=True)
class Promotion:
    """A dated discount: every token price times `multiplier` from `start` up to, not including, `end`."""

    name: str
    start: datetime
    end: datetime
    multiplier: Decimal

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class ContextTier:
    """Prices that apply to a whole request once its input exceeds `above_input_tokens`."""

    above_input_tokens: int
    prices: Prices


@dataclass(frozen=True, slots=True)
class PriceVariant:
    """The price list of a service tier (OpenAI flex / priority / scale, Anthropic priority) or of batch
    processing, replacing the version's standard one (with its own long-context tiers)."""

    prices: Prices
    tiers: tuple[ContextTier, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    tpm: int | None = None
    rpm: int | None = None
    tpd: int | None = None
    rpd: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    max_concurrency: int | None = None
    scope: Scope = "key"
    # Azure's rule "N RPM per M TPM": (N, M); gives an RPM wherever a TPM is known and no RPM is set.
    rpm_per_tpm: tuple[int, int] | None = None

    def effective(self) -> Limits:
        """The limits with the RPM-per-TPM rule applied."""
        if self.rpm is None and self.tpm is not None and self.rpm_per_tpm is not None:
            rpm, per_tpm = self.rpm_per_tpm
            return replace(self, rpm=self.tpm * rpm // per_tpm)
        return self

    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.tpm, self.rpm, self.tpd, self.rpd, self.itpm, self.otpm, self.max_concurrency)
        )


@dataclass(frozen=True, slots=True)
class CountingRules:
    """What one request costs against the limits (not the bill)."""

    tokens: CountedTokens = "input+output"  # which tokens count against TPM/TPD
    cached_counted: bool = True  # do cache-read tokens count against input limits
    reserve_max_tokens: bool = False  # is `max_tokens` charged for output at request start
    output_burndown: Decimal = Decimal(1)  # output tokens × this against the quota (Bedrock)
    window: Window = "minute"  # per minute, per second (= limit / 60), or a continuous bucket


@dataclass(frozen=True, slots=True)
class CacheRules:
    """How prompt caching works: a prefix of at least `min_tokens` is cached in `step_tokens` steps."""

    enabled: bool = False
    min_tokens: int = 0
    step_tokens: int = 1
    read_multiplier: Decimal | None = None  # cached price as a share of input when none is listed
    write_multiplier: Decimal | None = None  # write price as a share of input when none is listed
    ttl_s: int | None = None
    write_1h_multiplier: Decimal | None = None  # 1-hour write price as a share of input when none is listed
    hit_factor: Decimal = Decimal(1)  # best effort: the share of cacheable prefix actually hit

    def cacheable(self, prefix_tokens: int) -> int:
        """The part of a stable prefix the provider can serve from cache."""
        if not self.enabled or prefix_tokens < max(self.min_tokens, 1):
            return 0
        steps = (prefix_tokens - self.min_tokens) // self.step_tokens
        return self.min_tokens + steps * self.step_tokens


@dataclass(frozen=True, slots=True)
class PtuRule:
    """Azure provisioned throughput: input TPM per PTU, output weight, minimum and step in PTU."""

    input_tpm_per_ptu: int
    output_weight: Decimal
    min_ptu: int
    step_ptu: int
    cached_excluded: bool = True


@dataclass(frozen=True)
class OfferVersion:
    offer_id: str
    effective_from: datetime  # UTC, naive
    effective_to: datetime | None
    source: str
    as_of: date
    currency: str
    prices: Prices | None  # None: no token price is published for it (priced as "unpriced")
    limits: Limits = field(default_factory=Limits)
    counting: CountingRules = field(default_factory=CountingRules)
    cache: CacheRules = field(default_factory=CacheRules)
    windows: tuple[PriceWindow, ...] = ()
    base_period: str = "standard"  # what the hours outside every window are called
    promotions: tuple[Promotion, ...] = ()
    tiers: tuple[ContextTier, ...] = ()
    fees_per_1k_calls: Mapping[str, Decimal] = field(default_factory=dict)
    ptu: PtuRule | None = None
    notes: str = ""
    variants: Mapping[str, PriceVariant] = field(default_factory=dict)  # "batch", "flex", "priority", ...

    @property
    def version_id(self) -> str:
        return f"{self.offer_id}@{self.effective_from.date().isoformat()}"

    def in_force(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)


@dataclass(frozen=True)
class Offer:
    id: str
    provider: str
    model: str
    name: str
    versions: tuple[OfferVersion, ...]  # sorted by effective_from
    region: str = ""
    aliases: tuple[str, ...] = ()
    origin: str = ""  # the file it came from

    def version_at(self, at: datetime | None = None) -> OfferVersion:
        """The version in force at `at` (UTC); the newest one when `at` is None."""
        if at is None:
            return self.versions[-1]
        at = to_utc_naive(at)
        for version in reversed(self.versions):
            if version.in_force(at):
                return version
        first = self.versions[0].effective_from.date().isoformat()
        raise InputError(f"offer {self.id!r} has no price in force at {at.isoformat()} (first: {first})")

    def model_names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)


@dataclass(frozen=True)
class Match:
    """The offer a usage record is priced with, or `reason` why none is."""

    offer: Offer | None
    reason: str = ""


@dataclass(frozen=True)
class Catalog:
    offers: Mapping[str, Offer]
    fx: FxTable = field(default_factory=FxTable)

    def get(self, offer_id: str) -> Offer:
        try:
            return self.offers[offer_id]
        except KeyError:
            close = difflib.get_close_matches(offer_id, list(self.offers), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `quotascope catalog list`"
            raise InputError(f"unknown offer {offer_id!r}{hint}") from None

    def find(self, provider: str | None, model: str) -> Offer | None:
        """The offer a usage record's (provider, model) is priced with, or None (unpriced); see `match`."""
        return self.match(provider, model).offer

    def match(self, provider: str | None, model: str) -> Match:
        """The offer a usage record's (provider, model) is priced with, or why there is none.

        The model name matches an offer's model or aliases, ignoring case; a dated snapshot name
        ("o1-2024-12-17", "deepseek-r1-250120") falls back to its base name when no offer names the snapshot.
        A record that names its provider is priced only by that provider's offers.
        """
        for name in _model_candidates(model):
            matches = [
                offer
                for offer in self.offers.values()
                if name in (alias.lower() for alias in offer.model_names())
            ]
            if provider:
                matches = [o for o in matches if o.provider.lower() == provider.strip().lower()]
            if len(matches) == 1:
                return Match(matches[0])
            if matches:  # ambiguous: better unpriced than priced by a guess
                sellers = ", ".join(sorted({o.provider for o in matches}))
                return Match(None, f"sold by several providers ({sellers}); the log names none")
        return Match(None, "no catalog offer sells this model")

    def merged(self, other: Catalog) -> Catalog:
        """`other` adds offers and replaces those with the same id (a user's overrides)."""
        return Catalog({**self.offers, **other.offers}, FxTable((*self.fx.rates, *other.fx.rates)))


# --------------------------------------------------------------------------------------------- helpers


_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{6}|\d{4})$")


def _model_candidates(model: str) -> list[str]:
    """The model name, then its base name without a dated snapshot suffix."""
    name = model.strip().lower()
    base = _SNAPSHOT.sub("", name)
    return [name] if base == name or not base else [name, base]


def to_utc_naive(at: datetime) -> datetime:
    """Timestamps are stored and compared as naive UTC."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo is not None else at


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
