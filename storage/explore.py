"""Reads for exploring stored usage: what there is to filter by, and per-request samples to plot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from storage.replay import ALL_USAGE, UsageFilter
from storage.rollups import covering, recent_part, spend_rollup
from storage.store import StoreLike
from storage.usage_reader import open_usage


@dataclass(frozen=True)
class Dimensions:
    providers: tuple[str, ...]
    models: tuple[str, ...]
    teams: tuple[str, ...]
    first: datetime | None
    last: datetime | None
    requests: int


def usage_dimensions(db: StoreLike, selection: UsageFilter = ALL_USAGE) -> Dimensions:
    """Distinct providers, models and teams, and the time span, of the stored usage `selection` (with its
    `teams`, the viewer's scope) selects: what the dashboard's filters offer (from the spend rollup of the
    store)."""
    with open_usage(db) as usage:
        if usage.duckdb is not None and not _has_usage(usage.duckdb):
            return Dimensions((), (), (), None, None, 0)
        source, params = covering(usage, spend_rollup(selection), selection)
        lists = ", ".join(
            f"array_agg(DISTINCT {c}) FILTER (WHERE {c} IS NOT NULL) AS {c}s"
            for c in ("provider", "model", "team")
        )
        (row,) = usage.rows(
            f"SELECT min(first_ts), max(last_ts), coalesce(sum(requests), 0), {lists} FROM {source}", params
        )
    first, last, requests, providers, models, teams = row

    def names(values: list[object] | None) -> tuple[str, ...]:
        return tuple(sorted(str(v) for v in values or ()))

    return Dimensions(names(providers), names(models), names(teams), first, last, int(requests))


def _has_usage(con: object) -> bool:
    tables = con.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'usage'"
    ).fetchall()
    return bool(tables[0][0])


SAMPLE_ROWS = 20_000
SAMPLE_SPAN = 25  # a sample of N rows is drawn from the latest 25 N requests


def usage_sample(db: StoreLike, selection: UsageFilter, rows: int = SAMPLE_ROWS) -> pl.DataFrame:
    """Up to `rows` stored rows drawn at random (repeatably), as per-request figures, for distributions:
    from the latest `SAMPLE_SPAN` x `rows` requests of the selection (whole half hours, counted from the
    rollups), so that drawing it reads a bounded slice however much is stored.

    Columns: input_tokens, cached_share, output_tokens, reasoning_tokens, ttft_ms, requests (the requests a
    row stands for: an aggregated export bucket is `n_requests` requests of its average size).
    """
    with open_usage(db) as usage:
        selection = recent_part(usage, selection, SAMPLE_SPAN * rows)
    where, params = selection.where()
    sql = f"""
        SELECT input_tokens / n_requests AS input_tokens,
               CASE WHEN input_tokens > 0 THEN cached_input_tokens / input_tokens END AS cached_share,
               output_tokens / n_requests AS output_tokens,
               reasoning_tokens / n_requests AS reasoning_tokens,
               CASE WHEN n_requests = 1 THEN ttft_ms END AS ttft_ms,
               n_requests AS requests
        FROM (SELECT * FROM usage WHERE {where}) USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE (42)
    """
    with open_usage(db) as usage:
        return usage.frame(sql, params)
