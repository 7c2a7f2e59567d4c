"""Parsing catalog documents: plain mappings (as `tomllib` reads them) into `models.catalog` values.

Names the file, the offer and the field of anything malformed. Reading the files is `storage.catalog`'s job;
the values themselves live in `models.catalog`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from models.catalog import (
    COUNTED_TOKENS,
    MAX_CATALOG_NUMBER,
    MAX_CATALOG_WHOLE,
    MAX_PRICE_PER_MTOK,
    MINUTES_PER_DAY,
    SCOPES,
    STANDARD,
    VARIANTS,
    WINDOWS,
    CacheRules,
    Catalog,
    ContextTier,
    CountingRules,
    Limits,
    Offer,
    OfferVersion,
    Prices,
    PriceVariant,
    PriceWindow,
    Promotion,
    PtuRule,
    TimeSpan,
    to_utc_naive,
)
from models.errors import CatalogError
from models.money import FxRate, FxTable


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

    def decimal(
        self,
        key: str,
        *,
        required: bool = False,
        positive: bool = False,
        maximum: Decimal = MAX_CATALOG_NUMBER,
    ) -> Decimal | None:
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
        if value > maximum:
            raise self.error(key, f"is implausibly large ({raw!r}; at most {maximum:,}): a unit mistake?")
        return value

    def required_decimal(
        self, key: str, *, positive: bool = False, maximum: Decimal = MAX_CATALOG_NUMBER
    ) -> Decimal:
        value = self.decimal(key, required=True, positive=positive, maximum=maximum)
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
        if raw > MAX_CATALOG_WHOLE:
            raise self.error(key, f"is implausibly large ({raw!r}; at most {MAX_CATALOG_WHOLE:,})")
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


_PRICE_KEYS = (
    "input",
    "output",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "reasoning_output",
    "cache_storage_per_hour",
)
_LIMIT_KEYS = ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency", "scope", "rpm_per_tpm")
_COUNTING_KEYS = ("tokens", "cached_counted", "reserve_max_tokens", "output_burndown", "window")
_CACHE_KEYS = (
    "enabled",
    "min_tokens",
    "step_tokens",
    "read_multiplier",
    "write_multiplier",
    "write_1h_multiplier",
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
    "variants",
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
    per_mtok = MAX_PRICE_PER_MTOK
    return Prices(
        input=r.required_decimal("input", maximum=per_mtok),
        output=r.required_decimal("output", maximum=per_mtok),
        cached_input=r.decimal("cached_input", maximum=per_mtok),
        cache_write=r.decimal("cache_write", maximum=per_mtok),
        cache_write_1h=r.decimal("cache_write_1h", maximum=per_mtok),
        reasoning_output=r.decimal("reasoning_output", maximum=per_mtok),
        cache_storage_per_hour=r.decimal("cache_storage_per_hour", maximum=per_mtok),
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
        write_1h_multiplier=r.decimal("write_1h_multiplier"),
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
    r.unknown_keys(("name", "hours_utc", "weekdays", "multiplier", "prices"))
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
    multiplier = r.decimal("multiplier")
    prices = _prices(r.sub("prices")) if r.has("prices") else None
    if multiplier is None and prices is None:
        raise r.error("multiplier", "is required (or give the window its own [prices])")
    return PriceWindow(
        r.text("name"),
        tuple(spans),
        Decimal(1) if multiplier is None else multiplier,
        frozenset(raw_days),
        prices,
    )


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


def _variant(r: _Reader) -> PriceVariant:
    """`[offer.versions.variants.flex]`: a price list (input, output, ...) and optional `[[...tiers]]`."""
    tiers = tuple(sorted((_tier(t) for t in r.tables("tiers")), key=lambda t: t.above_input_tokens))
    prices = {k: v for k, v in r.table.items() if k != "tiers"}
    return PriceVariant(_prices(_Reader(prices, r.origin, r.offer, r.path)), tiers)


def _variants(r: _Reader) -> dict[str, PriceVariant]:
    """`[offer.versions.variants.NAME]` for each service tier or batch the version prices apart."""
    allowed = [name for name in VARIANTS if name != STANDARD]
    for name in r.table:
        if name not in allowed:
            raise r.error(name, f"is not a price variant (one of {', '.join(allowed)})")
    return {name: _variant(r.sub(name)) for name in r.table}


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
                origin=origin,
                variants=_variants(v.sub("variants")),
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
