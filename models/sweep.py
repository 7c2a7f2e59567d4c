"""The capacity & cost model over many scenarios at once, vectorised with polars.

One row per scenario; the same rules as `models.capacity` and `models.cost` (a test holds the two to each
other on random scenarios). Rates and token counts are floats here (they are not money); cost is DECIMAL.

Input columns (per LLM call unless said otherwise):
    input_tokens, output_tokens, cached_input_tokens, calls, max_tokens (nullable)
    tpm, rpm, tpd, rpd, itpm, otpm, max_concurrency (nullable integers)
    counted ("input+output" | "input" | "output"), cached_counted, reserve_max_tokens, output_burndown
    ttft_ms, tokens_per_s
    input_price_per_mtok, cached_input_price_per_mtok, output_price_per_mtok (DECIMAL; nullable for unpriced)
Output columns added:
    counted_tokens (per question), call_s (one call's duration), questions_per_minute (null: unbounded),
    binding_limit, concurrent_requests, cost_per_question (DECIMAL, in the prices' currency)
"""

from __future__ import annotations

import polars as pl

from models.capacity import SEED_TOKENS_PER_S, SEED_TTFT_MS
from models.pricing import token_cost

LIMIT_COLUMNS = ("tpm", "itpm", "otpm", "rpm", "tpd", "rpd", "max_concurrency")
LIMIT_NAMES = ("tpm", "itpm", "otpm", "rpm", "tpd", "rpd", "concurrency")
MONEY = pl.Decimal(38, 12)

DEFAULTS: dict[str, pl.Expr] = {
    "cached_input_tokens": pl.lit(0.0),
    "calls": pl.lit(1.0),
    "max_tokens": pl.lit(None, dtype=pl.Float64),
    "counted": pl.lit("input+output"),
    "cached_counted": pl.lit(True),
    "reserve_max_tokens": pl.lit(False),
    "output_burndown": pl.lit(1.0),
    "ttft_ms": pl.lit(float(SEED_TTFT_MS)),  # the seed measurement, as models.capacity.Latency.seed
    "tokens_per_s": pl.lit(float(SEED_TOKENS_PER_S)),
    **{name: pl.lit(None, dtype=pl.Float64) for name in LIMIT_COLUMNS},
    **{
        name: pl.lit(None, dtype=MONEY)
        for name in ("input_price_per_mtok", "cached_input_price_per_mtok", "output_price_per_mtok")
    },
}


def _rate(limit: str, units: pl.Expr) -> pl.Expr:
    return pl.when(pl.col(limit).is_not_null() & (units > 0)).then(pl.col(limit) / units).otherwise(None)


def sweep(scenarios: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Evaluate every scenario row; see the module docstring for the columns."""
    frame = scenarios.lazy()
    present = set(frame.collect_schema().names())
    missing = {"input_tokens", "output_tokens"} - present
    if missing:
        raise ValueError(f"scenarios need the columns {sorted(missing)}")
    frame = frame.with_columns([expr.alias(name) for name, expr in DEFAULTS.items() if name not in present])
    floats = [
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "calls",
        "max_tokens",
        "output_burndown",
        "ttft_ms",
        "tokens_per_s",
        *LIMIT_COLUMNS,
    ]
    frame = frame.with_columns([pl.col(c).cast(pl.Float64) for c in floats])

    counted_in = pl.col("input_tokens") - pl.when(pl.col("cached_counted")).then(0.0).otherwise(
        pl.col("cached_input_tokens")
    )
    reserved = pl.col("reserve_max_tokens") & pl.col("max_tokens").is_not_null()
    counted_out = pl.when(reserved).then(pl.max_horizontal("output_tokens", "max_tokens")).otherwise(
        pl.col("output_tokens")
    ) * pl.col("output_burndown")
    total = (
        pl.when(pl.col("counted") == "input")
        .then(counted_in)
        .when(pl.col("counted") == "output")
        .then(counted_out)
        .otherwise(counted_in + counted_out)
    )
    frame = frame.with_columns(
        (counted_in * pl.col("calls")).alias("_in"),
        (counted_out * pl.col("calls")).alias("_out"),
        (total * pl.col("calls")).alias("counted_tokens"),
        (pl.col("ttft_ms") / 1000 + pl.col("output_tokens") / pl.col("tokens_per_s")).alias("call_s"),
    )
    rates = [
        _rate("tpm", pl.col("counted_tokens")),
        _rate("itpm", pl.col("_in")),
        _rate("otpm", pl.col("_out")),
        _rate("rpm", pl.col("calls")),
        _rate("tpd", 1440 * pl.col("counted_tokens")),
        _rate("rpd", 1440 * pl.col("calls")),
        _rate("max_concurrency", pl.col("calls") * pl.col("call_s") / 60),
    ]
    inf = float("inf")
    as_list = pl.concat_list([r.fill_null(inf) for r in rates])
    frame = frame.with_columns(
        pl.min_horizontal(rates).alias("questions_per_minute"),
        as_list.list.arg_min().alias("_binding"),
    )
    names = pl.Series(LIMIT_NAMES)
    frame = frame.with_columns(
        pl.when(pl.col("questions_per_minute").is_not_null())
        .then(pl.col("_binding").replace_strict(list(range(len(names))), list(LIMIT_NAMES), default=None))
        .otherwise(None)
        .alias("binding_limit"),
        (pl.col("questions_per_minute") * pl.col("calls") * pl.col("call_s") / 60).alias(
            "concurrent_requests"
        ),
    )
    tokens = {
        "miss": (pl.col("input_tokens") - pl.col("cached_input_tokens")),
        "hit": pl.col("cached_input_tokens"),
        "out": pl.col("output_tokens"),
    }
    as_money = {k: (v * pl.col("calls")).round(6).cast(MONEY) for k, v in tokens.items()}
    cost = token_cost(
        as_money["miss"],
        as_money["hit"],
        as_money["out"],
        pl.col("input_price_per_mtok").cast(MONEY),
        pl.col("cached_input_price_per_mtok").cast(MONEY),
        pl.col("output_price_per_mtok").cast(MONEY),
    )
    frame = frame.with_columns(cost.cast(MONEY).alias("cost_per_question"))
    return frame.drop("_in", "_out", "_binding").collect()
