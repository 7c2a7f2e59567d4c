"""The one pricing engine: what decides a request's price, and what the tokens of a price class cost.

Pricing is two steps, each defined once here:

1. **Classification** (vectorised, polars): for every request — or every group of requests stored together —
   the offer version in force at its time, the time-of-day window its minute falls in, the promotion active
   then, the long-context tier its per-request input reaches, and its price variant (service tier or batch).
   `Classifier.key` packs these into one integer per row; spend, replay, budgets and the planner group by it.
   The long-context rule is rendered for SQL (`models.bands.tier_band_sql`, without polars: an ingest renders
   it) from the same thresholds and the same comparison, so a store can aggregate by it without a second copy
   of the rule.
2. **Money** (Decimal): `rates_for` turns one price class into per-1M-token `Rates`, and `Rates.cost` prices
   a token sum. Price is linear in tokens, so summing a class first and pricing the sum is exact.

`rates_at` (one request at one moment) is the same classification applied to a one-row frame.

Token semantics follow the canonical usage record (DESIGN.md): `input` is *all* prompt tokens, cache hits
and writes included; `output` is all generated tokens, reasoning included. So the cache-miss part of the
prompt is `input - cached_input - cache_write`, and reasoning is never added on top of output. 1-hour cache
writes are the part `cache_write_1h` of `cache_write` (Anthropic's `ephemeral_1h_input_tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Literal

import polars as pl

from models.catalog import (
    SERVICE_TIERS,
    STANDARD,
    VARIANTS,
    Catalog,
    ContextTier,
    Offer,
    OfferVersion,
    Prices,
    PriceWindow,
    to_utc_naive,
)
from models.errors import InputError, UnpricedError
from models.money import MILLION, FxTable, Money
from models.target import (
    TARGET_CACHED,
    TARGET_COLUMNS,
    TARGET_INPUT,
    TARGET_OUTPUT,
    TARGET_REASONING,
    TARGET_WRITE,
)
from models.usage_record import FAILED_BATCH_MODEL

BeforeFirst = Literal["unpriced", "earliest"]
MINUTES_PER_WEEK = 7 * 1440


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token totals of one request or of an aggregate of requests priced alike."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0
    requests: int = 1
    cache_write_1h: int = 0  # the part of `cache_write` written for an hour

    def __post_init__(self) -> None:
        for name in (
            "input",
            "output",
            "cached_input",
            "cache_write",
            "reasoning",
            "requests",
            "cache_write_1h",
        ):
            if getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', ' ')} tokens cannot be negative")
        if self.cached_input + self.cache_write > self.input:
            raise InputError("cached and cache-write tokens cannot exceed all input tokens")
        if self.reasoning > self.output:
            raise InputError("reasoning tokens are part of output and cannot exceed it")
        if self.cache_write_1h > self.cache_write:
            raise InputError("1-hour cache writes are part of cache writes and cannot exceed them")

    @property
    def miss_input(self) -> int:
        return self.input - self.cached_input - self.cache_write


@dataclass(frozen=True, slots=True)
class Rates:
    """Effective per-1M-token prices of one price class, and what made them so."""

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
    cache_write_1h: Decimal | None = None  # None: 1-hour writes cost what 5-minute ones do
    variant: str = STANDARD  # the service tier / batch price the class was priced at
    note: str = ""  # how the variant was priced when the catalog lists no price for it

    def cost(self, tokens: TokenCounts) -> Money:
        return self.cost_of(
            Decimal(tokens.input),
            Decimal(tokens.output),
            cached_input=Decimal(tokens.cached_input),
            cache_write=Decimal(tokens.cache_write),
            reasoning=Decimal(tokens.reasoning),
            cache_write_1h=Decimal(tokens.cache_write_1h),
        )

    def cost_of(
        self,
        input_tokens: Decimal,
        output_tokens: Decimal,
        *,
        cached_input: Decimal = Decimal(0),
        cache_write: Decimal = Decimal(0),
        reasoning: Decimal = Decimal(0),
        cache_write_1h: Decimal = Decimal(0),
    ) -> Money:
        """The same rule on averages (token counts need not be whole)."""
        write_1h = self.cache_write if self.cache_write_1h is None else self.cache_write_1h
        amount = (
            (input_tokens - cached_input - cache_write) * self.input
            + cached_input * self.cached_input
            + (cache_write - cache_write_1h) * self.cache_write
            + cache_write_1h * write_1h
            + (output_tokens - reasoning) * self.output
            + reasoning * self.reasoning_output
        ) / MILLION
        return Money(amount, self.currency)

    def cache_savings(self, tokens: TokenCounts) -> Money:
        """What the cached tokens would have cost at the miss price, minus what they cost."""
        return Money(tokens.cached_input * (self.input - self.cached_input) / MILLION, self.currency)

    def scaled(self, factor: Decimal) -> Rates:
        return replace(
            self,
            input=self.input * factor,
            cached_input=self.cached_input * factor,
            cache_write=self.cache_write * factor,
            output=self.output * factor,
            reasoning_output=self.reasoning_output * factor,
            cache_write_1h=None if self.cache_write_1h is None else self.cache_write_1h * factor,
        )

    @property
    def label(self) -> str:
        """The period, promotion and variant this class was priced in, as a report lists it."""
        parts = [self.period]
        if self.promotion:
            parts.append(self.promotion)
        if self.variant != STANDARD:
            parts.append(self.variant + (f" ({self.note})" if self.note else ""))
        return " + ".join(parts)


def token_cost(
    miss: pl.Expr,
    hit: pl.Expr,
    output: pl.Expr,
    price_input: pl.Expr,
    price_cached: pl.Expr,
    price_output: pl.Expr,
) -> pl.Expr:
    """`Rates.cost_of` on columns (the planner's sweep over many scenarios): cache-miss input at the input
    price, hits at the cached price (the input price where none is listed), output at the output price,
    per 1M tokens. Columns are Decimal, so the money stays exact."""
    million = pl.lit(MILLION).cast(pl.Decimal(38, 12))
    return (miss * price_input + hit * price_cached.fill_null(price_input) + output * price_output) / million


# ------------------------------------------------------------------------------------ classification


@dataclass(frozen=True, slots=True)
class PriceClass:
    """What decides a request's price under one offer: the version (index into its versions), the
    time-of-day period, the promotion, the long-context threshold exceeded, and the price variant."""

    vidx: int
    period: str
    promotion: str | None
    tier: int | None
    variant: str


def version_index(ts: pl.Expr, versions: Sequence[OfferVersion], before_first: BeforeFirst) -> pl.Expr:
    """The index of the version in force at each `ts`; null where none is.

    With `before_first="earliest"` times before the first version take the first one (a what-if replay of
    last month's traffic on an offer whose catalog entry starts today).
    """
    expr: pl.Expr = pl.lit(None, dtype=pl.Int32)
    for k, version in enumerate(versions):  # the last wrapped is tested first: the newest wins
        in_force = ts >= version.effective_from
        if version.effective_to is not None:
            in_force = in_force & (ts < version.effective_to)
        expr = pl.when(in_force).then(pl.lit(k, dtype=pl.Int32)).otherwise(expr)
    if before_first == "earliest" and versions:
        expr = pl.when(ts < versions[0].effective_from).then(pl.lit(0, dtype=pl.Int32)).otherwise(expr)
    return expr


def _in_window(window: PriceWindow, weekday: pl.Expr, minute: pl.Expr) -> pl.Expr:
    """Whether a (weekday 0 = Monday, minute of the day) falls in `window`; a span ending at or before its
    start wraps past midnight and its part after midnight belongs to the day it opened."""
    days = sorted(window.weekdays)
    previous_days = sorted((d + 1) % 7 for d in window.weekdays)
    hit: pl.Expr = pl.lit(False)
    for span in window.spans:
        if span.start_minute < span.end_minute:
            hit = hit | (weekday.is_in(days) & (minute >= span.start_minute) & (minute < span.end_minute))
        else:
            hit = hit | (weekday.is_in(days) & (minute >= span.start_minute))
            hit = hit | (weekday.is_in(previous_days) & (minute < span.end_minute))
    return hit


def _tiers_of(version: OfferVersion) -> list[int]:
    if version.prices is None:
        return []
    found = {t.above_input_tokens for t in version.tiers}
    for variant in version.variants.values():
        found |= {t.above_input_tokens for t in variant.tiers}
    return sorted(found)


@dataclass(frozen=True)
class Classifier:
    """The classification of requests under one offer's versions, as polars expressions, and the legend of
    the integer codes it packs into one key per row."""

    versions: tuple[OfferVersion, ...]
    periods: tuple[str, ...]
    promotions: tuple[str | None, ...]
    tiers: tuple[int | None, ...]

    @classmethod
    def of(cls, versions: Sequence[OfferVersion]) -> Classifier:
        periods = list(
            dict.fromkeys([v.base_period for v in versions] + [w.name for v in versions for w in v.windows])
        )
        promotions: list[str | None] = [None, *dict.fromkeys(p.name for v in versions for p in v.promotions)]
        tiers: list[int | None] = [None, *sorted({t for v in versions for t in _tiers_of(v)})]
        return cls(tuple(versions), tuple(periods), tuple(promotions), tuple(tiers))

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        return (len(self.versions), len(self.periods), len(self.promotions), len(self.tiers), len(VARIANTS))

    # ------------------------------------------------------------------ the rules, one expression each

    def period(self, vidx: pl.Expr, ts: pl.Expr) -> pl.Expr:
        """Code of the time-of-day period: the first of the version's windows holding the minute, else its
        base period (`ts` naive UTC, as every frame here).

        Looked up by version and minute of the week in a table the windows' rules (`_period_rule`) fill
        once for the week's 10,080 minutes: the rules per row (weekday, hour and minute, then every window's
        tests per version) cost a replay's pricing 60-110 ms per offer with windows at 383,000 requests,
        three times over for its tokenizer band; the lookup a tenth of that."""
        if all(not v.windows for v in self.versions):  # one period per version: no minute matters
            return self._period_rule(vidx, weekday=pl.lit(0), minute=pl.lit(0))
        table = self.period_table
        # 1970-01-01 was a Thursday: minutes since the epoch plus three days, modulo a week, count from Monday
        minute_of_week = (ts.dt.epoch("s") // 60 + 3 * 1440) % MINUTES_PER_WEEK
        index = vidx.cast(pl.Int64) * MINUTES_PER_WEEK + minute_of_week
        return (
            pl.when(vidx.is_null())
            .then(pl.lit(0, dtype=pl.Int32))
            .otherwise(pl.lit(table).gather(index.fill_null(0)))
        )

    @cached_property
    def period_table(self) -> pl.Series:
        """`period`'s codes by version, then minute of the week from Monday 00:00 (UTC), filled once."""
        slot = pl.int_range(0, len(self.versions) * MINUTES_PER_WEEK, dtype=pl.Int32)  # vidx, then minute
        minute = slot % MINUTES_PER_WEEK
        rule = self._period_rule(slot // MINUTES_PER_WEEK, minute // 1440, minute % 1440)
        return pl.select(rule.alias("period"))["period"]

    def _period_rule(self, vidx: pl.Expr, weekday: pl.Expr, minute: pl.Expr) -> pl.Expr:
        """`period` from a weekday (0 = Monday) and a minute of the day, each window tested in turn."""
        expr: pl.Expr = pl.lit(0, dtype=pl.Int32)
        for k, version in enumerate(self.versions):
            base = pl.lit(self.periods.index(version.base_period), dtype=pl.Int32)
            expr = pl.when(vidx == k).then(base).otherwise(expr)
            for window in reversed(version.windows):  # the first window listed wins: wrapped last
                code = pl.lit(self.periods.index(window.name), dtype=pl.Int32)
                expr = pl.when((vidx == k) & _in_window(window, weekday, minute)).then(code).otherwise(expr)
        return expr

    def promotion(self, vidx: pl.Expr, ts: pl.Expr) -> pl.Expr:
        """Code of the promotion active at `ts` (0: none); the first listed wins."""
        expr: pl.Expr = pl.lit(0, dtype=pl.Int32)
        for k, version in enumerate(self.versions):
            for promotion in reversed(version.promotions):
                active = (vidx == k) & (ts >= promotion.start) & (ts < promotion.end)
                code = pl.lit(self.promotions.index(promotion.name), dtype=pl.Int32)
                expr = pl.when(active).then(code).otherwise(expr)
        return expr

    def tier(self, vidx: pl.Expr, input_each: pl.Expr) -> pl.Expr:
        """Code of the highest long-context threshold the per-request input exceeds (0: none)."""
        expr: pl.Expr = pl.lit(0, dtype=pl.Int32)
        for k, version in enumerate(self.versions):
            for threshold in _tiers_of(version):  # ascending: a later (higher) threshold wins
                code = pl.lit(self.tiers.index(threshold), dtype=pl.Int32)
                expr = pl.when((vidx == k) & (input_each > threshold)).then(code).otherwise(expr)
        return expr

    @staticmethod
    def variant(service_tier: pl.Expr, batch: pl.Expr) -> pl.Expr:
        """Code (into `VARIANTS`) of the price variant: batch wins, then the normalised service tier."""
        names = list(SERVICE_TIERS)
        codes = [VARIANTS.index(SERVICE_TIERS[n]) for n in names]
        tier = (
            service_tier.str.strip_chars()
            .str.to_lowercase()
            .replace_strict(names, codes, default=0, return_dtype=pl.Int32)
            .fill_null(0)
        )
        return (
            pl.when(batch.fill_null(False))
            .then(pl.lit(VARIANTS.index("batch"), dtype=pl.Int32))
            .otherwise(tier)
        )

    def key(
        self,
        vidx: pl.Expr,
        ts: pl.Expr,
        input_each: pl.Expr,
        service_tier: pl.Expr | None = None,
        batch: pl.Expr | None = None,
    ) -> pl.Expr:
        """Every rule above packed into one integer (one hash column groups several times faster on ten
        million rows than five mixed ones); `decode` reads it back. Null where `vidx` is."""
        _, n_periods, n_promotions, n_tiers, n_variants = self.sizes
        variant = self.variant(
            service_tier if service_tier is not None else pl.lit(None, dtype=pl.String),
            batch if batch is not None else pl.lit(False),
        )
        v = vidx.cast(pl.Int64)
        packed = (
            ((v * n_periods + self.period(vidx, ts)) * n_promotions + self.promotion(vidx, ts)) * n_tiers
            + self.tier(vidx, input_each)
        ) * n_variants + variant
        return pl.when(vidx.is_null()).then(pl.lit(None, dtype=pl.Int64)).otherwise(packed.cast(pl.Int64))

    @property
    def span(self) -> int:
        """How many distinct keys there can be (keys are 0 .. span-1)."""
        a, b, c, d, e = self.sizes
        return a * b * c * d * e

    def decode(self, key: int) -> PriceClass:
        _, n_periods, n_promotions, n_tiers, n_variants = self.sizes
        key, variant = divmod(key, n_variants)
        key, tier = divmod(key, n_tiers)
        key, promotion = divmod(key, n_promotions)
        vidx, period = divmod(key, n_periods)
        return PriceClass(
            vidx, self.periods[period], self.promotions[promotion], self.tiers[tier], VARIANTS[variant]
        )

    def rates(self, key: int) -> Rates:
        """The rates of one key (raises `UnpricedError` for a version without prices)."""
        klass = self.decode(key)
        return rates_for(self.versions[klass.vidx], klass)


def classify(
    frame: pl.DataFrame,
    offer: Offer,
    *,
    at: str = "ts",
    input_each: pl.Expr,
    before_first: BeforeFirst = "unpriced",
) -> tuple[pl.DataFrame, Classifier]:
    """`frame` with `vidx` (the version in force at column `at`) and `price_key` (see `Classifier.key`);
    `service_tier` and `batch` columns are used where the frame has them."""
    classifier = Classifier.of(offer.versions)
    vidx = version_index(pl.col(at), offer.versions, before_first)
    tier_col = pl.col("service_tier") if "service_tier" in frame.columns else None
    batch_col = pl.col("batch") if "batch" in frame.columns else None
    out = frame.with_columns(vidx.alias("vidx")).with_columns(
        classifier.key(pl.col("vidx"), pl.col(at), input_each, tier_col, batch_col).alias("price_key")
    )
    return out, classifier


def tier_bounds(offers: Sequence[Offer]) -> tuple[int, ...]:
    """Every long-context threshold of these offers: requests on either side of one are never summed."""
    return tuple(sorted({t for o in offers for v in o.versions for t in _tiers_of(v)}))


# --------------------------------------------------------------------------------------------- money


def _base(version: OfferVersion, klass: PriceClass) -> tuple[Prices, tuple[ContextTier, ...], str]:
    """The price list a class starts from: a window's own prices, else the version's; a variant's where the
    version lists one."""
    if version.prices is None:
        raise UnpricedError(
            f"offer {version.offer_id!r} publishes no token price for the version of "
            f"{version.effective_from.date().isoformat()}; give prices with --price-input/--price-output"
        )
    window = next((w for w in version.windows if w.name == klass.period), None)
    prices = window.prices if window is not None and window.prices is not None else version.prices
    tiers = version.tiers
    note = ""
    if klass.variant != STANDARD:
        variant = version.variants.get(klass.variant)
        if variant is not None:
            prices, tiers = variant.prices, variant.tiers
        else:
            note = "no separate price listed: standard price"
    return prices, tiers, note


def rates_for(version: OfferVersion, klass: PriceClass, *, time_multiplier: Decimal | None = None) -> Rates:
    """The per-1M-token rates of one price class: the base list (window, variant), the long-context tier
    reached, cache prices filled from the cache multipliers, then the window's and the promotion's
    multipliers. `time_multiplier` replaces the window's (demand-weighted: see `weighted_multiplier`)."""
    prices, tiers, note = _base(version, klass)
    tier = None
    if klass.tier is not None:
        reached = [t for t in tiers if t.above_input_tokens <= klass.tier]
        if reached:
            prices, tier = reached[-1].prices, reached[-1].above_input_tokens
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
    write_1h = prices.cache_write_1h
    if write_1h is None and cache.write_1h_multiplier is not None:
        write_1h = prices.input * cache.write_1h_multiplier
    reasoning = prices.reasoning_output if prices.reasoning_output is not None else prices.output
    window = next((w for w in version.windows if w.name == klass.period), None)
    window_multiplier = window.multiplier if window is not None else Decimal(1)
    if time_multiplier is not None:
        period, multiplier, discounted = "demand-weighted", time_multiplier, False
    else:
        period, multiplier = klass.period, window_multiplier
        discounted = discounted_period(version, klass.period)
    promotion = next((p for p in version.promotions if p.name == klass.promotion), None)
    if promotion is not None:
        multiplier *= promotion.multiplier
    rates = Rates(
        prices.input,
        cached,
        write,
        prices.output,
        reasoning,
        version.currency,
        version.version_id,
        period,
        klass.promotion,
        tier,
        discounted,
        write_1h,
        klass.variant,
        note,
    )
    return rates.scaled(multiplier) if multiplier != 1 else rates


def discounted_period(version: OfferVersion, period: str) -> bool:
    """Whether hours of `period` are cheaper than the version's dearest hours: DeepSeek's off-peak window
    (x0.5), or the hours outside a peak window (x1 beside a x1.5 peak); windows with their own price lists
    compare by input price."""
    if version.prices is None:
        return False

    def level(window: PriceWindow | None) -> Decimal:
        assert version.prices is not None
        if window is None:
            return version.prices.input
        base = window.prices.input if window.prices is not None else version.prices.input
        return base * window.multiplier

    this = level(next((w for w in version.windows if w.name == period), None))
    dearest = max([level(None), *(level(w) for w in version.windows)])
    return this < dearest


def classify_one(
    version: OfferVersion,
    at: datetime,
    input_each: int | None = None,
    *,
    service_tier: str | None = None,
    batch: bool = False,
) -> PriceClass:
    """The classification of one request, by the same expressions as every frame."""
    classifier = Classifier.of((version,))
    frame = pl.DataFrame(
        {
            "ts": [to_utc_naive(at)],
            "input_each": [input_each if input_each is not None else 0],
            "service_tier": [service_tier],
            "batch": [batch],
        },
        schema={
            "ts": pl.Datetime("us"),
            "input_each": pl.Int64,
            "service_tier": pl.String,
            "batch": pl.Boolean,
        },
    )
    key = frame.select(
        classifier.key(
            pl.lit(0, dtype=pl.Int32),
            pl.col("ts"),
            pl.col("input_each"),
            pl.col("service_tier"),
            pl.col("batch"),
        )
    ).item()
    return classifier.decode(int(key))


def rates_at(
    version: OfferVersion,
    at: datetime,
    input_tokens_per_request: int | None = None,
    *,
    time_multiplier: Decimal | None = None,
    service_tier: str | None = None,
    batch: bool = False,
) -> Rates:
    """Prices in force at `at` (UTC) under `version` for a request of the given input size, service tier and
    batch flag. The time-of-day window is the one `at` falls in, unless `time_multiplier` gives a
    demand-weighted one (see `weighted_multiplier`)."""
    klass = classify_one(version, at, input_tokens_per_request, service_tier=service_tier, batch=batch)
    return rates_for(version, klass, time_multiplier=time_multiplier)


def price_tokens(version: OfferVersion, tokens: TokenCounts, at: datetime) -> Money:
    """The cost of `tokens` sent at `at`; the long-context tier is decided by the average request size."""
    per_request = tokens.input // tokens.requests if tokens.requests else tokens.input
    return rates_at(version, at, per_request).cost(tokens)


# ------------------------------------------------------------------------------- demand-weighted hours


# the week tables of `_week_periods`, by (windows, base period)
_WEEKS: dict[tuple[tuple[PriceWindow, ...], str], pl.DataFrame] = {}


def _week_periods(version: OfferVersion) -> pl.DataFrame:
    """The period of each minute of a reference week (Monday 00:00 first) under `version`; worked out once per
    set of windows (the planner asks for it for every plan and every point of its curves)."""
    key = (version.windows, version.base_period)
    found = _WEEKS.get(key)
    if found is not None:
        return found
    classifier = Classifier.of((version,))
    codes = classifier.period_table  # one version: its codes by minute of the week from Monday
    found = pl.DataFrame(
        {
            "hour_of_week": [m // 60 for m in range(MINUTES_PER_WEEK)],
            "period": [classifier.periods[c] for c in codes.to_list()],
        }
    )
    if len(_WEEKS) >= 256:  # catalogs reloaded many times over: start again rather than grow
        _WEEKS.clear()
    _WEEKS[key] = found
    return found


def _hour_weights(hourly_shape: Sequence[float | Decimal] | None) -> list[Decimal]:
    if hourly_shape is None:
        hourly_shape = [1] * 24
    if len(hourly_shape) not in (24, 168):
        raise InputError(f"an hourly demand shape has 24 or 168 values, got {len(hourly_shape)}")
    weights = [Decimal(str(w)) for w in hourly_shape]
    if any(w < 0 for w in weights) or sum(weights) == 0:
        raise InputError("an hourly demand shape needs non-negative values that are not all zero")
    return weights if len(weights) == 168 else weights * 7


def period_shares(
    version: OfferVersion, hourly_shape: Sequence[float | Decimal] | None = None
) -> dict[str, Decimal]:
    """The share of demand falling in each named period (window names and the base period).

    `hourly_shape` gives the share of demand in each UTC hour: 24 values (every day alike) or 168 (Monday
    00:00 first). Demand is spread evenly within an hour. None means flat demand all day.
    """
    weights = _hour_weights(hourly_shape)
    minutes = _week_periods(version).group_by("hour_of_week", "period").len()
    shares: dict[str, Decimal] = {}
    for hour, period, count in minutes.iter_rows():
        shares[period] = shares.get(period, Decimal(0)) + weights[hour] * count / 60
    total = sum(shares.values(), Decimal(0))
    return {name: value / total for name, value in sorted(shares.items())}


def period_levels(version: OfferVersion) -> dict[str, Decimal]:
    """Each period's price level against the base period's (1): a window's multiplier, times the ratio of
    its own input price to the version's where it has its own list."""
    levels: dict[str, Decimal] = {version.base_period: Decimal(1)}
    for window in version.windows:
        factor = window.multiplier
        if window.prices is not None and version.prices is not None and version.prices.input:
            factor *= window.prices.input / version.prices.input
        levels.setdefault(window.name, factor)
    return levels


def weighted_multiplier(
    version: OfferVersion, hourly_shape: Sequence[float | Decimal] | None = None
) -> Decimal:
    """The demand-weighted average time-of-day multiplier (windows priced by their own list count at the
    ratio of their input price to the version's)."""
    if not version.windows:
        _hour_weights(hourly_shape)  # still check the shape
        return Decimal(1)
    factors = period_levels(version)
    shares = period_shares(version, hourly_shape)
    return sum((share * factors[name] for name, share in shares.items()), Decimal(0))


# ------------------------------------------------------------------------------- frames of many offers


# What a failed batch request costs: nothing (OpenAI and Anthropic bill only succeeded batch requests).
NO_CHARGE = Rates(
    Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0), "USD", "no charge", "failed batch request"
)


@dataclass(frozen=True)
class ClassifiedUsage:
    """Usage rows with their price class: `rate` (index into `rates`; null where unpriced), `unpriced` (why,
    where it is) and `matched_provider` (the provider of the offer the row matched)."""

    frame: pl.DataFrame
    rates: tuple[Rates, ...]


def classify_usage(groups: pl.DataFrame, catalog: Catalog, *, at: str = "bucket") -> ClassifiedUsage:
    """Match each row's (provider, model) to an offer and classify it (see `classify`) at its time column
    `at` with its per-request input `input_each`; every distinct class is turned into rates once."""
    pairs = groups.select("provider", "model").unique()
    offer_ids: list[str | None] = []
    reasons: list[str | None] = []
    providers: list[str | None] = []
    offers: dict[str, Offer] = {}
    for provider, model in pairs.iter_rows():
        found = catalog.match(provider, model)
        offer_ids.append(found.offer.id if found.offer else None)
        providers.append(found.offer.provider if found.offer else None)
        reasons.append(None if found.offer else f"{provider or '?'}/{model} ({found.reason})")
        if found.offer is not None:
            offers[found.offer.id] = found.offer
    matched = groups.join(
        pairs.with_columns(
            pl.Series("_offer", offer_ids, dtype=pl.String),
            pl.Series("unpriced", reasons, dtype=pl.String),
            pl.Series("matched_provider", providers, dtype=pl.String),
        ),
        on=["provider", "model"],
        how="left",
        nulls_equal=True,
    )
    rates: list[Rates] = [NO_CHARGE]
    numbers: dict[Rates, int] = {NO_CHARGE: 0}
    failed = pl.col("model") == FAILED_BATCH_MODEL  # a failed batch request: counted, costs nothing
    unmatched = matched.filter(pl.col("_offer").is_null())
    parts = [
        unmatched.with_columns(
            pl.when(failed)
            .then(pl.lit(0, dtype=pl.Int64))
            .otherwise(pl.lit(None, dtype=pl.Int64))
            .alias("rate"),
            pl.when(failed)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.col("unpriced"))
            .alias("unpriced"),
        )
    ]
    for offer_id, offer in offers.items():
        part, classifier = classify(
            matched.filter(pl.col("_offer") == offer_id), offer, at=at, input_each=pl.col("input_each")
        )
        keys = part["price_key"].unique().drop_nulls().to_list()
        number: dict[int, int | None] = {}
        for key in keys:
            try:
                found_rates = classifier.rates(int(key))
            except UnpricedError:
                number[key] = None
                continue
            number[key] = numbers.setdefault(found_rates, len(numbers))
            if number[key] == len(rates):
                rates.append(found_rates)
        rate = pl.col("price_key").replace_strict(
            list(number), list(number.values()), default=None, return_dtype=pl.Int64
        )
        label = f" (no price in force then; see `quotascope catalog show {offer_id}`)"
        part = part.with_columns(rate.alias("rate")).with_columns(
            pl.when(pl.col("rate").is_null())
            .then(
                pl.concat_str(pl.col("provider").fill_null("?"), pl.lit("/"), pl.col("model"), pl.lit(label))
            )
            .otherwise(pl.col("unpriced"))
            .alias("unpriced")
        )
        parts.append(part.drop("vidx", "price_key"))
    frame = pl.concat(parts, how="diagonal_relaxed").drop("_offer")
    return ClassifiedUsage(frame, tuple(rates))


# ------------------------------------------------------------------------------ traffic under one offer

MONEY = pl.Decimal(38, 12)  # frames carry money at 12 places; totals are summed exactly in Python Decimal


@dataclass(frozen=True)
class PricedTraffic:
    """What a selection of units costs under one offer, in one currency."""

    offer_id: str
    cost: Money | None  # None: nothing in the selection could be priced
    requests: float
    unpriced_requests: float  # no version in force, or a version without prices
    groups: pl.DataFrame  # one row per price class and day: see `price_units`
    currency: str

    @property
    def complete(self) -> bool:
        return self.unpriced_requests <= 1e-9


def price_units(
    units: pl.DataFrame, offer: Offer, *, fx: FxTable, currency: str | None = None
) -> PricedTraffic:
    """Price units (`models.target`: weight `requests`, time `ts`, target tokens `target_input_tokens`,
    `target_cached_input_tokens`, `target_cache_write_tokens`, `target_output_tokens`,
    `target_reasoning_tokens`) that carry `vidx`, the version each is priced under.

    Units are classified (`Classifier.key`, the long-context tier by each unit's per-request input) and
    summed per class and day; each sum is priced in Decimal and converted to `currency` (default: the
    currency of the newest version used) at its day's FX. `groups` has `vidx`, `period`, `promotion`,
    `tier`, `variant`, `day`, `requests`, the target token sums (same names), `version_id`, `currency`
    (native), `amount` (native) and `amount_shown` (in `currency`).
    """
    requests = float(units["requests"].sum()) if units.height else 0.0
    classifier = Classifier.of(offer.versions)
    per_request = (pl.col(TARGET_INPUT).cast(pl.Float64) / pl.col("requests")).floor()
    tier_col = pl.col("service_tier") if "service_tier" in units.columns else None
    batch_col = pl.col("batch") if "batch" in units.columns else None
    key = classifier.key(pl.col("vidx"), pl.col("ts"), per_request, tier_col, batch_col)
    packed = pl.col("ts").dt.epoch("d").cast(pl.Int64) * classifier.span + key
    grouped = (
        units.with_columns(packed.alias("_key"))
        .group_by("_key")
        .agg(pl.col("requests").sum().alias("requests"), *[pl.col(c).sum() for c in TARGET_COLUMNS])
        .sort("_key", nulls_last=True)
    )
    used = sorted({classifier.decode(int(k) % classifier.span).vidx for k in grouped["_key"].drop_nulls()})
    shown = (currency or (offer.versions[used[-1]] if used else offer.versions[-1]).currency).upper()
    rows: list[dict[str, object]] = []
    total = Money.zero(shown)
    unpriced = 0.0
    for group in grouped.iter_rows(named=True):
        if group["_key"] is None:
            unpriced += group["requests"]
            continue
        day_number, code = divmod(int(group["_key"]), classifier.span)
        klass = classifier.decode(code)
        version = offer.versions[klass.vidx]
        try:
            rates = rates_for(version, klass)
        except UnpricedError:
            unpriced += group["requests"]
            continue
        tokens = TokenCounts(
            input=group[TARGET_INPUT],
            output=group[TARGET_OUTPUT],
            cached_input=group[TARGET_CACHED],
            cache_write=group[TARGET_WRITE],
            reasoning=group[TARGET_REASONING],
        )
        day = (datetime(1970, 1, 1) + timedelta(days=day_number)).date()
        native = rates.cost(tokens)
        converted = native if native.currency == shown else fx.convert(native, shown, day).money
        total = total + converted
        rows.append(
            {
                "vidx": klass.vidx,
                "period": klass.period,
                "promotion": klass.promotion,
                "tier": klass.tier,
                "variant": klass.variant,
                "day": day,
                "requests": group["requests"],
                **{c: group[c] for c in TARGET_COLUMNS},
                "version_id": version.version_id,
                "currency": native.currency,
                "amount": native.amount,
                "amount_shown": converted.amount,
            }
        )
    table = (
        pl.DataFrame(
            rows, infer_schema_length=None, schema_overrides={"amount": MONEY, "amount_shown": MONEY}
        )
        if rows
        else pl.DataFrame()
    )
    return PricedTraffic(offer.id, total if rows else None, requests, unpriced, table, shown)


def require_currency(currency: str) -> str:
    text = currency.strip().upper()
    if len(text) != 3 or not text.isalpha():
        raise InputError(f"a currency is a 3-letter code like USD or CNY, got {currency!r}")
    return text
