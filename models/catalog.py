"""Catalog values: offers, effective-dated price versions, limits, counting and cache rules, FX.

An *offer* is a (provider, model, region/tier) sold at a price under limits. Each version of an offer is
complete (prices, limits, rules) and carries `effective_from`, an optional `effective_to`, its `source` and
`as_of` date. Cost is always computed with the version in force at the request's timestamp.

`parse_catalog` turns plain mappings (as `tomllib` reads them) into these values and names the file, the
offer and the field of anything malformed. Reading the files is `storage.catalog`'s job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from models.errors import CatalogError, InputError
from models.money import FxRate, FxTable

Scope = Literal["key", "account", "project"]
CountedTokens = Literal["input+output", "input", "output"]
Window = Literal["minute", "second", "bucket"]

SCOPES: tuple[Scope, ...] = ("key", "account", "project")
COUNTED_TOKENS: tuple[CountedTokens, ...] = ("input+output", "input", "output")
WINDOWS: tuple[Window, ...] = ("minute", "second", "bucket")
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
    """A time-of-day window (DeepSeek off-peak/peak) multiplying every token price of the version."""

    name: str
    spans: tuple[TimeSpan, ...]
    multiplier: Decimal
    weekdays: frozenset[int] = ALL_DAYS  # 0 = Monday

    def contains(self, at: datetime) -> bool:
        return self.contains_minute(at.weekday(), at.hour * 60 + at.minute)

    def contains_minute(self, weekday: int, minute: int) -> bool:
        for span in self.spans:
            if span.start_minute < span.end_minute:
                if weekday in self.weekdays and span.start_minute <= minute < span.end_minute:
                    return True
            else:  # wraps: the part after midnight belongs to the day the window opened
                if weekday in self.weekdays and minute >= span.start_minute:
                    return True
                if (weekday - 1) % 7 in self.weekdays and minute < span.end_minute:
                    return True
        return False


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
        """The offer a usage record's (provider, model) is priced with, or None (unpriced).

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
                return matches[0]
            if matches:
                return None  # ambiguous: better unpriced than priced by a guess
        return None

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


# --------------------------------------------------------------------------------------------- parsing


class _Reader:
    """Reads one table of a catalog mapping, naming the file, offer and field of whatever is wrong."""

    def __init__(self, table: Mapping[str, Any], origin: str, offer: str, path: str) -> None:
        if not isinstance(table, Mapping):
            raise CatalogError("expected a table", origin=origin, offer=offer, field=path)
        self.table = table
        self.origin = origin
        self.offer = offer
        self.path = path

    def error(self, key: str, message: str) -> CatalogError:
        return CatalogError(message, origin=self.origin, offer=self.offer, field=self._name(key))

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def sub(self, key: str) -> _Reader:
        return _Reader(self.table.get(key, {}), self.origin, self.offer, self._name(key))

    def has(self, key: str) -> bool:
        return key in self.table

    def unknown_keys(self, allowed: Iterable[str]) -> None:
        extra = sorted(set(self.table) - set(allowed))
        if extra:
            allowed_list = ", ".join(sorted(allowed))
            raise self.error(extra[0], f"unknown field (allowed here: {allowed_list})")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def decimal(self, key: str, *, required: bool = False, positive: bool = False) -> Decimal | None:
        if key not in self.table:
            if required:
                raise self.error(key, "is required")
            return None
        raw = self.table[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise self.error(key, f"must be a number, got {raw!r}")
        try:
            # floats from TOML go through str so 0.1 stays 0.1
            value = Decimal(str(raw).replace("_", ""))
        except InvalidOperation:
            raise self.error(key, f"must be a number, got {raw!r}") from None
        if not value.is_finite():
            raise self.error(key, f"must be finite, got {raw!r}")
        if value < 0 or (positive and value == 0):
            raise self.error(key, f"must be {'positive' if positive else 'zero or more'}, got {raw!r}")
        return value

    def required_decimal(self, key: str, *, positive: bool = False) -> Decimal:
        value = self.decimal(key, required=True, positive=positive)
        assert value is not None
        return value

    def integer(self, key: str, *, positive: bool = True) -> int | None:
        if key not in self.table:
            return None
        raw = self.table[key]
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.error(key, f"must be a whole number, got {raw!r}")
        if raw < 0 or (positive and raw == 0):
            raise self.error(key, f"must be {'positive' if positive else 'zero or more'}, got {raw!r}")
        return raw

    def boolean(self, key: str, default: bool) -> bool:
        raw = self.table.get(key, default)
        if not isinstance(raw, bool):
            raise self.error(key, f"must be true or false, got {raw!r}")
        return raw

    def choice(self, key: str, options: Sequence[str], default: str) -> str:
        raw = self.table.get(key, default)
        if raw not in options:
            raise self.error(key, f"must be one of {', '.join(options)}; got {raw!r}")
        return str(raw)

    def moment(self, key: str, *, required: bool = True) -> datetime | None:
        if key not in self.table:
            if required:
                raise self.error(key, "is required")
            return None
        raw = self.table[key]
        if isinstance(raw, datetime):
            return to_utc_naive(raw)
        if isinstance(raw, date):
            return datetime.combine(raw, time())
        if isinstance(raw, str):
            try:
                return to_utc_naive(datetime.fromisoformat(raw))
            except ValueError:
                pass
        raise self.error(key, f"must be a date or date-time (e.g. 2025-02-26), got {raw!r}")

    def day(self, key: str) -> date:
        value = self.moment(key)
        assert value is not None
        return value.date()

    def strings(self, key: str) -> tuple[str, ...]:
        raw = self.table.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise self.error(key, f"must be a list of strings, got {raw!r}")
        return tuple(raw)

    def tables(self, key: str) -> list[_Reader]:
        raw = self.table.get(key, [])
        if not isinstance(raw, list):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [
            _Reader(item, self.origin, self.offer, f"{self._name(key)}[{i}]") for i, item in enumerate(raw)
        ]


_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "reasoning_output", "cache_storage_per_hour")
_LIMIT_KEYS = ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency", "scope", "rpm_per_tpm")
_COUNTING_KEYS = ("tokens", "cached_counted", "reserve_max_tokens", "output_burndown", "window")
_CACHE_KEYS = (
    "enabled",
    "min_tokens",
    "step_tokens",
    "read_multiplier",
    "write_multiplier",
    "ttl_s",
    "hit_factor",
)
_VERSION_KEYS = (
    "effective_from",
    "effective_to",
    "source",
    "as_of",
    "currency",
    "prices",
    "limits",
    "counting",
    "cache",
    "windows",
    "base_period",
    "promotions",
    "tiers",
    "fees_per_1k_calls",
    "ptu",
    "notes",
)
_OFFER_KEYS = (
    "id",
    "provider",
    "model",
    "name",
    "region",
    "aliases",
    "currency",
    "limits",
    "counting",
    "cache",
    "ptu",
    "versions",
    "notes",
    "base_period",
)


def _prices(r: _Reader) -> Prices:
    r.unknown_keys(_PRICE_KEYS)
    return Prices(
        input=r.required_decimal("input"),
        output=r.required_decimal("output"),
        cached_input=r.decimal("cached_input"),
        cache_write=r.decimal("cache_write"),
        reasoning_output=r.decimal("reasoning_output"),
        cache_storage_per_hour=r.decimal("cache_storage_per_hour"),
    )


def _limits(r: _Reader) -> Limits:
    r.unknown_keys(_LIMIT_KEYS)
    rule: tuple[int, int] | None = None
    if r.has("rpm_per_tpm"):
        raw = r.table["rpm_per_tpm"]
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw)
        ):
            raise r.error("rpm_per_tpm", f"must be [RPM, per TPM], e.g. [6, 1000]; got {raw!r}")
        rule = (raw[0], raw[1])
    return Limits(
        tpm=r.integer("tpm"),
        rpm=r.integer("rpm"),
        tpd=r.integer("tpd"),
        rpd=r.integer("rpd"),
        itpm=r.integer("itpm"),
        otpm=r.integer("otpm"),
        max_concurrency=r.integer("max_concurrency"),
        scope=r.choice("scope", SCOPES, "key"),  # type: ignore[arg-type]
        rpm_per_tpm=rule,
    )


def _counting(r: _Reader) -> CountingRules:
    r.unknown_keys(_COUNTING_KEYS)
    return CountingRules(
        tokens=r.choice("tokens", COUNTED_TOKENS, "input+output"),  # type: ignore[arg-type]
        cached_counted=r.boolean("cached_counted", True),
        reserve_max_tokens=r.boolean("reserve_max_tokens", False),
        output_burndown=r.decimal("output_burndown", positive=True) or Decimal(1),
        window=r.choice("window", WINDOWS, "minute"),  # type: ignore[arg-type]
    )


def _cache(r: _Reader) -> CacheRules:
    r.unknown_keys(_CACHE_KEYS)
    enabled = r.boolean("enabled", bool(r.table))
    hit_factor = r.decimal("hit_factor")
    if hit_factor is not None and hit_factor > 1:
        raise r.error("hit_factor", f"is a share and must be between 0 and 1, got {hit_factor}")
    return CacheRules(
        enabled=enabled,
        min_tokens=r.integer("min_tokens", positive=False) or 0,
        step_tokens=r.integer("step_tokens") or 1,
        read_multiplier=r.decimal("read_multiplier"),
        write_multiplier=r.decimal("write_multiplier"),
        ttl_s=r.integer("ttl_s"),
        hit_factor=Decimal(1) if hit_factor is None else hit_factor,
    )


def _ptu(r: _Reader) -> PtuRule:
    r.unknown_keys(("input_tpm_per_ptu", "output_weight", "min_ptu", "step_ptu", "cached_excluded"))
    tpm = r.integer("input_tpm_per_ptu")
    min_ptu = r.integer("min_ptu")
    step = r.integer("step_ptu")
    if tpm is None or min_ptu is None or step is None:
        missing = next(
            k for k, v in (("input_tpm_per_ptu", tpm), ("min_ptu", min_ptu), ("step_ptu", step)) if v is None
        )
        raise r.error(missing, "is required")
    return PtuRule(
        tpm,
        r.required_decimal("output_weight", positive=True),
        min_ptu,
        step,
        r.boolean("cached_excluded", True),
    )


def parse_clock(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= MINUTES_PER_DAY or not 0 <= int(minutes or 0) < 60:
        raise ValueError(text)
    return value % MINUTES_PER_DAY if value == MINUTES_PER_DAY else value


def _window(r: _Reader) -> PriceWindow:
    r.unknown_keys(("name", "hours_utc", "weekdays", "multiplier"))
    spans = []
    for text in r.strings("hours_utc"):
        try:
            start, end = (parse_clock(part.strip()) for part in text.split("-"))
        except ValueError:
            raise r.error("hours_utc", f'spans look like "16:30-00:30", got {text!r}') from None
        if start == end and not (start == 0 and text.replace(" ", "") == "00:00-24:00"):
            raise r.error("hours_utc", f'span {text!r} is empty (a whole day is "00:00-24:00")')
        spans.append(TimeSpan(start, end))
    if not spans:
        raise r.error("hours_utc", 'needs at least one span, e.g. ["16:30-00:30"]')
    raw_days = r.table.get("weekdays", list(range(7)))
    if not isinstance(raw_days, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in raw_days):
        raise r.error("weekdays", f"must be a list of 0 (Monday) to 6 (Sunday), got {raw_days!r}")
    return PriceWindow(r.text("name"), tuple(spans), r.required_decimal("multiplier"), frozenset(raw_days))


def _promotion(r: _Reader) -> Promotion:
    r.unknown_keys(("name", "start", "end", "multiplier"))
    start, end = r.moment("start"), r.moment("end")
    assert start is not None and end is not None
    if end <= start:
        raise r.error("end", "must be after start")
    return Promotion(r.text("name"), start, end, r.required_decimal("multiplier"))


def _tier(r: _Reader) -> ContextTier:
    r.unknown_keys(("above_input_tokens", "prices"))
    above = r.integer("above_input_tokens")
    if above is None:
        raise r.error("above_input_tokens", "is required")
    return ContextTier(above, _prices(r.sub("prices")))


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    return {**base, **override}


def parse_offer(raw: Mapping[str, Any], origin: str) -> Offer:
    head = _Reader(raw, origin, str(raw.get("id", "?")) if isinstance(raw, Mapping) else "?", "")
    offer_id = head.text("id")
    head.unknown_keys(_OFFER_KEYS)
    provider, model = head.text("provider"), head.text("model")
    name = head.text("name", f"{provider} {model}")
    currency = head.table.get("currency")
    base_tables = {key: head.table.get(key, {}) for key in ("limits", "counting", "cache", "ptu")}
    version_readers = head.tables("versions")
    if not version_readers:
        raise head.error("versions", "an offer needs at least one [[offer.versions]]")
    versions: list[OfferVersion] = []
    for v in version_readers:
        v.unknown_keys(_VERSION_KEYS)
        merged = {key: _merge(base_tables[key], v.table.get(key, {})) for key in base_tables}
        effective_from = v.moment("effective_from")
        assert effective_from is not None
        effective_to = v.moment("effective_to", required=False)
        if effective_to is not None and effective_to <= effective_from:
            raise v.error("effective_to", "must be after effective_from")
        version_currency = v.table.get("currency", currency)
        if not isinstance(version_currency, str) or len(version_currency) != 3:
            raise v.error("currency", f"must be a 3-letter code like USD or CNY, got {version_currency!r}")
        fees = v.sub("fees_per_1k_calls")
        ptu_table = merged["ptu"]
        versions.append(
            OfferVersion(
                offer_id=offer_id,
                effective_from=effective_from,
                effective_to=effective_to,
                source=v.text("source"),
                as_of=v.day("as_of"),
                currency=version_currency.upper(),
                prices=_prices(v.sub("prices")) if v.has("prices") else None,
                limits=_limits(_Reader(merged["limits"], origin, offer_id, f"{v.path}.limits")),
                counting=_counting(_Reader(merged["counting"], origin, offer_id, f"{v.path}.counting")),
                cache=_cache(_Reader(merged["cache"], origin, offer_id, f"{v.path}.cache")),
                windows=tuple(_window(w) for w in v.tables("windows")),
                base_period=v.text("base_period", str(head.table.get("base_period", "standard"))),
                promotions=tuple(_promotion(p) for p in v.tables("promotions")),
                tiers=tuple(
                    sorted((_tier(t) for t in v.tables("tiers")), key=lambda t: t.above_input_tokens)
                ),
                fees_per_1k_calls={k: fees.required_decimal(k) for k in fees.table},
                ptu=_ptu(_Reader(ptu_table, origin, offer_id, f"{v.path}.ptu")) if ptu_table else None,
                notes=str(v.table.get("notes", head.table.get("notes", ""))),
            )
        )
    versions.sort(key=lambda ver: ver.effective_from)
    for i in range(len(versions) - 1):
        earlier, later = versions[i], versions[i + 1]
        if earlier.effective_from == later.effective_from:
            raise CatalogError(
                f"two versions start on {later.effective_from.date()}",
                origin=origin,
                offer=offer_id,
                field="versions.effective_from",
            )
        if earlier.effective_to is None:
            # an open-ended version ends where the next one starts
            versions[i] = replace(earlier, effective_to=later.effective_from)
        elif earlier.effective_to > later.effective_from:
            raise CatalogError(
                f"versions overlap: one runs to {earlier.effective_to.date()}, "
                f"the next starts {later.effective_from.date()}",
                origin=origin,
                offer=offer_id,
                field="versions.effective_to",
            )
    return Offer(
        id=offer_id,
        provider=provider,
        model=model,
        name=name,
        versions=tuple(versions),
        region=str(head.table.get("region", "")),
        aliases=head.strings("aliases"),
        origin=origin,
    )


def parse_fx(raw: Mapping[str, Any], origin: str, index: int) -> FxRate:
    r = _Reader(raw, origin, "", f"fx[{index}]")
    r.unknown_keys(("base", "quote", "rate", "as_of", "source"))
    base, quote = r.text("base").upper(), r.text("quote").upper()
    if base == quote:
        raise r.error("quote", "must differ from base")
    return FxRate(base, quote, r.required_decimal("rate", positive=True), r.day("as_of"), r.text("source"))


def parse_catalog(raw: Mapping[str, Any], origin: str) -> Catalog:
    """One catalog document (a TOML file's content): `[[offer]]` tables and `[[fx]]` rates."""
    top = _Reader(raw, origin, "", "")
    top.unknown_keys(("offer", "fx", "title", "description"))
    offers: dict[str, Offer] = {}
    for item in top.tables("offer"):
        offer = parse_offer(item.table, origin)
        if offer.id in offers:
            raise CatalogError("is defined twice in the same file", origin=origin, offer=offer.id, field="id")
        offers[offer.id] = offer
    rates = tuple(parse_fx(item.table, origin, i) for i, item in enumerate(top.tables("fx")))
    return Catalog(offers, FxTable(rates))
