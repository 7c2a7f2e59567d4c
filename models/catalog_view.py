"""What `quotascope catalog` shows: offers as table rows and documents, and checks beyond parsing.

Pure functions over catalog values; the command only prints what these return.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.catalog import (
    MINUTES_PER_DAY,
    CacheRules,
    Catalog,
    CountingRules,
    Limits,
    Offer,
    OfferVersion,
    Prices,
    PriceWindow,
    to_utc_naive,
)
from models.money import FxRate, plain

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LIMIT_NAMES = ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency")


def version_for(offer: Offer, at: datetime | None) -> OfferVersion:
    """The version in force at `at` (naive UTC); the newest when `at` is None or none is in force then."""
    if at is not None:
        at = to_utc_naive(at)
        for version in offer.versions:
            if version.in_force(at):
                return version
    return offer.versions[-1]


@dataclass(frozen=True)
class CatalogSummary:
    offers: int
    versions: int
    fx_rates: int
    providers: tuple[str, ...]
    currencies: tuple[str, ...]

    def sentence(self) -> str:
        return (
            f"{self.offers} offers from {len(self.providers)} providers, {self.versions} versions, "
            f"{self.fx_rates} FX rates"
        )


def summarize(catalog: Catalog) -> CatalogSummary:
    offers = list(catalog.offers.values())
    return CatalogSummary(
        offers=len(offers),
        versions=sum(len(o.versions) for o in offers),
        fx_rates=len(catalog.fx.rates),
        providers=tuple(sorted({o.provider for o in offers})),
        currencies=tuple(sorted({v.currency for o in offers for v in o.versions})),
    )


# --------------------------------------------------------------------------------------------- documents


def prices_document(prices: Prices | None) -> dict[str, Decimal] | None:
    if prices is None:
        return None
    fields = {
        "input": prices.input,
        "cached_input": prices.cached_input,
        "cache_write": prices.cache_write,
        "output": prices.output,
        "reasoning_output": prices.reasoning_output,
        "cache_storage_per_hour": prices.cache_storage_per_hour,
    }
    return {name: value for name, value in fields.items() if value is not None}


def limits_document(limits: Limits) -> dict[str, Any]:
    document: dict[str, Any] = {
        name: getattr(limits, name) for name in LIMIT_NAMES if getattr(limits, name) is not None
    }
    if limits.rpm_per_tpm is not None:
        document["rpm_per_tpm"] = list(limits.rpm_per_tpm)
    document["scope"] = limits.scope
    return document


def counting_document(counting: CountingRules) -> dict[str, Any]:
    return {
        "tokens": counting.tokens,
        "cached_counted": counting.cached_counted,
        "reserve_max_tokens": counting.reserve_max_tokens,
        "output_burndown": counting.output_burndown,
        "window": counting.window,
    }


def cache_document(cache: CacheRules) -> dict[str, Any]:
    return {
        "enabled": cache.enabled,
        "min_tokens": cache.min_tokens,
        "step_tokens": cache.step_tokens,
        "read_multiplier": cache.read_multiplier,
        "write_multiplier": cache.write_multiplier,
        "ttl_s": cache.ttl_s,
        "hit_factor": cache.hit_factor,
    }


def window_document(window: PriceWindow) -> dict[str, Any]:
    return {
        "name": window.name,
        "hours_utc": [span.label() for span in window.spans],
        "weekdays": sorted(window.weekdays),
        "multiplier": window.multiplier,
        **({"prices_per_1m_tokens": prices_document(window.prices)} if window.prices is not None else {}),
    }


def version_document(version: OfferVersion) -> dict[str, Any]:
    return {
        "version_id": version.version_id,
        "effective_from": version.effective_from,
        "effective_to": version.effective_to,
        "source": version.source,
        "from": version.origin,
        "as_of": version.as_of,
        "currency": version.currency,
        "priced": version.prices is not None,
        "prices_per_1m_tokens": prices_document(version.prices),
        "base_period": version.base_period,
        "windows": [window_document(w) for w in version.windows],
        "promotions": [
            {"name": p.name, "start": p.start, "end": p.end, "multiplier": p.multiplier}
            for p in version.promotions
        ],
        "tiers": [
            {"above_input_tokens": t.above_input_tokens, "prices_per_1m_tokens": prices_document(t.prices)}
            for t in version.tiers
        ],
        "fees_per_1k_calls": dict(version.fees_per_1k_calls),
        "limits": limits_document(version.limits),
        "counting": counting_document(version.counting),
        "cache": cache_document(version.cache),
        "ptu": None
        if version.ptu is None
        else {
            "input_tpm_per_ptu": version.ptu.input_tpm_per_ptu,
            "output_weight": version.ptu.output_weight,
            "min_ptu": version.ptu.min_ptu,
            "step_ptu": version.ptu.step_ptu,
            "cached_excluded": version.ptu.cached_excluded,
        },
        "variants": {
            name: {
                "prices_per_1m_tokens": prices_document(v.prices),
                "tiers": [
                    {
                        "above_input_tokens": t.above_input_tokens,
                        "prices_per_1m_tokens": prices_document(t.prices),
                    }
                    for t in v.tiers
                ],
            }
            for name, v in version.variants.items()
        },
        "notes": version.notes,
    }


def fx_document(rate: FxRate) -> dict[str, Any]:
    return {
        "base": rate.base,
        "quote": rate.quote,
        "rate": rate.rate,
        "as_of": rate.as_of,
        "source": rate.source,
    }


def rates_for(catalog: Catalog, currencies: Iterable[str]) -> list[FxRate]:
    """The FX rates touching any of `currencies`, oldest first."""
    wanted = set(currencies)
    rates = [r for r in catalog.fx.rates if r.base in wanted or r.quote in wanted]
    return sorted(rates, key=lambda r: (r.base, r.quote, r.as_of))


def offer_document(catalog: Catalog, offer: Offer) -> dict[str, Any]:
    return {
        "id": offer.id,
        "provider": offer.provider,
        "model": offer.model,
        "name": offer.name,
        "region": offer.region,
        "aliases": list(offer.aliases),
        "file": offer.origin,
        "answers_to": list(offer.match.names()) if offer.match is not None else [],
        "versions": [version_document(v) for v in offer.versions],
        "fx_rates": [fx_document(r) for r in rates_for(catalog, {v.currency for v in offer.versions})],
    }


def offer_row(offer: Offer, at: datetime | None) -> dict[str, Any]:
    """One line of `catalog list`: the version in force at `at` (or the newest)."""
    version = version_for(offer, at)
    limits = version.limits.effective()
    prices = version.prices
    return {
        "id": offer.id,
        "provider": offer.provider,
        "model": offer.model,
        "region": offer.region,
        "currency": version.currency,
        "version_id": version.version_id,
        "priced": prices is not None,
        "input": None if prices is None else prices.input,
        "cached_input": None if prices is None else prices.cached_input,
        "output": None if prices is None else prices.output,
        "base_period": version.base_period,
        "windows": [f"{w.name} x{plain(w.multiplier)}" for w in version.windows],
        "tpm": limits.tpm,
        "rpm": limits.rpm,
        "max_concurrency": limits.max_concurrency,
        "rpm_per_tpm": None if limits.rpm_per_tpm is None else list(limits.rpm_per_tpm),
        "scope": limits.scope if limits.any() or limits.rpm_per_tpm else None,
        "versions": len(offer.versions),
        "as_of": version.as_of,
    }


# --------------------------------------------------------------------------------------------- text


def _days(weekdays: frozenset[int]) -> str:
    days = sorted(weekdays)
    if len(days) == 7:
        return "every day"
    if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        return f"{WEEKDAY_NAMES[days[0]]}-{WEEKDAY_NAMES[days[-1]]}"
    return ", ".join(WEEKDAY_NAMES[d] for d in days)


def prices_text(prices: Prices) -> str:
    parts = [f"input {plain(prices.input)}"]
    for label, value in (
        ("cached input", prices.cached_input),
        ("cache write", prices.cache_write),
        ("1-hour cache write", prices.cache_write_1h),
    ):
        if value is not None:
            parts.append(f"{label} {plain(value)}")
    parts.append(f"output {plain(prices.output)}")
    if prices.reasoning_output is not None:
        parts.append(f"reasoning output {plain(prices.reasoning_output)}")
    if prices.cache_storage_per_hour is not None:
        parts.append(f"cache storage {plain(prices.cache_storage_per_hour)} per hour")
    return ", ".join(parts)


def _limits_text(limits: Limits) -> str:
    parts = [
        f"{'concurrency' if name == 'max_concurrency' else name.upper()} {getattr(limits, name):,}"
        for name in LIMIT_NAMES
        if getattr(limits, name) is not None
    ]
    if limits.rpm_per_tpm is not None:
        rpm, per = limits.rpm_per_tpm
        parts.append(f"{rpm} RPM per {per:,} TPM")
    if not parts:
        return "none published"
    return ", ".join(parts) + f" (per {limits.scope})"


def _counting_text(counting: CountingRules) -> str:
    window = {
        "minute": "per minute",
        "second": "per second (limit / 60)",
        "bucket": "continuous token bucket",
    }
    return (
        f"{counting.tokens} tokens count; "
        f"cached input {'counts' if counting.cached_counted else 'does not count'}; "
        f"max_tokens {'reserved at request start' if counting.reserve_max_tokens else 'not reserved'}; "
        f"output x{plain(counting.output_burndown)}; enforced {window[counting.window]}"
    )


def _cache_text(cache: CacheRules) -> str:
    if not cache.enabled:
        return "none"
    parts = [f"from {cache.min_tokens:,} tokens" if cache.min_tokens else "no minimum stated"]
    if cache.step_tokens > 1:
        parts.append(f"in {cache.step_tokens}-token steps")
    if cache.read_multiplier is not None:
        parts.append(f"read x{plain(cache.read_multiplier)} input")
    if cache.write_multiplier is not None:
        parts.append(f"write x{plain(cache.write_multiplier)} input")
    if cache.ttl_s is not None:
        parts.append(f"TTL {cache.ttl_s} s")
    if cache.hit_factor != 1:
        parts.append(f"hit factor {plain(cache.hit_factor)}")
    return ", ".join(parts)


def version_lines(version: OfferVersion, in_force: bool) -> list[str]:
    until = version.effective_to.date().isoformat() if version.effective_to else "open"
    lines = [
        f"version {version.since} -> {until}{'  (in force)' if in_force else ''}",
        f"  from:       {version.origin or 'your catalog'}",
        f"  source:     {version.source}",
        f"  as of:      {version.as_of.isoformat()}",
    ]
    if version.prices is None:
        lines.append(f"  prices:     unpriced ({version.currency}; no token price published)")
    else:
        lines.append(
            f"  prices:     {version.currency} per 1M tokens, {version.base_period}: "
            f"{prices_text(version.prices)}"
        )
    for window in version.windows:
        spans = ", ".join(s.label() for s in window.spans)
        price = f"x{plain(window.multiplier)}" if window.prices is None else prices_text(window.prices)
        lines.append(f"  window:     {window.name} {price} at {spans} UTC, {_days(window.weekdays)}")
    for promotion in version.promotions:
        lines.append(
            f"  promotion:  {promotion.name} x{plain(promotion.multiplier)} from "
            f"{promotion.start.isoformat(sep=' ')} to {promotion.end.isoformat(sep=' ')} UTC"
        )
    for tier in version.tiers:
        lines.append(
            f"  tier:       input above {tier.above_input_tokens:,} tokens: {prices_text(tier.prices)}"
        )
    for name, variant in version.variants.items():
        lines.append(f"  {name + ':':<11} {prices_text(variant.prices)}")
        lines.extend(
            f"  {'':<11} input above {t.above_input_tokens:,} tokens: {prices_text(t.prices)}"
            for t in variant.tiers
        )
    for name, fee in version.fees_per_1k_calls.items():
        lines.append(f"  fee:        {name} {plain(fee)} {version.currency} per 1,000 calls")
    lines.append(f"  limits:     {_limits_text(version.limits)}")
    lines.append(f"  counting:   {_counting_text(version.counting)}")
    lines.append(f"  cache:      {_cache_text(version.cache)}")
    if version.ptu is not None:
        ptu = version.ptu
        lines.append(
            f"  PTU:        {ptu.input_tpm_per_ptu:,} input TPM per PTU, "
            f"output weight {plain(ptu.output_weight)}, "
            f"minimum {ptu.min_ptu}, step {ptu.step_ptu}, cached tokens "
            f"{'excluded' if ptu.cached_excluded else 'included'}"
        )
    if version.notes:
        lines.append(f"  notes:      {version.notes}")
    return lines


def offer_text(catalog: Catalog, offer: Offer, at: datetime | None) -> str:
    current = version_for(offer, at)
    lines = [
        f"{offer.id}: {offer.name}",
        f"provider {offer.provider}, model {offer.model}"
        + (f", region {offer.region}" if offer.region else "")
        + (f", also known as {', '.join(offer.aliases)}" if offer.aliases else ""),
        f"file: {offer.origin}",
    ]
    if offer.match is not None and offer.match.names():
        lines.append(f"answers to: {', '.join(offer.match.names())} (and the patterns of its source)")
    for version in offer.versions:
        lines.append("")
        lines.extend(version_lines(version, version is current))
    rates = rates_for(catalog, {v.currency for v in offer.versions})
    lines.append("")
    if rates:
        lines.append("FX rates:")
        lines.extend(f"  {rate.describe()}" for rate in rates)
    else:
        lines.append("FX rates: none for " + ", ".join(sorted({v.currency for v in offer.versions})))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- checks


def check_catalog(catalog: Catalog) -> list[str]:
    """Things that parse but look wrong; `catalog validate` reports them without failing."""
    warnings: list[str] = []
    known = set(catalog.fx.currencies())
    currencies = {v.currency for o in catalog.offers.values() for v in o.versions}
    if len(currencies) > 1:
        for currency in sorted(currencies - known):
            warnings.append(
                f"no FX rate converts {currency}: its figures cannot be shown in another currency"
            )
    for offer in catalog.offers.values():
        for version in offer.versions:
            where = f"offer {offer.id!r}, version {version.version_id}"
            for promotion in version.promotions:
                if not _promotion_inside(version, promotion.start, promotion.end):
                    warnings.append(f"{where}: promotion {promotion.name!r} runs outside the version's dates")
            overlap = _overlapping_windows(version.windows)
            if overlap:
                warnings.append(
                    f"{where}: windows {overlap[0]!r} and {overlap[1]!r} overlap (the first one wins)"
                )
    return warnings


def _promotion_inside(version: OfferVersion, start: datetime, end: datetime) -> bool:
    if end <= version.effective_from:
        return False
    return version.effective_to is None or start < version.effective_to


def week_intervals(window: PriceWindow) -> list[tuple[int, int]]:
    """The minutes of the week (Monday 00:00 = 0) a window covers, as [start, end) intervals."""
    week = 7 * MINUTES_PER_DAY
    intervals = []
    for day in sorted(window.weekdays):
        base = day * MINUTES_PER_DAY
        for span in window.spans:
            if span.start_minute < span.end_minute:
                intervals.append((base + span.start_minute, base + span.end_minute))
            else:  # to midnight, then the part after midnight on the next day
                intervals.append((base + span.start_minute, base + MINUTES_PER_DAY))
                if span.end_minute:
                    after = (base + MINUTES_PER_DAY) % week
                    intervals.append((after, after + span.end_minute))
    return intervals


def _overlapping_windows(windows: tuple[PriceWindow, ...]) -> tuple[str, str] | None:
    for i, first in enumerate(windows):
        for second in windows[i + 1 :]:
            if first.multiplier == second.multiplier:
                continue  # the same price either way
            for a_start, a_end in week_intervals(first):
                for b_start, b_end in week_intervals(second):
                    if a_start < b_end and b_start < a_end:
                        return first.name, second.name
    return None
