"""Spend of stored usage: price groups of usage summed in the database, then roll them up into report rows.

Price is linear in tokens, so usage is summed first and priced afterwards — but never across anything that
changes the price: a catalog version, a time-of-day window, a promotion, a long-context tier or an FX day.
`pricing_grain_minutes` says how fine the time buckets must be for that (windows may open on half hours,
DeepSeek's at 16:30 UTC), `tier_bounds` which per-request input sizes must not be mixed. Each group is then
priced with `models.pricing.rates_at` for the version in force at its bucket. A model no catalog offer
matches, or a time no version covers, is listed as unpriced — never priced at zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from models.catalog import Catalog, Offer
from models.errors import InputError
from models.money import Money, per_currency
from models.pricing import Rates, TokenCounts, period_at, rates_at

# The keys a spend or usage report can group by; "key" is the API key id, "day"/"hour" are UTC.
GROUP_KEYS = ("provider", "model", "team", "project", "key", "endpoint", "day", "hour")
TIME_KEYS = ("day", "hour")
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


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
    boundary of the catalog falls on a multiple of it."""
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
    """Every long-context threshold in the catalog: requests on either side of one are never summed."""
    return tuple(
        sorted({t.above_input_tokens for o in catalog.offers.values() for v in o.versions for t in v.tiers})
    )


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


class _Pricer:
    """Finds offers and rates once per distinct question: thousands of groups share a handful of rates."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._offers: dict[tuple[str | None, str], Offer | None] = {}
        self._rates: dict[tuple[str, str, str, str | None, int], Rates | None] = {}

    def offer(self, provider: str | None, model: str) -> Offer | None:
        key = (provider, model)
        if key not in self._offers:
            self._offers[key] = self.catalog.find(provider, model)
        return self._offers[key]

    def rates(self, offer: Offer, at: datetime, input_each: int) -> Rates | None:
        try:
            version = offer.version_at(at)
        except InputError:  # no version in force then
            return None
        period, _ = period_at(version, at)
        promotion = next((p.name for p in version.promotions if p.active(at)), None)
        key = (offer.id, version.version_id, period, promotion, input_each)
        if key not in self._rates:
            try:
                self._rates[key] = rates_at(version, at, input_each)
            except InputError:  # a version that publishes no price
                self._rates[key] = None
        return self._rates[key]


def price_spend(
    groups: pl.DataFrame, by: Sequence[str], catalog: Catalog, currency: str | None = None
) -> list[SpendRow]:
    """Price `groups` (one row per price-homogeneous group, see `storage.reports.read_spend_groups`) and
    roll them up into one row per value of `by`.

    `groups` has `provider`, `model`, `bucket` (start of its time bucket), `input_each` (input tokens per
    request, a representative of its long-context class), `requests`, the token columns, `billed_cost`,
    `billed_currency`, and one column per key of `by` (`day` as a date, `hour` as a datetime).

    Tens of thousands of groups (a month of half-hour buckets per team and model) share a few dozen rates:
    each distinct pricing question (offer, bucket, band) is answered once, the groups' tokens are summed per
    rate and day (price is linear, and FX goes by the day), and only those sums are priced one by one.
    """
    if groups.is_empty():
        return []
    pricer = _Pricer(catalog)
    question_keys = ["provider", "model", "bucket", "input_each"]
    questions = groups.select(question_keys).unique()
    found: dict[Rates, int] = {}  # each distinct rate -> its number
    rate_no: list[int | None] = []
    unpriced: list[str | None] = []
    matched_provider: list[str | None] = []
    for provider, model, bucket, input_each in questions.iter_rows():
        offer = pricer.offer(provider, model)
        matched_provider.append(offer.provider if offer is not None else None)
        rates = pricer.rates(offer, bucket, int(input_each)) if offer is not None else None
        if rates is None:
            label = f"{provider or '?'}/{model}"
            if offer is not None:
                label += f" (no price in force then; see `quotascope catalog show {offer.id}`)"
            rate_no.append(None)
            unpriced.append(label)
            continue
        rate_no.append(found.setdefault(rates, len(found)))
        unpriced.append(None)
    answers = questions.with_columns(
        pl.Series("_rate", rate_no, dtype=pl.Int64),
        pl.Series("_unpriced", unpriced, dtype=pl.String),
        pl.Series("_matched_provider", matched_provider, dtype=pl.String),
    )
    priced = groups.join(answers, on=question_keys, how="left", nulls_equal=True)
    key_columns = [f"_key_{k}" for k in by]
    priced = priced.with_columns(
        *(
            (
                pl.coalesce("provider", "_matched_provider")  # the log did not say; the catalog match does
                if k == "provider"
                else pl.col(k)
            ).alias(f"_key_{k}")
            for k in by
        ),
        pl.col("bucket").dt.date().alias("_day"),
    )
    counts = ["requests", *TOKEN_FIELDS]
    sums = (
        priced.group_by([*key_columns, "_rate", "_unpriced", "_day"])
        .agg(pl.col(c).sum() for c in counts)
        .sort("_day")
    )
    by_number = list(found)  # in the order they were numbered
    rows: dict[tuple[Any, ...], _Row] = {}
    for g in sums.iter_rows(named=True):
        keys = {k: g[f"_key_{k}"] for k in by}
        row = rows.setdefault(tuple(keys.values()), _Row(keys))
        for name in counts:
            row.counts[name] += int(g[name])
        if g["_rate"] is None:
            row.unpriced.add(g["_unpriced"])
            row.unpriced_requests += int(g["requests"])
            continue
        rates = by_number[g["_rate"]]
        tokens = TokenCounts(
            input=int(g["input_tokens"]),
            output=int(g["output_tokens"]),
            cached_input=int(g["cached_input_tokens"]),
            cache_write=int(g["cache_write_tokens"]),
            reasoning=int(g["reasoning_tokens"]),
            requests=int(g["requests"]),
        )
        key = (rates.currency, g["_day"])
        row.cost[key] = row.cost.get(key, Decimal(0)) + rates.cost(tokens).amount
        row.savings[key] = row.savings.get(key, Decimal(0)) + rates.cache_savings(tokens).amount
        if rates.discounted:
            row.discounted[key] = row.discounted.get(key, Decimal(0)) + rates.cost(tokens).amount
        row.versions.add(rates.version_id)
        row.periods.add(rates.period + (f" + {rates.promotion}" if rates.promotion else ""))
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


def _sort_key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, "" if v is None else v) for v in values)


def _finish(row: _Row, catalog: Catalog, currency: str | None) -> SpendRow:
    native = sorted({c for c, _ in row.cost} | {c for c, _ in row.billed})
    shown = currency
    if shown is None:
        if len({c for c, _ in row.cost}) > 1:
            keys = ", ".join(f"{k}={v}" for k, v in row.keys.items()) or "the total"
            raise InputError(
                f"costs in {' and '.join(sorted({c for c, _ in row.cost}))} fall in one row ({keys}); "
                "pass --display-currency, or group --by provider"
            )
        shown = next(iter({c for c, _ in row.cost}), native[0] if native else None)
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
    )


def totals(rows: Iterable[SpendRow]) -> dict[str, Money]:
    """The rows' cost summed per currency."""
    return per_currency(row.cost for row in rows if row.cost is not None)
