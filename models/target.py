"""The recorded traffic's tokens as a target offer would see them, and what they count against its limits.

Units (see `models.traffic`: one row per request, or per slice of an aggregated bucket, weighing `requests`
and the recorded token totals `input_tokens` — all prompt tokens, cache hits and writes included —,
`cached_input_tokens`, `cache_write_tokens`, `output_tokens` — reasoning included —, `reasoning_tokens`)
carry their tokens to a *target* offer as `target_input_tokens`, `target_cached_input_tokens`, ...
(`TARGET_COLUMNS`): cached tokens re-estimated for its cache rules and every count scaled by a tokenizer
ratio. What they count against its limits is `counted_input_tokens`, `counted_output_tokens` and
`counted_tokens` (`counted_columns`); what they cost is the pricing engine's (`models.pricing.price_units`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import polars as pl

from models.catalog import CountingRules, Offer

# the tokens each unit would carry under the target: `target_` + the recorded column (models.traffic)
TARGET_INPUT = "target_input_tokens"
TARGET_CACHED = "target_cached_input_tokens"
TARGET_WRITE = "target_cache_write_tokens"
TARGET_OUTPUT = "target_output_tokens"
TARGET_REASONING = "target_reasoning_tokens"
TARGET_COLUMNS = (TARGET_INPUT, TARGET_CACHED, TARGET_WRITE, TARGET_OUTPUT, TARGET_REASONING)
COUNTED_COLUMNS = ("counted_input_tokens", "counted_output_tokens", "counted_tokens")


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
    """Adds the tokens each unit would carry under `offer` (`TARGET_COLUMNS`: `target_input_tokens`,
    `target_cached_input_tokens`, `target_cache_write_tokens`, `target_output_tokens`,
    `target_reasoning_tokens`, whole numbers per unit; needs `vidx` for per-version cache rules).

    Every count is scaled by the tokenizer `ratio` and rounded. With `reestimate`, the cached part is the
    target's cacheable share of the recorded cached prefix (per request: DeepSeek's 64-token units vs
    OpenAI's 1,024 minimum and 128-token steps), times its best-effort hit factor; cache writes carry over
    where the log recorded them. Without, the recorded cache figures are kept (pricing what was served).
    """
    r = float(ratio)

    def scaled(column: str) -> pl.Expr:
        return (pl.col(column).cast(pl.Float64) * r).round(0).cast(pl.Int64)

    frame = units.with_columns(
        scaled("input_tokens").alias(TARGET_INPUT),
        scaled("output_tokens").alias(TARGET_OUTPUT),
    ).with_columns(
        pl.min_horizontal(scaled("reasoning_tokens"), pl.col(TARGET_OUTPUT)).alias(TARGET_REASONING)
    )
    if not reestimate:
        cached = pl.min_horizontal(scaled("cached_input_tokens"), pl.col(TARGET_INPUT))
        return frame.with_columns(cached.alias(TARGET_CACHED)).with_columns(
            pl.min_horizontal(
                scaled("cache_write_tokens"), pl.col(TARGET_INPUT) - pl.col(TARGET_CACHED)
            ).alias(TARGET_WRITE)
        )
    vidx = pl.col("vidx")
    caches = [v.cache for v in offer.versions]
    enabled = _per_version(vidx, [c.enabled for c in caches], pl.Boolean()).fill_null(False)
    min_tokens = _per_version(vidx, [c.min_tokens for c in caches], pl.Int64()).fill_null(0)
    step = _per_version(vidx, [max(1, c.step_tokens) for c in caches], pl.Int64()).fill_null(1)
    hit = _per_version(vidx, [float(c.hit_factor) for c in caches], pl.Float64()).fill_null(1.0)
    prefix = (pl.col("cached_input_tokens").cast(pl.Float64) / pl.col("requests") * r).floor().cast(pl.Int64)
    per_request = (cacheable(prefix, min_tokens, step, enabled).cast(pl.Float64) * hit).floor()
    cached = pl.min_horizontal(
        (per_request * pl.col("requests")).round(0).cast(pl.Int64), pl.col(TARGET_INPUT)
    )
    return frame.with_columns(cached.alias(TARGET_CACHED)).with_columns(
        pl.when(enabled)
        .then(pl.min_horizontal(scaled("cache_write_tokens"), pl.col(TARGET_INPUT) - pl.col(TARGET_CACHED)))
        .otherwise(pl.lit(0, dtype=pl.Int64))
        .alias(TARGET_WRITE)
    )


def counted_columns(counting: CountingRules, max_tokens: int | None) -> dict[str, pl.Expr]:
    """`models.capacity.counted_tokens` on columns of target tokens: what each unit counts against the limits
    (`counted_input_tokens` against ITPM, `counted_output_tokens` against OTPM, `counted_tokens` against
    TPM/TPD), as floats."""
    inp = pl.col(TARGET_INPUT).cast(pl.Float64)
    counted_in = inp if counting.cached_counted else inp - pl.col(TARGET_CACHED).cast(pl.Float64)
    out = pl.col(TARGET_OUTPUT).cast(pl.Float64)
    if counting.reserve_max_tokens and max_tokens is not None:
        out = pl.max_horizontal(out, pl.lit(float(max_tokens)) * pl.col("requests"))
    counted_out = out * float(counting.output_burndown)
    total = {
        "input+output": counted_in + counted_out,
        "input": counted_in,
        "output": counted_out,
    }[counting.tokens]
    return dict(zip(COUNTED_COLUMNS, (counted_in, counted_out, total), strict=True))
