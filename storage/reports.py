"""Named reads behind `quotascope report`: spend groups, usage per time bucket, and the token profile.

Sums are computed in DuckDB over the columns, then handed to `models` as polars frames: a ten-million-row
table becomes a few thousand price groups before any Python runs. Every read opens the database read-only
for one query (`storage.db.open_read`), so reports and a running ingest take turns rather than fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from models.catalog import Catalog
from models.focus import FocusExport, Grain, focus_rows
from models.pricing import band_input, tier_band_sql
from models.spend import TIME_KEYS, SpendRow, price_spend, pricing_grain_minutes, tier_bounds
from models.usage import Distribution, UsageProfile
from storage.catalog import load_catalog
from storage.db import open_read, query_frame
from storage.replay import UsageFilter
from storage.store import StoreLike, as_store
from storage.usage_reader import open_usage

__all__ = [
    "UsageFilter",
    "focus_export",
    "read_rejects",
    "read_spend_groups",
    "read_usage_buckets",
    "read_usage_profile",
    "spend_report",
]

# how each report key is computed from a usage row (`bucket` is the row's pricing time bucket)
_KEY_SQL = {
    "provider": "provider",
    "model": "model",
    "team": "team",
    "project": "project",
    "key": "key_id",
    "endpoint": "endpoint",
    "day": "CAST(bucket AS DATE)",
    "hour": "date_trunc('hour', bucket)",
}
# the tables in the canonical usage shape: the logs, and the pulled provider usage (storage.pulls)
SPEND_TABLES = ("usage", "provider_usage_all", "provider_usage_counted")
_SUMS = """
    sum(n_requests)::BIGINT AS requests,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(cached_input_tokens)::BIGINT AS cached_input_tokens,
    sum(cache_write_tokens)::BIGINT AS cache_write_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    sum(reasoning_tokens)::BIGINT AS reasoning_tokens"""


def read_spend_groups(
    db: StoreLike,
    selection: UsageFilter,
    by: Sequence[str],
    grain_minutes: int,
    bounds: Sequence[int],
    *,
    table: str = "usage",
) -> pl.DataFrame:
    """Usage summed per price-homogeneous group: provider, model, the `by` keys, a `grain_minutes` time bucket
    (`bucket`, its start), the service tier and batch flag, and a long-context band (`input_each`: a
    per-request input size inside the band; the band rule is the pricing engine's, `tier_band_sql`).

    Grouping by an integer bucket number is several times faster than by a truncated timestamp on ten
    million rows; `day` and `hour` are derived from the bucket afterwards, on a few thousand groups.
    `table` is `usage` (the logs, in the store's usage engine) or a view of pulled provider usage in its
    shape (`provider_usage_all`, always in the DuckDB file).
    """
    if table not in SPEND_TABLES:
        raise ValueError(f"not a usage table: {table}")
    where, params = selection.where()
    extra = [k for k in by if k not in ("provider", "model", *TIME_KEYS)]
    keys = "".join(f"{_KEY_SQL[k]} AS {k}, " for k in extra)
    grain_us = int(grain_minutes) * 60_000_000
    with open_usage(db if table == "usage" else as_store(db).db) as usage:
        columns = usage.columns(table)
        dimensions = "".join(
            f"\n                {name}," for name in ("service_tier", "batch") if name in columns
        )
        write_1h = (
            ",\n    sum(cache_write_1h_tokens)::BIGINT AS cache_write_1h_tokens"
            if "cache_write_1h_tokens" in columns
            else ""
        )
        billed = bool(
            usage.rows(f"SELECT 1 FROM {table} WHERE billed_cost IS NOT NULL AND {where} LIMIT 1", params)
        )
        billed_sql = ", sum(billed_cost) AS billed_cost, billed_currency" if billed else ""
        sql = f"""
            SELECT provider, model, {keys}epoch_us(ts) // {grain_us} AS bucket_no,
                {tier_band_sql(bounds, "input_tokens", "n_requests")} AS size_class,{dimensions}
                {_SUMS}{write_1h}{billed_sql}
            FROM {table} WHERE {where}
            GROUP BY ALL
        """
        frame = usage.frame(sql, params)
    representative = band_input(bounds)
    frame = frame.with_columns(
        (pl.col("bucket_no") * grain_us).cast(pl.Datetime("us")).alias("bucket"),
        pl.col("size_class")
        .replace_strict(list(range(len(representative))), representative, return_dtype=pl.Int64)
        .alias("input_each"),
    )
    if not billed:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Decimal(20, 10)).alias("billed_cost"),
            pl.lit(None, dtype=pl.String).alias("billed_currency"),
        )
    if "day" in by:
        frame = frame.with_columns(pl.col("bucket").dt.date().alias("day"))
    if "hour" in by:
        frame = frame.with_columns(pl.col("bucket").dt.truncate("1h").alias("hour"))
    return frame


def spend_report(
    db: StoreLike,
    catalog: Catalog,
    selection: UsageFilter,
    by: Sequence[str],
    currency: str | None = None,
    *,
    table: str = "usage",
) -> list[SpendRow]:
    """`quotascope report spend`: one priced row per value of `by` (of the logs, or of pulled `table`)."""
    groups = read_spend_groups(
        db, selection, by, pricing_grain_minutes(catalog), tier_bounds(catalog), table=table
    )
    return price_spend(groups, by, catalog, currency)


def focus_export(
    db: StoreLike, catalog: Catalog, catalog_dir: Path, selection: UsageFilter, grain: Grain = "day"
) -> FocusExport:
    """Stored usage as FOCUS 1.0 rows (`models.focus.focus_rows`): summed here per price-homogeneous group
    and team, project and key; priced and mapped there, with list prices from the shipped catalog in
    `catalog_dir` (without the user's overrides, which are their contract)."""
    groups = read_spend_groups(
        db, selection, ("team", "project", "key"), pricing_grain_minutes(catalog), tier_bounds(catalog)
    )
    return focus_rows(groups, catalog, load_catalog(Path(catalog_dir)), grain)


def read_usage_buckets(db: StoreLike, selection: UsageFilter, by: Sequence[str]) -> pl.DataFrame:
    """Requests and tokens per time bucket (`day` or `hour` among `by`) and the other `by` keys."""
    where, params = selection.where()
    keys = ", ".join(f"{_KEY_SQL[k].replace('bucket', 'ts')} AS {k}" for k in by)
    order = ", ".join(by)
    sql = f"SELECT {keys}, {_SUMS} FROM usage WHERE {where} GROUP BY ALL ORDER BY {order} NULLS LAST"
    with open_usage(db) as usage:
        return usage.frame(sql, params)


# ------------------------------------------------------------------------------------------ profile

_PER_REQUEST = {
    "input_tokens": "input_tokens / n_requests",
    "cached_input_tokens": "cached_input_tokens / n_requests",
    "output_tokens": "output_tokens / n_requests",
    "reasoning_tokens": "reasoning_tokens / n_requests",
    # measured per request only (an aggregated row has no latency of its own)
    # measured values rounded (to 1 ms, 0.1 token/s): exact weighted percentiles group by value, and
    # millions of distinct floats made this profile take seconds on 10M rows
    "ttft_ms": "CASE WHEN n_requests = 1 THEN round(ttft_ms) END",
    "tokens_per_s": (
        "CASE WHEN n_requests = 1 AND latency_ms > ttft_ms AND output_tokens > 0 "
        "THEN round(output_tokens / ((latency_ms - ttft_ms) / 1000.0), 1) END"
    ),
}


_SHARES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def _distribution_sql(metric: str, expression: str) -> str:
    """Weighted mean and percentiles (the smallest value whose cumulative weight reaches the share), as the
    columns `<metric>_n`, `_mean`, `_p50`, `_p90`, `_p99` of a one-row CTE `<metric>_dist` (plain columns
    and CASE rather than DuckDB's struct_pack and FILTER: the same text runs on ClickHouse)."""
    shares = "".join(
        f",\n                   min(CASE WHEN cw >= {share} * tw THEN v END) AS {metric}_{name}"
        for name, share in _SHARES.items()
    )
    return f"""
        {metric}_values AS (SELECT {expression} AS v, sum(n_requests) AS w FROM selected
                    WHERE {expression} IS NOT NULL GROUP BY {expression}),
        {metric}_cumulative AS (SELECT v, w, sum(w) OVER (ORDER BY v) AS cw, sum(w) OVER () AS tw
                    FROM {metric}_values),
        {metric}_dist AS (SELECT sum(w) AS {metric}_n, sum(v * w) / sum(w) AS {metric}_mean{shares}
                    FROM {metric}_cumulative)"""


def read_usage_profile(
    db: StoreLike,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    provider: str | None = None,
    model: str | None = None,
    team: str | None = None,
    selection: UsageFilter | None = None,
) -> UsageProfile:
    """The per-request token profile of stored usage (`quotascope plan --from-usage`, `report profile`):
    of `selection` if given (the dashboard's, with the viewer's teams), else of the other arguments.

    Aggregated rows (an organisation export bucket) count as `n_requests` requests of their average size.
    An empty selection gives `requests == 0` and zero distributions.
    """
    if selection is None:
        selection = UsageFilter(since, until, provider, model, team)
    elif any(v is not None for v in (since, until, provider, model, team)):
        raise TypeError("read_usage_profile takes a selection or its parts, not both")
    where, params = selection.where()
    metrics = ",".join(_distribution_sql(name, expr) for name, expr in _PER_REQUEST.items())
    joined = "".join(f" CROSS JOIN {name}_dist" for name in _PER_REQUEST)
    sql = f"""
        WITH selected AS (SELECT * FROM usage WHERE {where}),
        totals AS (SELECT coalesce(sum(n_requests), 0) AS requests,
                          sum(cached_input_tokens)::DOUBLE / nullif(sum(input_tokens), 0) AS cached_share
                   FROM selected),{metrics}
        SELECT * FROM totals{joined}
    """
    with open_usage(db) as usage:
        values = usage.frame(sql, params).row(0, named=True)
    requests, cached_share = values["requests"], values["cached_share"]

    def dist(name: str, optional: bool = False) -> Distribution | None:
        if not values[f"{name}_n"]:
            return None if optional else Distribution(0.0, 0.0, 0.0, 0.0)
        mean, *shares = (float(values[f"{name}_{part}"]) for part in ("mean", *_SHARES))
        return Distribution(mean, *shares)

    def required(name: str) -> Distribution:
        found = dist(name)
        assert found is not None
        return found

    return UsageProfile(
        requests=int(requests),
        input_tokens=required("input_tokens"),
        cached_input_tokens=required("cached_input_tokens"),
        output_tokens=required("output_tokens"),
        reasoning_tokens=required("reasoning_tokens"),
        cached_share=float(cached_share or 0.0),
        ttft_ms=dist("ttft_ms", optional=True),
        tokens_per_s=dist("tokens_per_s", optional=True),
    )


def report_keys(by: Sequence[str]) -> tuple[str, ...]:
    """A usage report always has a time bucket: `by` with `day` added when it names neither day nor hour."""
    return tuple(by) if any(k in TIME_KEYS for k in by) else ("day", *by)


def read_rejects(db: StoreLike, limit: int = 50, all_runs: bool = False) -> pl.DataFrame:
    """Rejected records, newest ingest first: file, line, reason and redacted excerpt.

    Every ingest of a file reads all of it, so by default only each file's latest finished run is shown
    (its latest run if none finished): what is wrong with the file as it was last read whole, not again for
    each earlier run, nor only the part an interrupted or running ingest has reached. `all_runs` keeps the
    history.
    """
    latest = (
        ""
        if all_runs
        else """WHERE s.source_id IN (
            SELECT coalesce(max(source_id) FILTER (WHERE finished_at IS NOT NULL), max(source_id))
            FROM sources GROUP BY path)"""
    )
    sql = f"""
        SELECT s.path, r.line_no, r.reason, r.excerpt, s.source_id, s.started_at
        FROM rejects r JOIN sources s USING (source_id)
        {latest}
        ORDER BY s.source_id DESC, r.line_no
        LIMIT ?
    """
    with open_read(as_store(db).db) as con:  # the ingest's bookkeeping is always in the DuckDB file
        return query_frame(con, sql, [max(0, int(limit))])
