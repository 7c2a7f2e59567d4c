"""Spend of stored usage: price groups of usage summed in the database, then roll them up into report rows.

Price is linear in tokens, so usage is summed first and priced afterwards — but never across anything that
changes the price: a catalog version, a time-of-day window, a promotion, a long-context tier or an FX day.
`pricing_grain_minutes` says how fine the time buckets must be for that (windows may open on half hours,
DeepSeek's at 16:30 UTC), `tier_bounds` which per-request input sizes must not be mixed. Each group is then
classified and priced by the one engine, `models.pricing`. A model no catalog offer
matches, or a time no version covers, is listed as unpriced — never priced at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from models.catalog import Catalog
from models.errors import InputError
from models.money import Money, per_currency
from models.pricing import TokenCounts, classify_usage
from models.pricing import tier_bounds as pricing_tier_bounds
from models.usage_record import SUMMED_COUNTS, TOKEN_FIELDS

# The keys a spend or usage report can group by; "key" is the API key id, "day"/"hour" are UTC.
GROUP_KEYS = ("provider", "model", "team", "project", "key", "endpoint", "day", "hour")
TIME_KEYS = ("day", "hour")


def parse_by(text: str, default: Sequence[str]) -> tuple[str, ...]:
    """`--by provider,model,day` as a tuple of keys, checked."""
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip()) if text else tuple(default)
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise InputError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUP_KEYS)}")
    if "day" in keys and "hour" in keys:
        raise InputError("group by day or by hour, not both")
    if len(set(keys)) != len(keys):
        raise InputError(f"--by names a key twice: {text}")
    return keys


def pricing_grain_minutes(catalog: Catalog) -> int:
    """The longest bucket (dividing an hour) in which no price changes: every window, promotion and version
    boundary of the catalog falls on a multiple of it (worked out once per catalog)."""
    return catalog.derived("pricing_grain_minutes", _grain_minutes)


def _grain_minutes(catalog: Catalog) -> int:
    grain = 60
    for offer in catalog.offers.values():
        for version in offer.versions:
            moments: list[datetime] = [version.effective_from]
            if version.effective_to is not None:
                moments.append(version.effective_to)
            for promotion in version.promotions:
                moments += [promotion.start, promotion.end]
            minutes = [m.hour * 60 + m.minute for m in moments]
            for window in version.windows:
                for span in window.spans:
                    minutes += [span.start_minute, span.end_minute]
            for minute in minutes:
                grain = math.gcd(grain, minute % 60) if minute % 60 else grain
    return grain


def tier_bounds(catalog: Catalog) -> tuple[int, ...]:
    """Every long-context threshold in the catalog: requests on either side of one are never summed (worked
    out once per catalog)."""
    return catalog.derived("tier_bounds", lambda c: pricing_tier_bounds(list(c.offers.values())))


def model_tier_bounds(catalog: Catalog) -> Callable[[str | None, str], tuple[int, ...]]:
    """The long-context thresholds of the offer a usage record's (provider, model) is priced with (none
    for a model without tiers or without an offer): a model's requests on either side of one of these are
    never summed, and need not be split at any other model's."""

    def of(provider: str | None, model: str) -> tuple[int, ...]:
        found = catalog.match(provider, model)
        return pricing_tier_bounds([found.offer]) if found.offer is not None else ()

    return of


@dataclass(frozen=True)
class SpendRow:
    """One row of `quotascope report spend`: usage and what it cost, for one combination of group keys."""

    keys: Mapping[str, Any]
    requests: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost: Money | None  # what the priced part cost; None when nothing in the row could be priced
    cache_savings: Money | None  # cached tokens at the miss price, minus what they cost
    discounted_cost: Money | None  # the part of `cost` priced in discounted hours (off-peak windows)
    billed_cost: Money | None  # what the logs themselves said it cost, where they did
    price_versions: tuple[str, ...]
    periods: tuple[str, ...]  # time-of-day periods (and promotions) the cost was priced in
    unpriced_models: tuple[str, ...]
    unpriced_requests: int
    fx: tuple[str, ...]  # the rates used to show money in the row's currency
    currency_note: str = ""  # how the row's currency was chosen when its prices came in several

    def to_json(self) -> dict[str, Any]:
        keys = {k: _json_key(v) for k, v in self.keys.items()}
        return {
            **keys,
            "requests": self.requests,
            **{name: getattr(self, name) for name in TOKEN_FIELDS},
            "cost": self.cost.to_json() if self.cost else None,
            "cache_savings": self.cache_savings.to_json() if self.cache_savings else None,
            "discounted_cost": self.discounted_cost.to_json() if self.discounted_cost else None,
            "billed_cost": self.billed_cost.to_json() if self.billed_cost else None,
            "price_versions": list(self.price_versions),
            "periods": list(self.periods),
            "unpriced": {"models": list(self.unpriced_models), "requests": self.unpriced_requests},
            "fx": list(self.fx),
            **({"currency_note": self.currency_note} if self.currency_note else {}),
        }


def _json_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class _Row:
    keys: dict[str, Any]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("requests", *TOKEN_FIELDS), 0))
    cost: dict[tuple[str, date], Decimal] = field(default_factory=dict)
    savings: dict[tuple[str, date], Decimal] = field(default_factory=dict)
    discounted: dict[tuple[str, date], Decimal] = field(default_factory=dict)
    billed: dict[tuple[str, date], Decimal] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)
    periods: set[str] = field(default_factory=set)
    unpriced: set[str] = field(default_factory=set)
    unpriced_requests: int = 0


def price_spend(
    groups: pl.DataFrame, by: Sequence[str], catalog: Catalog, currency: str | None = None
) -> list[SpendRow]:
    """Price `groups` (one row per price-homogeneous group, see `storage.reports.read_spend_groups`) and
    roll them up into one row per value of `by`.

    `groups` has `provider`, `model`, `bucket` (start of its time bucket), `input_each` (input tokens per
    request, a representative of its long-context band), optionally `service_tier` and `batch`, `requests`,
    the token columns, `billed_cost`, `billed_currency`, and one column per key of `by` (`day` as a date,
    `hour` as a datetime).

    Every group is classified by the pricing engine (`models.pricing.classify_usage`); the groups' tokens are
    summed per price class and day (price is linear, and FX goes by the day), and only those sums are
    priced one by one.
    """
    if groups.is_empty():
        return []
    classified = classify_usage(with_usage_columns(groups), catalog)
    priced = classified.frame
    key_columns = [f"_key_{k}" for k in by]
    priced = priced.with_columns(
        *(
            (
                pl.coalesce("provider", "matched_provider")  # the log did not say; the catalog match does
                if k == "provider"
                else pl.col(k)
            ).alias(f"_key_{k}")
            for k in by
        ),
        pl.col("bucket").dt.date().alias("_day"),
    )
    sums = (
        priced.group_by([*key_columns, "rate", "unpriced", "_day"])
        .agg(pl.col(c).sum() for c in SUMMED_COUNTS)
        .sort("_day")
    )
    rows: dict[tuple[Any, ...], _Row] = {}
    for g in sums.iter_rows(named=True):
        keys = {k: g[f"_key_{k}"] for k in by}
        row = rows.setdefault(tuple(keys.values()), _Row(keys))
        for name in SUMMED_COUNTS[:-1]:  # the 1-hour writes are carried below
            row.counts[name] += int(g[name])
        if g["rate"] is None:
            row.unpriced.add(g["unpriced"])
            row.unpriced_requests += int(g["requests"])
            continue
        rates = classified.rates[g["rate"]]
        tokens = TokenCounts(
            input=int(g["input_tokens"]),
            output=int(g["output_tokens"]),
            cached_input=int(g["cached_input_tokens"]),
            cache_write=int(g["cache_write_tokens"]),
            reasoning=int(g["reasoning_tokens"]),
            requests=int(g["requests"]),
            cache_write_1h=int(g["cache_write_1h_tokens"]),
        )
        key = (rates.currency, g["_day"])
        cost = rates.cost(tokens).amount
        row.cost[key] = row.cost.get(key, Decimal(0)) + cost
        row.savings[key] = row.savings.get(key, Decimal(0)) + rates.cache_savings(tokens).amount
        if rates.discounted:
            row.discounted[key] = row.discounted.get(key, Decimal(0)) + cost
        row.versions.add(rates.version_id)
        row.periods.add(rates.label)
    billed = priced.filter(pl.col("billed_cost").is_not_null())
    if not billed.is_empty():
        billed_sums = billed.group_by(
            [*key_columns, pl.col("billed_currency").fill_null("USD").alias("_currency"), "_day"]
        ).agg(pl.col("billed_cost").sum())
        for g in billed_sums.iter_rows(named=True):
            keys = {k: g[f"_key_{k}"] for k in by}
            row = rows.setdefault(tuple(keys.values()), _Row(keys))
            billed_key = (str(g["_currency"]), g["_day"])
            row.billed[billed_key] = row.billed.get(billed_key, Decimal(0)) + Decimal(g["billed_cost"])
    return [_finish(rows[k], catalog, currency) for k in sorted(rows, key=_sort_key)]


def with_usage_columns(groups: pl.DataFrame) -> pl.DataFrame:
    """Groups read from a store that predates a price dimension get its neutral value."""
    neutral = {
        "service_tier": pl.lit(None, dtype=pl.String),
        "batch": pl.lit(False),
        "cache_write_1h_tokens": pl.lit(0, dtype=pl.Int64),
    }
    missing = [expr.alias(name) for name, expr in neutral.items() if name not in groups.columns]
    return groups.with_columns(missing) if missing else groups


def _sort_key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, "" if v is None else v) for v in values)


def _finish(row: _Row, catalog: Catalog, currency: str | None) -> SpendRow:
    native = sorted({c for c, _ in row.cost} | {c for c, _ in row.billed})
    shown = currency
    if shown is None:
        # prices in several currencies (DeepSeek: CNY, then USD) are shown in the newest one's, converted at
        # the catalog's dated FX (`fx` lists the rates; `currency_note` says so)
        newest = max(row.cost, key=lambda k: (k[1], k[0]))[0] if row.cost else None
        shown = newest if newest is not None else (native[0] if native else None)
    note = ""
    if currency is None and len({c for c, _ in row.cost}) > 1:
        others = " and ".join(sorted({c for c, _ in row.cost} - {shown or ""}))
        note = (
            f"costs in {others} converted to {shown} (the newest price's currency) at the catalog's dated FX"
        )
    rates_used: set[str] = set()

    def convert(amounts: Mapping[tuple[str, date], Decimal], to: str | None) -> Money | None:
        if not amounts or to is None:
            return None
        total = Money.zero(to)
        for (cur, day), amount in sorted(amounts.items()):
            conversion = catalog.fx.convert(Money(amount, cur), to, day)
            if conversion.rate is not None:
                rates_used.add(conversion.rate.describe())
            total = total + conversion.money
        return total

    billed_to = shown or (native[0] if native else None)
    return SpendRow(
        keys=row.keys,
        requests=row.counts["requests"],
        input_tokens=row.counts["input_tokens"],
        cached_input_tokens=row.counts["cached_input_tokens"],
        cache_write_tokens=row.counts["cache_write_tokens"],
        output_tokens=row.counts["output_tokens"],
        reasoning_tokens=row.counts["reasoning_tokens"],
        cost=convert(row.cost, shown),
        cache_savings=convert(row.savings, shown),
        discounted_cost=(convert(row.discounted, shown) or Money.zero(shown)) if row.cost and shown else None,
        billed_cost=convert(row.billed, billed_to),
        price_versions=tuple(sorted(row.versions)),
        periods=tuple(sorted(row.periods)),
        unpriced_models=tuple(sorted(row.unpriced)),
        unpriced_requests=row.unpriced_requests,
        fx=tuple(sorted(rates_used)),
        currency_note=note,
    )


def totals(rows: Iterable[SpendRow]) -> dict[str, Money]:
    """The rows' cost summed per currency."""
    return per_currency(row.cost for row in rows if row.cost is not None)
