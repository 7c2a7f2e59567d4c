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
        # one row per provider, model and team (tens of them), the lists and the span made from those: three
        # DISTINCT lists aggregated over every rollup row held a hash set each, a peak that grew with how
        # full the rollup is (11 MB at 10M requests, 18 MB at 100M; this read 7 MB and 9 MB), on every page
        groups = usage.rows(
            f"SELECT provider, model, team, min(first_ts), max(last_ts), sum(requests) FROM {source} "
            "GROUP BY provider, model, team",
            params,
        )
    firsts = [g[3] for g in groups if g[3] is not None]
    lasts = [g[4] for g in groups if g[4] is not None]

    def names(column: int) -> tuple[str, ...]:
        return tuple(sorted({str(g[column]) for g in groups if g[column] is not None}))

    return Dimensions(
        names(0),
        names(1),
        names(2),
        min(firsts, default=None),
        max(lasts, default=None),
        sum(int(g[5] or 0) for g in groups),
    )


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
