"""Named reads behind `quotascope report`: spend groups, usage per time bucket, and the token profile.

Sums are computed in DuckDB over the columns, then handed to `models` as polars frames: a ten-million-row
table becomes a few thousand price groups before any Python runs. Every read opens the database read-only
for one query (`storage.db.open_read`), so reports and a running ingest take turns rather than fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from models.bands import band_input, model_band_sql, tier_band_sql
from models.catalog import Catalog
from models.focus import FocusExport, Grain, focus_rows
from models.spend import (
    TIME_KEYS,
    SpendRow,
    model_tier_bounds,
    price_spend,
    pricing_grain_minutes,
    tier_bounds,
)
from storage import rollups
from storage.catalog import load_catalog
from storage.db import open_read, query_frame
from storage.profiles import profile_from_rollups, read_usage_profile, read_usage_profiles
from storage.replay import UsageFilter
from storage.store import StoreLike, as_store
from storage.usage import RECEIVER_FORMAT
from storage.usage_reader import open_usage

__all__ = [
    "UsageFilter",
    "focus_export",
    "priced_groups",
    "profile_from_rollups",
    "read_rejects",
    "read_spend_groups",
    "read_usage_buckets",
    "read_usage_profile",
    "read_usage_profiles",
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


def _sums(requests: str) -> str:
    """Requests (the column `requests` names) and every token count, summed."""
    return f"""
    sum({requests})::BIGINT AS requests,
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
    bounds_of: Callable[[str | None, str], Sequence[int]] | None = None,
) -> pl.DataFrame:
    """Usage summed per price-homogeneous group: provider, model, the `by` keys, a `grain_minutes` time bucket
    (`bucket`, its start), the service tier and batch flag, and a long-context band (`input_each`: a
    per-request input size inside the band; the band rule is the pricing engine's, `tier_band_sql`).

    Usage is read from the spend rollups when they answer the catalog exactly (`storage.rollups.covers`),
    else from the raw rows; both give the same groups. Grouping by an integer bucket number is several
    times faster than by a truncated timestamp; `day` and `hour` are derived from the bucket afterwards.
    `table` is `usage` (the logs, in the store's usage engine) or a view of pulled provider usage in its
    shape (`provider_usage_all`, always in the DuckDB file). A ClickHouse store's rollups are its
    materialized views (`storage.clickhouse_schema`), read the same way.

    `bounds_of` (the pricing engine's `models.spend.model_tier_bounds`) gives the long-context thresholds
    of the offer a (provider, model) is priced with: read from the rollups, each model is then banded by its
    own thresholds only, so a model whose prices have no tier is one band whatever its requests' sizes, and
    the groups do not grow as more of the catalog's bands fill with data.
    """
    if table not in SPEND_TABLES:
        raise ValueError(f"not a usage table: {table}")
    extra = [k for k in by if k not in ("provider", "model", *TIME_KEYS)]
    keys = "".join(f"{_KEY_SQL[k]} AS {k}, " for k in extra)
    grain_us = int(grain_minutes) * 60_000_000
    with open_usage(db if table == "usage" else as_store(db).db) as usage:
        if table == "usage" and rollups.covers(bounds, grain_minutes, usage):
            source, params = rollups.covering(usage, rollups.spend_rollup(selection, extra), selection)
            at, requests = "bucket", "requests"
            band = rollups.catalog_band_sql(bounds)
            if bounds_of is not None and bounds:  # no threshold in the catalog: every model is band 0
                pairs = usage.rows(f"SELECT DISTINCT provider, model FROM {source}", params)
                own = {(p, m): bounds_of(p, m) for p, m in pairs}
                band = model_band_sql(own, bounds, "input_floor + 1", "1")
            dimensions = "\n                service_tier,\n                batch,"
            write_1h = ",\n    sum(cache_write_1h_tokens)::BIGINT AS cache_write_1h_tokens"
        else:
            where, params = selection.where()
            source, at, requests = f"(SELECT * FROM {table} WHERE {where})", "ts", "n_requests"
            band = tier_band_sql(bounds, "input_tokens", "n_requests")
            dimensions, write_1h = _price_columns(usage.columns(table))
        billed = bool(usage.rows(f"SELECT 1 FROM {source} WHERE billed_cost IS NOT NULL LIMIT 1", params))
        billed_sql = ", sum(billed_cost) AS billed_cost, billed_currency" if billed else ""
        sql = f"""
            SELECT provider, model, {keys}epoch_us({at}) // {grain_us} AS bucket_no,
                {band} AS size_class,{dimensions}
                {_sums(requests)}{write_1h}{billed_sql}
            FROM {source}
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


def _price_columns(columns: set[str]) -> tuple[str, str]:
    """The service tier and batch columns, and the sum of 1-hour cache writes, where a table has them."""
    dimensions = "".join(
        f"\n                {name}," for name in ("service_tier", "batch") if name in columns
    )
    write_1h = (
        ",\n    sum(cache_write_1h_tokens)::BIGINT AS cache_write_1h_tokens"
        if "cache_write_1h_tokens" in columns
        else ""
    )
    return dimensions, write_1h


def priced_groups(
    db: StoreLike, catalog: Catalog, selection: UsageFilter, by: Sequence[str], *, table: str = "usage"
) -> pl.DataFrame:
    """`read_spend_groups` split as `catalog`'s prices need: its pricing grain, its long-context thresholds,
    and each model's own (the three things a store must know of a catalog to group usage for it)."""
    return read_spend_groups(
        db,
        selection,
        by,
        pricing_grain_minutes(catalog),
        tier_bounds(catalog),
        table=table,
        bounds_of=model_tier_bounds(catalog),
    )


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
    return price_spend(priced_groups(db, catalog, selection, by, table=table), by, catalog, currency)


def focus_export(
    db: StoreLike, catalog: Catalog, catalog_dir: Path, selection: UsageFilter, grain: Grain = "day"
) -> FocusExport:
    """Stored usage as FOCUS 1.0 rows (`models.focus.focus_rows`): summed here per price-homogeneous group
    and team, project and key; priced and mapped there, with list prices from the shipped catalog in
    `catalog_dir` (without the user's overrides, which are their contract)."""
    groups = priced_groups(db, catalog, selection, ("team", "project", "key"))
    return focus_rows(groups, catalog, load_catalog(Path(catalog_dir)), grain)


def read_usage_buckets(db: StoreLike, selection: UsageFilter, by: Sequence[str]) -> pl.DataFrame:
    """Requests and tokens per time bucket (`day` or `hour` among `by`) and the other `by` keys, summed
    from the spend rollups (their half hours make whole days and hours), on either engine."""
    keys = ", ".join(f"{_KEY_SQL[k]} AS {k}" for k in by)
    order = ", ".join(by)
    with open_usage(db) as usage:
        source, params = rollups.covering(usage, rollups.spend_rollup(selection, by), selection)
        sql = f"SELECT {keys}, {_sums('requests')} FROM {source} GROUP BY ALL ORDER BY {order} NULLS LAST"
        return usage.frame(sql, params)


def report_keys(by: Sequence[str]) -> tuple[str, ...]:
    """A usage report always has a time bucket: `by` with `day` added when it names neither day nor hour."""
    return tuple(by) if any(k in TIME_KEYS for k in by) else ("day", *by)


# the formats of sources whose every run brings new records, never a re-read of one file
STREAMS = (RECEIVER_FORMAT,)


def read_rejects(db: StoreLike, limit: int = 50, all_runs: bool = False) -> pl.DataFrame:
    """Rejected records, newest ingest first: file, line, reason and redacted excerpt.

    Every ingest of a file reads all of it, so by default only each file's latest finished run is shown
    (its latest run if none finished; latest by start, as runs on a shared ClickHouse store have random
    ids): what is wrong with the file as it was last read whole, not again for
    each earlier run, nor only the part an interrupted or running ingest has reached. A receiver's runs
    (`STREAMS`) each bring records of their own, so all of theirs are shown. `all_runs` keeps the history.
    """
    streams = ", ".join(f"'{f}'" for f in STREAMS)
    latest = (
        ""
        if all_runs
        else f"""WHERE s.format IN ({streams}) OR s.source_id IN (
            SELECT coalesce(
                arg_max(source_id, (started_at, source_id)) FILTER (WHERE finished_at IS NOT NULL),
                arg_max(source_id, (started_at, source_id)))
            FROM sources GROUP BY path)"""
    )
    sql = f"""
        SELECT s.path, r.line_no, r.reason, r.excerpt, s.source_id, s.started_at
        FROM rejects r JOIN sources s USING (source_id)
        {latest}
        ORDER BY s.started_at DESC, s.source_id DESC, r.line_no
        LIMIT ?
    """
    with open_read(as_store(db).db) as con:  # the ingest's bookkeeping is always in the DuckDB file
        return query_frame(con, sql, [max(0, int(limit))])
