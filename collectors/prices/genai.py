"""pydantic's genai-prices (MIT) as the base layer of the catalog: its providers and models converted into
quotascope offers with dated versions, priced by quotascope's own engine (never by `calc_price` per record).

genai-prices keeps, per model, a price list or a list of *conditional* prices (the last whose constraint is
active wins: a start date makes a new version, a time of day a window), *tiered* prices (a threshold on a
request's input tokens; crossing it prices every token at the tier's rate) and *price variants* (batch
processing, OpenAI service tiers) overriding some prices. This module maps each onto the catalog:

- every start date of a conditional price or a variant starts a version (the first runs from 2000-01-01:
  genai-prices knows no earlier price); within a version, the time-of-day prices listed after the last
  dated one become windows with their own price lists;
- tiered prices become long-context tiers at the union of every field's thresholds;
- `processing=batch` and `service_tier` variants become `variants` of the version; batch prices genai-prices
  does not list yet (it models batch tables from 2026-10-14 on) are derived from the 50 % discount the
  providers publish — see `BATCH_DISCOUNT`, the documented exception to matching `calc_price`;
- its model match clauses and provider aliases become `ModelMatch` values and `provider_aliases`.

Prices genai-prices gives per image, audio second, request or search are not token prices and are left out;
models with none of input and output are kept with zero token prices (what `calc_price` gives them).

The conversion of ~2,300 models takes a second; `base_catalog` caches it in a file keyed by the data's
version so a command only reads the converted offers (`storage.catalog.read_base_layer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.catalog import (
    SERVICE_TIERS,
    STANDARD,
    UNDATED,
    Catalog,
    ContextTier,
    ModelMatch,
    Offer,
    OfferVersion,
    Prices,
    PriceVariant,
    PriceWindow,
    ProviderNames,
    TimeSpan,
)
from models.errors import CatalogError
from models.money import FxTable
from storage.catalog import read_base_key, read_base_layer, write_base_layer

CONVERTER_VERSION = 3  # bump when the conversion changes: cached base layers are then rebuilt
EPOCH = UNDATED
PROJECT_URL = "https://github.com/pydantic/genai-prices"

# genai-prices price key -> quotascope price field (token prices only)
PRICE_KEYS: Mapping[str, str] = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_reasoning_mtok": "reasoning_output",
}

# Batch discounts the providers publish, applied where genai-prices lists no batch price for a date
# (it models batch tables from 2026-10-14 on; the discount is older):
# - OpenAI Batch API: 50 % off input and output (https://platform.openai.com/docs/guides/batch); its batch
#   table lists no cached-input rate, so cached input keeps the standard rate (as genai-prices does).
# - Anthropic Message Batches: 50 % off, cache multipliers stack
#   (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing#pricing).
# - Gemini Batch Mode: 50 % off input and output, context caching at the standard rate
#   (https://ai.google.dev/gemini-api/docs/batch-mode; genai-prices' own Gemini batch rows do the same).
BATCH_DISCOUNT: Mapping[str, tuple[Decimal, frozenset[str]]] = {
    "openai": (
        Decimal("0.5"),
        frozenset({"input", "output", "cache_write", "cache_write_1h", "reasoning_output"}),
    ),
    "anthropic": (Decimal("0.5"), frozenset(PRICE_KEYS.values())),
    "google": (Decimal("0.5"), frozenset({"input", "output", "reasoning_output"})),
}

# names logs and gateways use for a provider, beyond genai-prices' own provider match clauses
EXTRA_PROVIDER_ALIASES: Mapping[str, str] = {
    "gemini": "google",
    "vertex_ai": "google",
    "vertex": "google",
    "google-vertex": "google",
    "google_genai": "google",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "bedrock": "aws",
    "amazon-bedrock": "aws",
    "together_ai": "together",
}


@dataclass(frozen=True)
class BaseLayer:
    """The converted genai-prices data: its offers and how providers are named (`ProviderNames`)."""

    offers: tuple[Offer, ...]
    names: ProviderNames
    label: str  # "genai-prices 0.2.5 (installed package)"

    def catalog(self) -> Catalog:
        """The base layer as a catalog (no FX: genai-prices is all USD)."""
        return Catalog({o.id: o for o in self.offers}, FxTable(), self.names)


# ------------------------------------------------------------------------------------------- matching


def convert_match(clause: Any) -> ModelMatch:
    """A genai-prices match clause as a `ModelMatch` value."""
    for kind in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(clause, kind):
            return ModelMatch(kind, str(getattr(clause, kind)))
    if hasattr(clause, "or_"):
        return ModelMatch("or", "", tuple(convert_match(c) for c in clause.or_))
    if hasattr(clause, "and_"):
        return ModelMatch("and", "", tuple(convert_match(c) for c in clause.and_))
    raise ValueError(f"unknown genai-prices match clause {clause!r}")


# --------------------------------------------------------------------------------------------- prices


def _value_at(value: Any, threshold: int | None) -> Decimal | None:
    """A price field's rate for requests above `threshold` input tokens (None: the base rate)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    rate = value.base
    if threshold is not None:
        for tier in value.tiers:  # sorted by start
            if tier.start <= threshold:
                rate = tier.price
    return Decimal(rate)


def _thresholds(fields: Mapping[str, Any]) -> list[int]:
    return sorted(
        {t.start for v in fields.values() if v is not None and not isinstance(v, Decimal) for t in v.tiers}
    )


def _prices(fields: Mapping[str, Any], threshold: int | None = None) -> Prices:
    values = {ours: _value_at(fields.get(theirs), threshold) for theirs, ours in PRICE_KEYS.items()}
    return Prices(
        input=values["input"] or Decimal(0),
        output=values["output"] or Decimal(0),
        cached_input=values["cached_input"],
        cache_write=values["cache_write"],
        cache_write_1h=values["cache_write_1h"],
        reasoning_output=values["reasoning_output"],
    )


def _fields(model_price: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(model_price).items() if not k.startswith("_") and v is not None}


def _with_tiers(fields: Mapping[str, Any]) -> tuple[Prices, tuple[ContextTier, ...]]:
    tiers = tuple(ContextTier(t, _prices(fields, t)) for t in _thresholds(fields))
    return _prices(fields), tiers


def _discounted(prices: Prices, factor: Decimal, keys: frozenset[str]) -> Prices:
    def scale(name: str) -> Decimal | None:
        value: Decimal | None = getattr(prices, name)
        return value * factor if value is not None and name in keys else value

    return Prices(
        input=prices.input * factor if "input" in keys else prices.input,
        output=prices.output * factor if "output" in keys else prices.output,
        cached_input=scale("cached_input") if prices.cached_input is not None else None,
        cache_write=scale("cache_write"),
        cache_write_1h=scale("cache_write_1h"),
        reasoning_output=scale("reasoning_output"),
    )


def _minute(value: time) -> int:
    if value.tzinfo is not None:
        value = datetime.combine(date(2000, 1, 1), value).astimezone(UTC).time()
    return value.hour * 60 + value.minute


def _is_date(constraint: Any) -> bool:
    return constraint is not None and hasattr(constraint, "start_date")


def _is_clock(constraint: Any) -> bool:
    return constraint is not None and hasattr(constraint, "start_time")


def _boundaries(model: Any) -> list[date]:
    dates: set[date] = set()
    if isinstance(model.prices, list):
        dates |= {c.constraint.start_date for c in model.prices if _is_date(c.constraint)}
    for variant in model.price_variants or ():
        if _is_date(variant.constraint):
            dates.add(variant.constraint.start_date)
    return sorted(dates)


def _standard_at(model: Any, day: date) -> tuple[dict[str, Any], list[tuple[Any, dict[str, Any]]]]:
    """The standard fields in force on `day` and the time-of-day windows over them (first listed wins)."""
    if not isinstance(model.prices, list):
        return _fields(model.prices), []
    windows: list[tuple[Any, dict[str, Any]]] = []
    for conditional in reversed(model.prices):  # the last active conditional price wins
        constraint = conditional.constraint
        if _is_clock(constraint):
            windows.append((constraint, _fields(conditional.prices)))
        elif constraint is None or (_is_date(constraint) and constraint.start_date <= day):
            return _fields(conditional.prices), windows
    return _fields(model.prices[0].prices), windows  # none active: genai-prices takes the first


def _variant_fields(model: Any, day: date, standard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each variant's fields on `day`: the standard ones with the first active override per key."""
    found: dict[str, dict[str, Any]] = {}
    for variant in model.price_variants or ():
        if variant.constraint is not None and not (
            _is_date(variant.constraint) and variant.constraint.start_date <= day
        ):
            continue
        name = _variant_name(variant.when)
        if name is None:
            continue
        overrides = found.setdefault(name, {})
        for key, value in _fields(variant.prices).items():
            overrides.setdefault(key, value)
    # a variant listed with no prices is explicit too: that variant costs the standard prices
    return {name: {**standard, **overrides} for name, overrides in found.items()}


def _variant_name(when: Mapping[str, str]) -> str | None:
    if when == {"processing": "batch"}:
        return "batch"
    if set(when) == {"service_tier"}:
        name = SERVICE_TIERS.get(when["service_tier"])
        return name if name not in (None, STANDARD) else None
    return None


def _window_name(window: Prices, base: Prices, taken: set[str]) -> str:
    name = "off-peak" if window.input < base.input else "peak" if window.input > base.input else "window"
    stem, n = name, 2
    while name in taken:
        name, n = f"{stem} {n}", n + 1
    return name


def _version(
    offer_id: str,
    provider: Any,
    model: Any,
    span: tuple[datetime, datetime | None],
    label: str,
    as_of: date,
) -> OfferVersion:
    start, end = span
    day = start.date()
    fields, clocks = _standard_at(model, day)
    prices, tiers = _with_tiers(fields)
    windows: list[PriceWindow] = []
    names: dict[Prices, str] = {}
    for constraint, window_fields in clocks:
        start_minute, end_minute = _minute(constraint.start_time), _minute(constraint.end_time)
        if start_minute == end_minute:
            continue  # an empty window: never active
        window_prices = _prices(window_fields)
        name = names.get(window_prices) or _window_name(window_prices, prices, set(names.values()))
        names[window_prices] = name
        windows.append(
            PriceWindow(name, (TimeSpan(start_minute, end_minute),), Decimal(1), prices=window_prices)
        )
    variants = {
        name: PriceVariant(*_with_tiers(variant_fields))
        for name, variant_fields in _variant_fields(model, day, fields).items()
    }
    discount = BATCH_DISCOUNT.get(provider.id)
    if "batch" not in variants and discount is not None:
        factor, keys = discount
        variants["batch"] = PriceVariant(
            _discounted(prices, factor, keys),
            tuple(ContextTier(t.above_input_tokens, _discounted(t.prices, factor, keys)) for t in tiers),
        )
    urls = provider.pricing_urls or [PROJECT_URL]
    notes = " ".join(n for n in (model.price_comments, provider.price_comments) if n)
    return OfferVersion(
        offer_id=offer_id,
        effective_from=start,
        effective_to=end,
        source=urls[0],
        as_of=as_of,
        currency="USD",
        prices=prices,
        windows=tuple(windows),
        tiers=tiers,
        notes=notes,
        origin=label,
        variants=variants,
    )


def convert_model(provider: Any, model: Any, label: str, as_of: date) -> Offer:
    """One genai-prices model as an offer with a version per start date."""
    offer_id = f"{provider.id}/{model.id}"
    days = [EPOCH.date(), *(d for d in _boundaries(model) if d > EPOCH.date())]
    starts = [datetime.combine(d, time()) for d in days]
    versions = tuple(
        _version(
            offer_id, provider, model, (start, starts[i + 1] if i + 1 < len(starts) else None), label, as_of
        )
        for i, start in enumerate(starts)
    )
    return Offer(
        id=offer_id,
        provider=provider.id,
        model=model.id,
        name=model.name or model.id,
        versions=versions,
        origin=label,
        match=convert_match(model.match),
    )


def _shared(offers: list[Offer]) -> list[Offer]:
    """The same offers with equal values shared (one Decimal('0.5'), one default Limits, ...), so the
    cached file is a fraction of the size and loads several times faster (pickle writes a shared object
    once)."""
    pool: dict[Any, Any] = {}

    def one(value: Any) -> Any:
        if isinstance(value, Decimal):
            return pool.setdefault(("d", str(value)), value)
        return pool.setdefault(value, value)

    def prices(p: Prices) -> Prices:
        optional = (one(getattr(p, f)) if getattr(p, f) is not None else None for f in _OPTIONAL_PRICES)
        shared: Prices = one(Prices(one(p.input), one(p.output), *optional))
        return shared

    def tiers(items: tuple[ContextTier, ...]) -> tuple[ContextTier, ...]:
        return tuple(ContextTier(t.above_input_tokens, prices(t.prices)) for t in items)

    out = []
    for offer in offers:
        versions = tuple(
            replace(
                v,
                prices=prices(v.prices) if v.prices is not None else None,
                limits=one(v.limits),
                counting=one(v.counting),
                cache=one(v.cache),
                tiers=tiers(v.tiers),
                windows=tuple(replace(w, prices=prices(w.prices) if w.prices else None) for w in v.windows),
                variants={k: PriceVariant(prices(x.prices), tiers(x.tiers)) for k, x in v.variants.items()},
                source=one(v.source),
                notes=one(v.notes),
                origin=one(v.origin),
                fees_per_1k_calls=_NO_FEES,
            )
            for v in offer.versions
        )
        out.append(replace(offer, versions=versions, origin=one(offer.origin)))
    return out


_OPTIONAL_PRICES = (
    "cached_input",
    "cache_write",
    "reasoning_output",
    "cache_write_1h",
    "cache_storage_per_hour",
)
_NO_FEES: dict[str, Decimal] = {}


def convert_providers(providers: Sequence[Any], label: str, as_of: date) -> BaseLayer:
    """Every model of every provider (in genai-prices' order: the first matching model of a provider wins)."""
    offers: list[Offer] = []
    seen: set[str] = set()
    for provider in providers:
        for model in provider.models:
            offer = convert_model(provider, model, label, as_of)
            if offer.id in seen:  # a model listed twice: the first wins, as genai-prices' lookup does
                continue
            seen.add(offer.id)
            offers.append(offer)
    aliases = {p.id: p.id for p in providers}
    for alias, provider_id in EXTRA_PROVIDER_ALIASES.items():
        if provider_id in aliases:
            aliases.setdefault(alias, provider_id)
    names = ProviderNames(
        aliases,
        {p.id: convert_match(p.provider_match) for p in providers if p.provider_match is not None},
        {p.id: convert_match(p.model_match) for p in providers if p.model_match is not None},
        {p.id: tuple(p.fallback_model_providers) for p in providers if p.fallback_model_providers},
    )
    return BaseLayer(tuple(_shared(offers)), names, label)


def installed_layer(as_of: date) -> BaseLayer:
    """The installed genai-prices package's data."""
    from importlib.metadata import version

    from genai_prices.data import providers  # imported here: a third of a second, only when converting

    return convert_providers(providers, f"genai-prices {version('genai-prices')} (installed package)", as_of)


def iter_token_offers(layer: BaseLayer) -> Iterable[Offer]:
    return (o for o in layer.offers if any(v.prices is not None for v in o.versions))


# --------------------------------------------------------------------------------------------- caching


def installed_key() -> str:
    """What the installed package's conversion is keyed by (its version and this converter's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"genai-prices {version('genai-prices')} installed, converter {CONVERTER_VERSION}"
    except PackageNotFoundError:
        return ""


def ensure_base_layer(folder: Path, today: date) -> None:
    """Convert the installed genai-prices data into `folder` unless it already holds that conversion, or a
    newer one fetched by `catalog update` with this converter. Any failure leaves pricing to the shipped
    catalog (and the cache as it was)."""
    key = installed_key()
    current = read_base_key(folder)
    if (
        not key
        or current == key
        or (current.endswith(f"converter {CONVERTER_VERSION}") and "fetched" in current)
    ):
        return
    try:
        write_base_layer(folder, installed_layer(today).catalog(), key)
    except CatalogError:
        return


# ---------------------------------------------------------------------------------------------- update


@dataclass(frozen=True)
class Change:
    offer_id: str
    what: str  # "added", "removed", "new price", "price changed"
    detail: str  # e.g. "from 2025-06-10: input 2, output 8"


@dataclass(frozen=True)
class UpdateResult:
    label: str  # what the base layer now holds
    key: str
    offers: int
    changes: tuple[Change, ...]
    fetch_error: str | None  # why the published data could not be fetched (the package was used)


def fetched_layer(url: str, today: date) -> BaseLayer:
    """genai-prices' published latest data (its own fetcher and parser); raises on any failure."""
    from genai_prices.update_prices import UpdatePrices

    snapshot = UpdatePrices(url=url).fetch()
    if snapshot is None:
        raise ValueError("the fetch returned no data")
    return convert_providers(snapshot.providers, f"genai-prices data fetched {today} from {url}", today)


def update_base_layer(folder: Path, today: date, *, fetch: bool, url: str | None = None) -> UpdateResult:
    """Refresh the base layer in `folder`: from the published latest data when `fetch` and the network
    allow, else from the installed package. What was there before stays in use until the new layer is
    written whole; a failed fetch falls back to the package and says why."""
    error = None
    layer = None
    if fetch:
        from genai_prices.update_prices import DEFAULT_UPDATE_URL

        try:
            layer = fetched_layer(url or DEFAULT_UPDATE_URL, today)
            key = f"genai-prices fetched {today}, converter {CONVERTER_VERSION}"
        except Exception as e:  # any failure of the network or the payload: the package still prices
            error = f"{type(e).__name__}: {e}"[:300]
    if layer is None:
        layer = installed_layer(today)
        key = installed_key()
    before = read_base_layer(folder)
    after = layer.catalog()
    write_base_layer(folder, after, key)
    return UpdateResult(layer.label, key, len(after.offers), tuple(changes(before, after)), error)


def _price_text(version: OfferVersion) -> str:
    prices = version.prices
    if prices is None:
        return "unpriced"
    parts = [f"input {prices.input.normalize():f}", f"output {prices.output.normalize():f}"]
    if prices.cached_input is not None:
        parts.insert(1, f"cached {prices.cached_input.normalize():f}")
    return ", ".join(parts)


def changes(before: Catalog | None, after: Catalog) -> list[Change]:
    """Models added or removed, and price versions added or changed, between two base layers."""
    if before is None:
        return [Change("*", "added", f"{len(after.offers):,} offers (no base layer before)")]
    found: list[Change] = []
    for offer_id in sorted(set(after.offers) - set(before.offers)):
        found.append(Change(offer_id, "added", _price_text(after.offers[offer_id].versions[-1])))
    for offer_id in sorted(set(before.offers) - set(after.offers)):
        found.append(Change(offer_id, "removed", ""))
    for offer_id in sorted(set(before.offers) & set(after.offers)):
        old = {v.effective_from: v for v in before.offers[offer_id].versions}
        for version in after.offers[offer_id].versions:
            start = version.effective_from.date().isoformat()
            previous = old.get(version.effective_from)
            if previous is None:
                found.append(Change(offer_id, "new price", f"from {start}: {_price_text(version)}"))
            elif (previous.prices, previous.tiers, previous.windows, previous.variants) != (
                version.prices,
                version.tiers,
                version.windows,
                version.variants,
            ):
                was, now = _price_text(previous), _price_text(version)
                detail = (
                    f"version from {start}: {was} -> {now}"
                    if was != now
                    else f"version from {start}: tiers, windows or variants"
                )
                found.append(Change(offer_id, "price changed", detail))
    return found
