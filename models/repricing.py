"""Price many requests at once under an offer: versions by date, time-of-day windows, promotions, long-context
tiers and cache rules, vectorised with polars; money stays Decimal.

Requests arrive as a frame of *units* (see `models.replay`): one row per request, or per slice of an
aggregated bucket, with its weight `w` (requests) and its token totals (`input` — all prompt tokens, cache
hits and writes included —, `cached`, `write`, `output` — reasoning included —, `reasoning`) and its time
`ts` (naive UTC).

The rules are `models.pricing`'s: units are grouped by what decides their price (version, time-of-day
period, promotion, long-context tier, day for FX), each group's whole-token sums are priced with
`rates_at(...).cost(...)`, so the money is exact. The traffic is priced under a *target* offer: cached tokens
re-estimated for its cache rules (`CacheRules.cacheable` on the recorded cached prefix) and every count
scaled by a tokenizer ratio. (What the traffic cost as served is the spend report's: `models.spend`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

import polars as pl

from models.catalog import CountingRules, Offer, OfferVersion
from models.errors import InputError
from models.money import FxTable, Money
from models.pricing import TokenCounts, period_at, rates_at

TOKEN_COLUMNS = ("input", "cached", "write", "output", "reasoning")
PRICED_COLUMNS = ("in_t", "cached_t", "write_t", "out_t", "reason_t")
MONEY = pl.Decimal(38, 12)  # frames carry money at 12 places; totals are summed exactly in Python Decimal
MINUTES_PER_WEEK = 7 * 1440
_MONDAY = datetime(2024, 1, 1)  # a Monday: the reference week the period lookup is built on

BeforeFirst = Literal["unpriced", "earliest"]


# ------------------------------------------------------------------------------------------ versions


def version_index(ts: pl.Expr, offer: Offer, before_first: BeforeFirst = "unpriced") -> pl.Expr:
    """The index (into `offer.versions`) of the version in force at each `ts`; null where none is.

    With `before_first="earliest"` times before the first version take the first one (a what-if replay of
    last month's traffic on an offer whose catalog entry starts today).
    """
    expr: pl.Expr = pl.lit(None, dtype=pl.Int32)
    for k, version in enumerate(offer.versions):  # the last wrapped is tested first: the newest wins
        in_force = ts >= version.effective_from
        if version.effective_to is not None:
            in_force = in_force & (ts < version.effective_to)
        expr = pl.when(in_force).then(pl.lit(k, dtype=pl.Int32)).otherwise(expr)
    if before_first == "earliest":
        expr = pl.when(ts < offer.versions[0].effective_from).then(pl.lit(0, dtype=pl.Int32)).otherwise(expr)
    return expr


def _per_version(vidx: pl.Expr, values: Sequence[float | int | bool | str], dtype: pl.DataType) -> pl.Expr:
    if len(set(values)) == 1:
        return pl.lit(values[0], dtype=dtype)
    return vidx.replace_strict(list(range(len(values))), list(values), default=None, return_dtype=dtype)


# ------------------------------------------------------------------------------------------ tokens


def cacheable(prefix: pl.Expr, min_tokens: pl.Expr, step_tokens: pl.Expr, enabled: pl.Expr) -> pl.Expr:
    """`CacheRules.cacheable` on a column: the part of a stable prefix a provider serves from cache."""
    floor = pl.max_horizontal(min_tokens, pl.lit(1))
    return (
        pl.when(~enabled | (prefix < floor))
        .then(pl.lit(0, dtype=pl.Int64))
        .otherwise(min_tokens + ((prefix - min_tokens) // step_tokens) * step_tokens)
    )


def target_tokens(units: pl.DataFrame, offer: Offer, ratio: Decimal, *, reestimate: bool) -> pl.DataFrame:
    """Adds the tokens each unit would carry under `offer` (`in_t`, `cached_t`, `write_t`, `out_t`,
    `reason_t`, whole numbers per unit; needs `vidx` for per-version cache rules).

    Every count is scaled by the tokenizer `ratio` and rounded. With `reestimate`, the cached part is the
    target's cacheable share of the recorded cached prefix (per request: DeepSeek's 64-token units vs
    OpenAI's 1,024 minimum and 128-token steps), times its best-effort hit factor; cache writes carry over
    where the log recorded them. Without, the recorded cache figures are kept (pricing what was served).
    """
    r = float(ratio)

    def scaled(column: str) -> pl.Expr:
        return (pl.col(column).cast(pl.Float64) * r).round(0).cast(pl.Int64)

    frame = units.with_columns(
        scaled("input").alias("in_t"),
        scaled("output").alias("out_t"),
    ).with_columns(pl.min_horizontal(scaled("reasoning"), pl.col("out_t")).alias("reason_t"))
    if not reestimate:
        cached = pl.min_horizontal(scaled("cached"), pl.col("in_t"))
        return frame.with_columns(cached.alias("cached_t")).with_columns(
            pl.min_horizontal(scaled("write"), pl.col("in_t") - pl.col("cached_t")).alias("write_t")
        )
    vidx = pl.col("vidx")
    caches = [v.cache for v in offer.versions]
    enabled = _per_version(vidx, [c.enabled for c in caches], pl.Boolean()).fill_null(False)
    min_tokens = _per_version(vidx, [c.min_tokens for c in caches], pl.Int64()).fill_null(0)
    step = _per_version(vidx, [max(1, c.step_tokens) for c in caches], pl.Int64()).fill_null(1)
    hit = _per_version(vidx, [float(c.hit_factor) for c in caches], pl.Float64()).fill_null(1.0)
    prefix = (pl.col("cached").cast(pl.Float64) / pl.col("w") * r).floor().cast(pl.Int64)
    per_request = (cacheable(prefix, min_tokens, step, enabled).cast(pl.Float64) * hit).floor()
    cached = pl.min_horizontal((per_request * pl.col("w")).round(0).cast(pl.Int64), pl.col("in_t"))
    return frame.with_columns(cached.alias("cached_t")).with_columns(
        pl.when(enabled)
        .then(pl.min_horizontal(scaled("write"), pl.col("in_t") - pl.col("cached_t")))
        .otherwise(pl.lit(0, dtype=pl.Int64))
        .alias("write_t")
    )


def counted_columns(counting: CountingRules, max_tokens: int | None) -> dict[str, pl.Expr]:
    """`models.capacity.counted_tokens` on columns of target tokens: what each unit counts against the limits
    (`c_in` against ITPM, `c_out` against OTPM, `c_total` against TPM/TPD), as floats."""
    inp = pl.col("in_t").cast(pl.Float64)
    counted_in = inp if counting.cached_counted else inp - pl.col("cached_t").cast(pl.Float64)
    out = pl.col("out_t").cast(pl.Float64)
    if counting.reserve_max_tokens and max_tokens is not None:
        out = pl.max_horizontal(out, pl.lit(float(max_tokens)) * pl.col("w"))
    counted_out = out * float(counting.output_burndown)
    total = {
        "input+output": counted_in + counted_out,
        "input": counted_in,
        "output": counted_out,
    }[counting.tokens]
    return {"c_in": counted_in, "c_out": counted_out, "c_total": total}


# ------------------------------------------------------------------------------------------ prices


def _period_lookup(offer: Offer) -> tuple[pl.Series, list[str]] | None:
    """Period code per (version, minute of the week); None when no version has time-of-day windows."""
    if not any(v.windows for v in offer.versions):
        return None
    names: list[str] = []
    codes: list[int] = []
    for version in offer.versions:
        for minute in range(MINUTES_PER_WEEK):
            name = period_at(version, _MONDAY + timedelta(minutes=minute))[0]
            if name not in names:
                names.append(name)
            codes.append(names.index(name))
    return pl.Series("period_code", codes, dtype=pl.Int32), names


def _promotion(offer: Offer) -> tuple[pl.Expr, list[str | None]]:
    """Code of the promotion active for each unit (0: none) and the names the codes stand for."""
    names: list[str | None] = [None]
    expr: pl.Expr = pl.lit(0, dtype=pl.Int64)
    for k, version in enumerate(offer.versions):
        for promotion in version.promotions:
            names.append(promotion.name)
            active = (
                (pl.col("vidx") == k) & (pl.col("ts") >= promotion.start) & (pl.col("ts") < promotion.end)
            )
            expr = pl.when(active).then(pl.lit(len(names) - 1, dtype=pl.Int64)).otherwise(expr)
    return expr, names


def _tier(offer: Offer) -> tuple[pl.Expr, list[int | None]]:
    """Code of the long-context tier each unit's per-request input reaches (0: none), and the thresholds."""
    per_request = (pl.col("in_t").cast(pl.Float64) / pl.col("w")).floor()
    thresholds: list[int | None] = [None]
    expr: pl.Expr = pl.lit(0, dtype=pl.Int64)
    for k, version in enumerate(offer.versions):
        if version.prices is None:
            continue
        for tier in version.tiers:  # ascending: a later (higher) threshold wins
            thresholds.append(tier.above_input_tokens)
            hit = (pl.col("vidx") == k) & (per_request > tier.above_input_tokens)
            expr = pl.when(hit).then(pl.lit(len(thresholds) - 1, dtype=pl.Int64)).otherwise(expr)
    return expr, thresholds


@dataclass(frozen=True)
class PricedTraffic:
    """What a selection of units costs under one offer, in one currency."""

    offer_id: str
    cost: Money | None  # None: nothing in the selection could be priced
    requests: float
    unpriced_requests: float  # no version in force, or a version without prices
    groups: pl.DataFrame  # one row per price group: see `price_groups`
    currency: str

    @property
    def complete(self) -> bool:
        return self.unpriced_requests <= 1e-9


GROUP_KEYS = ("vidx", "period", "promotion", "tier", "day")


def price_groups(units: pl.DataFrame, offer: Offer) -> pl.DataFrame:
    """Units with `vidx` and target tokens, summed per price group (`GROUP_KEYS`, plus the first `ts` and
    per-request input of each group, which `rates_at` needs).

    The five keys are packed into one integer before grouping (one hash column is several times faster on
    ten million rows than five mixed ones) and unpacked afterwards.
    """
    frame = units.filter(pl.col("vidx").is_not_null()) if units["vidx"].null_count() else units
    lookup = _period_lookup(offer)
    if lookup is None:
        names = list(dict.fromkeys(v.base_period for v in offer.versions))
        code = _per_version(pl.col("vidx"), [names.index(v.base_period) for v in offer.versions], pl.Int64())
    else:
        codes, names = lookup
        minute_of_week = (
            (pl.col("ts").dt.weekday().cast(pl.Int64) - 1) * 1440
            + pl.col("ts").dt.hour().cast(pl.Int64) * 60
            + pl.col("ts").dt.minute().cast(pl.Int64)
        )
        index = frame.select(pl.col("vidx").cast(pl.Int64) * MINUTES_PER_WEEK + minute_of_week).to_series()
        code = pl.lit(codes.gather(index).cast(pl.Int64))
    promotion, promotions = _promotion(offer)
    tier, tiers = _tier(offer)
    sizes = (len(offer.versions), len(names), len(promotions), len(tiers))
    day = pl.col("ts").dt.epoch("d").cast(pl.Int64)
    key = (
        ((day * sizes[0] + pl.col("vidx").cast(pl.Int64)) * sizes[1] + code) * sizes[2] + promotion
    ) * sizes[3] + tier
    grouped = (
        frame.with_columns(key.alias("_key"))
        .group_by("_key")
        .agg(
            pl.col("ts").first().alias("at"),
            (pl.col("in_t").cast(pl.Float64) / pl.col("w"))
            .floor()
            .first()
            .cast(pl.Int64)
            .alias("input_each"),
            pl.col("w").sum().alias("requests"),
            *[pl.col(c).sum() for c in PRICED_COLUMNS],
        )
    )
    k = pl.col("_key")
    decoded = grouped.with_columns(
        (k // (sizes[3] * sizes[2] * sizes[1] * sizes[0])).alias("_day"),
        (k // (sizes[3] * sizes[2] * sizes[1]) % sizes[0]).cast(pl.Int32).alias("vidx"),
        (k // (sizes[3] * sizes[2]) % sizes[1]).alias("_period"),
        (k // sizes[3] % sizes[2]).alias("_promotion"),
        (k % sizes[3]).alias("_tier"),
    ).with_columns(
        pl.col("_period")
        .replace_strict(list(range(len(names))), names, return_dtype=pl.String)
        .alias("period"),
        pl.col("_promotion")
        .replace_strict(list(range(len(promotions))), promotions, return_dtype=pl.String)
        .alias("promotion"),
        pl.col("_tier").replace_strict(list(range(len(tiers))), tiers, return_dtype=pl.Int64).alias("tier"),
        pl.col("at").dt.date().alias("day"),
    )
    return decoded.select(*GROUP_KEYS, "at", "input_each", "requests", *PRICED_COLUMNS).sort(
        GROUP_KEYS, nulls_last=True
    )


def price_units(
    units: pl.DataFrame,
    offer: Offer,
    *,
    fx: FxTable,
    currency: str | None = None,
    before_first: BeforeFirst = "unpriced",
) -> PricedTraffic:
    """Price units that already carry target tokens (`PRICED_COLUMNS`) and `vidx`.

    Money is converted to `currency` (default: the currency of the newest version used) with the FX rate of
    each group's day. Adds to `groups` the columns `version_id`, `currency` (native), `amount` (native,
    Decimal as Python objects) and `amount_shown` (in `currency`).
    """
    requests = float(units["w"].sum()) if units.height else 0.0
    priced_versions = [k for k, v in enumerate(offer.versions) if v.prices is not None]
    # the copy a filter makes of ten million rows is skipped when every unit is priceable
    keep = units["vidx"].is_in(priced_versions).fill_null(False)
    priceable = units if bool(keep.all()) else units.filter(keep)
    unpriced = requests - (float(priceable["w"].sum()) if priceable.height else 0.0)
    groups = price_groups(priceable, offer) if priceable.height else pl.DataFrame()
    used = sorted(set(groups["vidx"].to_list())) if groups.height else []
    shown = (currency or (offer.versions[used[-1]].currency if used else offer.versions[-1].currency)).upper()
    rows: list[dict[str, object]] = []
    total = Money.zero(shown)
    for group in groups.iter_rows(named=True) if groups.height else []:
        version: OfferVersion = offer.versions[group["vidx"]]
        rates = rates_at(version, group["at"], group["input_each"])
        if (
            rates.period != group["period"] or rates.tier != group["tier"]
        ):  # pragma: no cover - a rule drifted
            raise AssertionError(f"vectorised price group disagrees with rates_at: {group} vs {rates}")
        tokens = TokenCounts(
            input=group["in_t"],
            output=group["out_t"],
            cached_input=group["cached_t"],
            cache_write=group["write_t"],
            reasoning=group["reason_t"],
        )
        native = rates.cost(tokens)
        converted = native if native.currency == shown else fx.convert(native, shown, group["day"]).money
        total = total + converted
        rows.append(
            {
                **group,
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


def reprice(
    units: pl.DataFrame,
    offer: Offer,
    *,
    fx: FxTable,
    ratio: Decimal = Decimal(1),
    currency: str | None = None,
) -> PricedTraffic:
    """The traffic under `offer` as a what-if: cache re-estimated, tokens scaled, times before the offer's
    first version priced as that version."""
    frame = units.with_columns(version_index(pl.col("ts"), offer, "earliest").alias("vidx"))
    frame = target_tokens(frame, offer, ratio, reestimate=True)
    return price_units(frame, offer, fx=fx, currency=currency)


def require_currency(currency: str) -> str:
    text = currency.strip().upper()
    if len(text) != 3 or not text.isalpha():
        raise InputError(f"a currency is a 3-letter code like USD or CNY, got {currency!r}")
    return text
