"""Recorded demand rebuilt from stored usage rows, for a replay against another offer's limits.

One unit per request at its own time; an aggregated row (`n_requests` > 1, timestamped at its bucket start)
is spread evenly over its bucket — one unit per request, or per second when the bucket holds more requests
than seconds. A request's duration is its recorded `latency_ms`, else its TTFT (recorded, else assumed) plus
its output at an assumed tokens/s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from models.capacity import Latency
from models.errors import InputError
from models.usage_record import TOKEN_FIELDS

# What stored usage rows must (or may) carry; `storage.replay` selects exactly these.
USAGE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us"),
    "n_requests": pl.Int64(),
    "input_tokens": pl.Int64(),
    "cached_input_tokens": pl.Int64(),
    "cache_write_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),
    "ttft_ms": pl.Float64(),
    "latency_ms": pl.Float64(),
    "provider": pl.String(),
    "model": pl.String(),
    "team": pl.String(),
    "project": pl.String(),
    "source_id": pl.Int64(),
}
REQUIRED = ("ts", "input_tokens", "output_tokens")
# The recorded tokens a unit carries, named as in the usage record (canonical semantics: input all prompt
# tokens, cache hits and writes included; output all generated tokens, reasoning included).
TOKEN_COLUMNS = TOKEN_FIELDS
# carried onto units only when the rows have them (a replay needs none; recorded cost needs provider/model)
ATTRIBUTION = ("provider", "model", "team", "project")
BUCKET_CANDIDATES_S = (86_400, 3_600, 900, 300, 60)  # export bucket widths, coarsest first
DEFAULT_BUCKET_S = 60
MIN_DURATION_S = 1e-3
# Aggregated rows are spread one unit per request, or per second of their bucket; beyond this many units in
# all (a year of day buckets holding millions of requests) the slices widen evenly to stay within it.
MAX_SPREAD_UNITS = 20_000_000


@dataclass(frozen=True)
class Traffic:
    """Recorded demand as units sorted by arrival: `ts`, `t_s` (seconds since `origin`, a UTC midnight so
    minute and day windows align with the clock), `requests`, recorded tokens (`TOKEN_COLUMNS`: the usage
    record's `input_tokens`, `cached_input_tokens`, `cache_write_tokens`, `output_tokens`,
    `reasoning_tokens`), `duration_s`, and `provider`, `model`, `team`, `project`."""

    units: pl.DataFrame
    origin: datetime
    rows: int
    aggregated_rows: int
    bucket_s: Mapping[int | None, int]  # inferred or given bucket width per source of aggregated rows
    assumed_duration_requests: float  # requests whose duration came from the latency assumption
    latency: Latency
    spread_slice_s: float = 0.0  # > 1: aggregated rows were spread in slices this wide, not per second

    @property
    def requests(self) -> float:
        return float(self.units["requests"].sum()) if self.units.height else 0.0

    @property
    def first(self) -> datetime | None:
        return self.units["ts"].min() if self.units.height else None  # type: ignore[return-value]

    @property
    def last(self) -> datetime | None:
        return self.units["ts"].max() if self.units.height else None  # type: ignore[return-value]


def empty_usage() -> pl.DataFrame:
    return pl.DataFrame(schema=USAGE_SCHEMA)


def _normalise(rows: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise InputError(f"usage rows need the columns {', '.join(missing)}")
    wanted = {n: t for n, t in USAGE_SCHEMA.items() if n not in ATTRIBUTION or n in rows.columns}
    extra = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in wanted.items() if name not in rows.columns
    ]
    frame = rows.with_columns(extra).select([pl.col(name).cast(dtype) for name, dtype in wanted.items()])
    if "model" in frame.columns:
        frame = frame.with_columns(pl.col("model").fill_null(""))
    return frame.with_columns(
        pl.col("n_requests").fill_null(1).clip(lower_bound=1),
        *[pl.col(c).fill_null(0) for c in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens")],
    )


def infer_bucket_s(ts: pl.Series) -> int:
    """The width of an export's buckets from their start times: the coarsest of day, hour, 15, 5 and 1
    minutes that every start is aligned to and that is no wider than the closest two starts."""
    epoch = (ts.dt.epoch("s")).unique().sort()
    if epoch.len() == 0:
        return DEFAULT_BUCKET_S
    closest = int(epoch.diff().drop_nulls().min() or 0) if epoch.len() > 1 else None  # type: ignore[arg-type]
    for width in BUCKET_CANDIDATES_S:
        if (epoch % width).max() == 0 and (closest is None or width <= closest):
            return width
    return min(DEFAULT_BUCKET_S, closest) if closest else DEFAULT_BUCKET_S


def _split(column: str) -> pl.Expr:
    """The i-th of k whole-number shares of a row total: floor((i+1)·T/k) − floor(i·T/k), overflow-safe."""
    total, k, i = pl.col(column), pl.col("_k"), pl.col("_i")
    whole, rest = total // k, total % k
    return ((i + 1) * whole + ((i + 1) * rest) // k) - (i * whole + (i * rest) // k)


def traffic_from_usage(
    rows: pl.DataFrame, *, latency: Latency | None = None, bucket_s: int | None = None
) -> Traffic:
    """Units from stored usage rows (`USAGE_SCHEMA`; canonical token semantics).

    `bucket_s` gives the width of aggregated rows' buckets; by default it is inferred per source
    (`infer_bucket_s`). A request's duration is its `latency_ms`; without one, TTFT (recorded, else the
    assumption's) plus output tokens at the assumption's tokens per second.
    """
    latency = latency or Latency.seed()
    frame = _normalise(rows)
    keep = [c for c in ATTRIBUTION if c in frame.columns]
    if frame.height == 0:
        units = pl.DataFrame(
            schema={
                "ts": pl.Datetime("us"),
                "t_s": pl.Float64(),
                "requests": pl.Float64(),
                **{c: pl.Int64() for c in TOKEN_COLUMNS},
                "duration_s": pl.Float64(),
                **{c: pl.String() for c in keep},
            }
        )
        return Traffic(units, datetime(1970, 1, 1), 0, 0, {}, 0.0, latency)
    if bucket_s is not None and bucket_s < 1:
        raise InputError(f"a bucket width is at least 1 second, got {bucket_s}")
    frame = frame.sort("ts")  # one sort; the units keep this order
    spread_any = bool((frame["n_requests"] > 1).any())
    single = frame.filter(pl.col("n_requests") == 1) if spread_any else frame
    aggregated = frame.filter(pl.col("n_requests") > 1) if spread_any else frame.clear()
    widths: dict[int | None, int] = {}
    if aggregated.height:
        for (source,), part in aggregated.group_by("source_id"):
            widths[source] = bucket_s or infer_bucket_s(part["ts"])
    assumed_ttft_s = float(latency.ttft_ms) / 1000
    tokens_per_s = float(latency.tokens_per_s)
    slice_s = 0.0

    def finish(
        part: pl.DataFrame, weight: pl.Expr, tokens: Mapping[str, pl.Expr], at: pl.Expr
    ) -> pl.DataFrame:
        out_each = tokens["output_tokens"].cast(pl.Float64) / weight
        assumed = pl.col("ttft_ms").fill_null(assumed_ttft_s * 1000) / 1000 + out_each / tokens_per_s
        duration = pl.coalesce(pl.col("latency_ms") / 1000, assumed).clip(lower_bound=MIN_DURATION_S)
        return part.select(
            at.alias("ts"),
            weight.cast(pl.Float64).alias("requests"),
            *[expr.cast(pl.Int64).alias(name) for name, expr in tokens.items()],
            duration.alias("duration_s"),
            pl.col("latency_ms").is_null().alias("_assumed"),
            *keep,
        )

    recorded = {name: pl.col(name) for name in TOKEN_COLUMNS}
    parts = [finish(single, pl.lit(1.0), recorded, pl.col("ts"))]
    if aggregated.height:
        width = pl.col("source_id").replace_strict(
            list(widths), list(widths.values()), default=DEFAULT_BUCKET_S, return_dtype=pl.Int64
        )
        sliced = aggregated.with_columns(width.alias("_width")).with_columns(
            pl.min_horizontal(pl.col("n_requests"), pl.col("_width")).alias("_k")
        )
        wanted = int(sliced["_k"].sum())
        if wanted > MAX_SPREAD_UNITS:
            coarser = wanted / MAX_SPREAD_UNITS
            sliced = sliced.with_columns((pl.col("_k") / coarser).floor().clip(lower_bound=1).cast(pl.Int64))
            slice_s = float(sliced.select((pl.col("_width") / pl.col("_k")).max()).item())
        spread = sliced.with_columns(pl.int_ranges(0, pl.col("_k")).alias("_i")).explode("_i")
        offset_us = ((pl.col("_i").cast(pl.Float64) + 0.5) * pl.col("_width") / pl.col("_k") * 1e6).cast(
            pl.Int64
        )
        at = pl.col("ts") + pl.duration(microseconds=offset_us)
        spread = (
            spread.with_columns(
                _split("input_tokens").alias("_in"),
                _split("output_tokens").alias("_out"),
                _split("cached_input_tokens").alias("_cached"),
                _split("cache_write_tokens").alias("_write"),
                _split("reasoning_tokens").alias("_reason"),
            )
            .with_columns(
                pl.min_horizontal("_cached", "_in").alias("_cached"),
                pl.min_horizontal("_reason", "_out").alias("_reason"),
            )
            .with_columns(pl.min_horizontal("_write", pl.col("_in") - pl.col("_cached")).alias("_write"))
        )
        weight = pl.col("n_requests").cast(pl.Float64) / pl.col("_k")
        tokens = {
            "input_tokens": pl.col("_in"),
            "cached_input_tokens": pl.col("_cached"),
            "cache_write_tokens": pl.col("_write"),
            "output_tokens": pl.col("_out"),
            "reasoning_tokens": pl.col("_reason"),
        }
        parts.append(finish(spread, weight, tokens, at))
    units = pl.concat(parts).sort("ts", maintain_order=True) if len(parts) > 1 else parts[0]
    first = units["ts"].min()
    assert isinstance(first, datetime)
    origin = datetime(first.year, first.month, first.day)
    units = units.with_columns(
        pl.col("ts").set_sorted(), ((pl.col("ts") - origin).dt.total_microseconds() / 1e6).alias("t_s")
    )
    assumed = float(units.select((pl.col("requests") * pl.col("_assumed")).sum()).item() or 0.0)
    units = units.select("ts", "t_s", "requests", *TOKEN_COLUMNS, "duration_s", *keep)
    return Traffic(units, origin, frame.height, aggregated.height, widths, assumed, latency, slice_s)


def demand_series(traffic: Traffic, every_s: int = 60) -> pl.DataFrame:
    """Recorded demand per `every_s` seconds (1: per second, 60: per minute): `at` (the step's start),
    `requests`, `input_tokens`, `cached_input_tokens`, `output_tokens`, `total_tokens` (input + output),
    each summed over the step."""
    if every_s < 1:
        raise InputError("a demand series needs a step of at least one second")
    frame = traffic.units.group_by((pl.col("t_s") // every_s).cast(pl.Int64).alias("step")).agg(
        pl.col("requests").sum().alias("requests"),
        pl.col("input_tokens").sum(),
        pl.col("cached_input_tokens").sum(),
        pl.col("output_tokens").sum(),
    )
    return (
        frame.sort("step")
        .with_columns(
            (pl.lit(traffic.origin) + pl.duration(seconds=pl.col("step") * every_s)).alias("at"),
            (pl.col("input_tokens") + pl.col("output_tokens")).alias("total_tokens"),
        )
        .select("at", "requests", "input_tokens", "cached_input_tokens", "output_tokens", "total_tokens")
    )
