"""Catalog values: offers, effective-dated price versions, limits, counting and cache rules, FX.

An *offer* is a (provider, model, region/tier) sold at a price under limits. Each version of an offer is
complete (prices, limits, rules) and carries `effective_from`, an optional `effective_to`, its `source` and
`as_of` date. Cost is always computed with the version in force at the request's timestamp.

Parsing catalog documents into these values is `models.catalog_parse`'s job, reading the files
`storage.catalog`'s, and the genai-prices base layer is converted by `collectors.prices.genai`.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from models.errors import InputError
from models.money import FxTable

T = TypeVar("T")

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

# Price variants: the service tiers and batch a version may price apart from its standard list.
STANDARD = "standard"
# What providers call their service tiers, as the price variant a catalog version lists. OpenAI answers
# `service_tier` "default" | "flex" | "priority" | "scale" (and "auto" in requests); Anthropic
# `usage.service_tier` "standard" | "priority" | "batch". An unknown tier is priced as standard.
SERVICE_TIERS: Mapping[str, str] = {
    "default": STANDARD,
    "auto": STANDARD,
    "standard": STANDARD,
    "standard_only": STANDARD,
    "on_demand": STANDARD,
    "flex": "flex",
    "priority": "priority",
    "scale": "scale",
    "batch": "batch",
}
VARIANTS: tuple[str, ...] = (STANDARD, "batch", "flex", "priority", "scale")

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


# The start of a version whose source publishes no start date (genai-prices' first price of a model): it is in
# force for any earlier traffic, and is shown as undated rather than as this date.
UNDATED = datetime(2000, 1, 1)


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
    # where this version's figures come from: a catalog file, or the base layer's label (provenance, not part
    # of what the version is: the same prices read back from another file are the same version)
    origin: str = field(default="", compare=False)
    variants: Mapping[str, PriceVariant] = field(default_factory=dict)  # "batch", "flex", "priority", ...

    @property
    def version_id(self) -> str:
        return f"{self.offer_id}@{self.effective_from.date().isoformat()}"

    @property
    def since(self) -> str:
        """When the version starts, in words: its date, or that its source gives none."""
        if self.effective_from == UNDATED:
            return "undated (no start date published)"
        return self.effective_from.date().isoformat()

    def in_force(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)


@dataclass(frozen=True, slots=True)
class ModelMatch:
    """Which model names an offer of the base layer answers to (genai-prices' match clauses): `equals`,
    `starts_with`, `ends_with`, `contains` (ignoring case), `regex` (searched in the lower-cased name), or
    `or` / `and` of `parts`."""

    kind: Literal["equals", "starts_with", "ends_with", "contains", "regex", "or", "and"]
    value: str = ""
    parts: tuple[ModelMatch, ...] = ()

    def is_match(self, name: str) -> bool:
        """`name` is already lower-cased."""
        if self.kind == "equals":
            return name == self.value.lower()
        if self.kind == "starts_with":
            return name.startswith(self.value.lower())
        if self.kind == "ends_with":
            return name.endswith(self.value.lower())
        if self.kind == "contains":
            return self.value.lower() in name
        if self.kind == "regex":
            return _compiled(self.value).search(name) is not None
        if self.kind == "or":
            return any(part.is_match(name) for part in self.parts)
        return all(part.is_match(name) for part in self.parts)

    def names(self) -> tuple[str, ...]:
        """The exact names it lists (its `equals` clauses), for display."""
        if self.kind == "equals":
            return (self.value,)
        return tuple(n for part in self.parts for n in part.names()) if self.kind == "or" else ()


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class ProviderNames:
    """How logs and gateways name providers: exact `aliases` (google, gemini, vertex_ai -> google),
    `patterns` on the name (genai-prices' provider match clauses), `makers` (the provider whose model family a
    name belongs to: claude -> anthropic) and `fallbacks` (a reseller selling another provider's models at
    that provider's price: azure -> openai)."""

    aliases: Mapping[str, str] = field(default_factory=dict)
    patterns: Mapping[str, ModelMatch] = field(default_factory=dict)
    makers: Mapping[str, ModelMatch] = field(default_factory=dict)
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def resolve(self, name: str | None) -> str | None:
        """The provider id a name stands for; None when it names none we know."""
        if not name:
            return None
        key = name.strip().lower()
        if key in self.aliases:
            return self.aliases[key]
        for provider_id, pattern in self.patterns.items():
            if pattern.is_match(key):
                return provider_id
        return None

    def same(self, a: str, b: str) -> bool:
        return a.strip().lower() == b.strip().lower() or (
            (ra := self.resolve(a)) is not None and ra == self.resolve(b)
        )


@dataclass(frozen=True)
class Offer:
    id: str
    provider: str
    model: str
    name: str
    versions: tuple[OfferVersion, ...]  # sorted by effective_from
    region: str = ""
    aliases: tuple[str, ...] = ()
    origin: str = ""  # the file it came from, or the base layer's label ("genai-prices 0.2.5 ...")
    match: ModelMatch | None = None  # base-layer offers: the names it answers to (beside `model`)

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
    providers: ProviderNames = field(default_factory=ProviderNames)
    _matches: dict[tuple[str | None, str], Match] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _base_offers: dict[str | None, list[Offer]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, name: str, compute: Callable[[Catalog], T]) -> T:
        """`compute(self)`, worked out once per catalog under `name`: a catalog never changes once built, and
        facts of all its offers (the pricing grain, the long-context thresholds) are asked for by every
        priced read of a page, over thousands of base-layer offers each time."""
        memo: dict[str, Any] | None = getattr(self, "_derived", None)  # None: unpickled from before it
        if memo is None:
            return compute(self)
        if name not in memo:
            memo[name] = compute(self)
        value: T = memo[name]
        return value

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

        A gateway's `provider/model` name ("gemini/gemini-2.5-pro", "openai/gpt-4o") names its provider.
        Offers of the catalog files come first: the model name matches an offer's model or aliases, ignoring
        case, and a dated snapshot name ("o1-2024-12-17", "deepseek-r1-250120") falls back to its base
        name. Then the base layer's offers, by their match clauses, in their provider's order (a reseller
        such as Azure falls back to the maker's offers). A record that names its provider is priced only by
        that provider's offers; one that names none by the one provider selling the name, or the one whose
        model family it is (claude: Anthropic) — otherwise it stays unpriced, saying why.
        """
        key = (provider, model)
        if key not in self._matches:
            self._matches[key] = self._match(provider, model)
        return self._matches[key]

    def _match(self, provider: str | None, model: str) -> Match:
        asks = [(provider, model.strip())]
        head, slash, tail = model.strip().partition("/")
        named = self.providers.resolve(head) if slash else None
        if named is not None and (not provider or self.providers.same(provider, head)):
            asks.insert(0, (head, tail))
        reasons: list[str] = []
        for asked_provider, name in asks:
            found = self._explicit(asked_provider, name)
            if found.offer is None and not found.reason:
                found = self._base(asked_provider, name)
            if found.offer is not None:
                return found
            reasons.append(found.reason)
        return Match(None, next((r for r in reasons if r), "no catalog offer sells this model"))

    def _explicit(self, provider: str | None, model: str) -> Match:
        for name in _model_candidates(model):
            matches = [
                offer
                for offer in self.offers.values()
                if offer.match is None and name in (alias.lower() for alias in offer.model_names())
            ]
            if provider:
                matches = [o for o in matches if self.providers.same(o.provider, provider)]
            if len(matches) == 1:
                return Match(matches[0])
            makers = [o for o in matches if self._makes(o.provider, name)]
            if len(makers) == 1:  # several sell it, one makes it (o3: Azure resells OpenAI's)
                return Match(makers[0])
            if matches:  # ambiguous: better unpriced than priced by a guess
                sellers = ", ".join(sorted({o.provider for o in matches}))
                return Match(None, f"sold by several providers ({sellers}); the log names none")
        return Match(None)

    def _base_of(self, provider: str | None) -> list[Offer]:
        """The base layer's offers (those with match clauses) in order, of one provider or (None) of all;
        indexed once per catalog."""
        if not self._base_offers:
            self._base_offers[None] = [o for o in self.offers.values() if o.match is not None]
            for offer in self._base_offers[None]:
                self._base_offers.setdefault(offer.provider, []).append(offer)
        return self._base_offers.get(provider, [])

    def _makes(self, provider: str, name: str) -> bool:
        """Whether `provider` is the one whose model family `name` belongs to (genai-prices' model match)."""
        maker = self.providers.resolve(provider) or provider.lower()
        pattern = self.providers.makers.get(maker)
        return pattern is not None and pattern.is_match(name)

    def _base(self, provider: str | None, model: str) -> Match:
        names = list(dict.fromkeys([model.lower(), _dashed_date(model.lower())]))
        base = self._base_of(None)
        if provider:
            wanted = self.providers.resolve(provider) or provider.strip().lower()
            for provider_id in (wanted, *self.providers.fallbacks.get(wanted, ())):
                own = self._base_of(provider_id)
                for name in names:
                    hit = next((o for o in own if o.match is not None and o.match.is_match(name)), None)
                    if hit is not None:
                        return Match(hit)
            if self._base_of(wanted):
                return Match(None, f"no offer of {provider} answers to this model name")
            return Match(None)
        for name in names:
            hits: dict[str, Offer] = {}
            for offer in base:  # the first matching offer of each provider, as its own lookup would
                if offer.provider not in hits and offer.match is not None and offer.match.is_match(name):
                    hits[offer.provider] = offer
            if len(hits) == 1:
                return Match(next(iter(hits.values())))
            makers = [p for p in hits if self._makes(p, name)]
            if len(makers) == 1:
                return Match(hits[makers[0]])
            if hits:
                sellers = ", ".join(sorted(hits))
                return Match(None, f"sold by several providers ({sellers}); the log names none")
        return Match(None)

    def merged(self, other: Catalog) -> Catalog:
        """`other` adds offers and replaces those with the same id (a user's overrides)."""
        return Catalog(
            {**self.offers, **other.offers},
            FxTable((*self.fx.rates, *other.fx.rates)),
            _merged_names(self.providers, other.providers),
        )

    def over(self, base: Catalog) -> Catalog:
        """This catalog (shipped files and the user's) on top of a base layer (genai-prices).

        Where an offer of this catalog sells what a base offer does (same provider, the base offer answers to
        its model name), the base offer's history fills the dates before this offer's first version, and
        from then on this offer's versions win: the shipped `google/gemini-2.5-pro` from 2026-11-23, the
        genai-prices history before it.
        """
        layered = Catalog(dict(base.offers), base.fx, _merged_names(base.providers, self.providers))
        offers = dict(base.offers)
        for offer in self.offers.values():
            priced = offer.versions[0].prices is not None  # a provisioned (PTU) offer has no token history
            under = layered._base(offer.provider, offer.model).offer if priced else None
            offers[offer.id] = _on_top(offer, under) if under is not None else offer
            if under is not None and under.id != offer.id:
                offers.pop(under.id, None)  # one offer per (provider, model): this one, with its history
        return Catalog(offers, FxTable((*base.fx.rates, *self.fx.rates)), layered.providers)


def _on_top(offer: Offer, under: Offer) -> Offer:
    """`offer` with `under`'s history before its first version, and `under`'s service-tier and batch prices
    on each of its versions that lists none (the catalog file did not price them; the base layer does)."""
    first = offer.versions[0].effective_from
    own = tuple(
        v if v.variants or v.prices is None else replace(v, variants=_variants_at(under, v.effective_from))
        for v in offer.versions
    )
    history = [
        replace(
            v,
            offer_id=offer.id,
            effective_to=first if v.effective_to is None or v.effective_to > first else v.effective_to,
        )
        for v in under.versions
        if v.effective_from < first
    ]
    return replace(offer, versions=(*history, *own))


def _variants_at(offer: Offer, at: datetime) -> Mapping[str, PriceVariant]:
    in_force = [v for v in offer.versions if v.effective_from <= at]
    return in_force[-1].variants if in_force else {}


def _merged_names(a: ProviderNames, b: ProviderNames) -> ProviderNames:
    return ProviderNames(
        {**a.aliases, **b.aliases},
        {**a.patterns, **b.patterns},
        {**a.makers, **b.makers},
        {**a.fallbacks, **b.fallbacks},
    )


_COMPACT_DATE = re.compile(r"-(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")


def _dashed_date(name: str) -> str:
    """`gpt-5.2-20251211` as `gpt-5.2-2025-12-11` (LiteLLM and OpenRouter write dates compactly)."""
    return _COMPACT_DATE.sub(lambda m: f"-{m.group(1)}-{m.group(2)}-{m.group(3)}", name)


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
