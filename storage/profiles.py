"""The per-request token profile of stored usage: weighted means and exact weighted percentiles of input,
cached, output and reasoning tokens per request, time to first token and output speed.

Read from the profile rollups (`storage.rollups.PROFILES`: a value's requests per month, provider, model
and team), so the percentiles are those of every stored request without reading the rows; a selection by
project, which the rollups do not keep, is read from the raw rows. Several groups (each provider and model
of a month, say) come from one query per measure: the store counts the requests per distinct value and
accumulates them in a running sum, so one row per group leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from models.usage import Distribution, UsageProfile
from storage import rollups
from storage.replay import UsageFilter
from storage.store import StoreLike
from storage.usage_reader import UsageReader, open_usage

PROFILE_KEYS = ("provider", "model", "team")  # what a profile can be grouped by
Key = tuple[Any, ...]


def profile_from_rollups(selection: UsageFilter) -> bool:
    """Whether the profile rollups hold what `selection` selects (they keep no project)."""
    return selection.project is None


def _values_sql(values: str, by: Sequence[str]) -> str:
    """The requests per distinct value of a measure (`v`, `w`) per group of `by`, from the relation
    `values` (partial rows of a rollup, or raw rows)."""
    keys = "".join(f"{k}, " for k in by)
    return f"SELECT {keys}v, sum(w)::BIGINT AS w FROM {values} GROUP BY ALL"


PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def _stats_sql(values: str, by: Sequence[str]) -> str:
    """Per group of `by`: requests, weighted mean and percentiles — the smallest value whose cumulative
    requests reach the share — of the requests per distinct value (`_values_sql`), in the store's engine:
    a running sum over the distinct values, so only one row per group leaves it (in polars, the values of
    a month of 100M requests held 130 MB and took twice as long)."""
    keys = "".join(f"{k}, " for k in by)
    partition = f"PARTITION BY {', '.join(by)} " if by else ""
    reaching = ", ".join(f"min(v) FILTER (WHERE cw >= {share} * tw) AS {name}" for name, share in PERCENTILES)
    return f"""SELECT {keys}sum(w) AS n, sum(v * w) / sum(w) AS mean, {reaching}
        FROM (SELECT *, sum(w) OVER ({partition}ORDER BY v ROWS UNBOUNDED PRECEDING) AS cw,
                sum(w) OVER ({partition.strip()}) AS tw
              FROM ({_values_sql(values, by)}))
        {"GROUP BY ALL" if by else ""}"""


def _distributions(rows: list[tuple[Any, ...]], by: Sequence[str]) -> dict[Key, dict[str, float]]:
    """`_stats_sql`'s rows keyed by their group."""
    width = len(by)
    names = ("n", "mean", *(name for name, _ in PERCENTILES))
    return {tuple(row[:width]): dict(zip(names, row[width:], strict=True)) for row in rows}


def _profile_queries(
    usage: UsageReader, selection: UsageFilter, by: Sequence[str]
) -> list[tuple[str, list[Any]]]:
    """The totals query (requests, cached share per group), then one query per measure: from the store's
    rollups, or from the rows (a selection by project)."""
    keys = "".join(f"{k}, " for k in by)
    if not profile_from_rollups(selection):
        where, params = selection.where()
        rows, requests = f"(SELECT * FROM usage WHERE {where})", "n_requests"
        values = [
            (f"(SELECT {keys}{expr} AS v, n_requests AS w FROM {rows} WHERE ({expr}) IS NOT NULL)", params)
            for expr in rollups.PROFILE_METRICS.values()
        ]
        totals = (rows, params)
    else:
        requests = "requests"
        totals = rollups.covering(usage, rollups.SPEND, selection)
        values = []
        every_team = selection.team is None and selection.teams is None and "team" not in by
        chosen = rollups.PROFILES_ALL_TEAMS if every_team else rollups.PROFILES
        for name in rollups.PROFILE_METRICS:
            source, params = rollups.covering(usage, chosen[name], selection)
            values.append((f"(SELECT {keys}value AS v, weight AS w FROM {source})", params))
    totals_sql = f"""SELECT {keys}coalesce(sum({requests}), 0) AS requests,
        sum(cached_input_tokens)::DOUBLE / nullif(sum(input_tokens), 0) AS cached_share
        FROM {totals[0]} GROUP BY ALL"""
    return [(totals_sql, totals[1]), *((_stats_sql(v, by), p) for v, p in values)]


def read_usage_profiles(db: StoreLike, selection: UsageFilter, by: Sequence[str]) -> dict[Key, UsageProfile]:
    """The token profile of each group of `by` (among provider, model, team) in `selection`, keyed by
    the group's values; `by=()` gives one profile under the key `()`, even of no requests."""
    unknown = [k for k in by if k not in PROFILE_KEYS]
    if unknown:
        raise ValueError(f"a profile groups by {', '.join(PROFILE_KEYS)}, not {', '.join(unknown)}")
    width = len(by)
    with open_usage(db) as usage:
        (totals_sql, totals_params), *measures = _profile_queries(usage, selection, by)
        totals = usage.rows(totals_sql, totals_params)
        stats = [_distributions(usage.rows(sql, params), by) for sql, params in measures]
    return {
        tuple(row[:width]): _profile(
            row[width], row[width + 1], [found.get(tuple(row[:width])) for found in stats]
        )
        for row in totals
    }


def _profile(requests: Any, cached_share: Any, stats: list[Any]) -> UsageProfile:
    values = dict(zip(rollups.PROFILE_METRICS, stats, strict=True))

    def dist(name: str) -> Distribution | None:
        value = values[name]
        if not value or not value["n"]:
            return None
        return Distribution(
            float(value["mean"]), float(value["p50"]), float(value["p90"]), float(value["p99"])
        )

    def required(name: str) -> Distribution:
        return dist(name) or Distribution(0.0, 0.0, 0.0, 0.0)

    return UsageProfile(
        requests=int(requests or 0),
        input_tokens=required("input_tokens"),
        cached_input_tokens=required("cached_input_tokens"),
        output_tokens=required("output_tokens"),
        reasoning_tokens=required("reasoning_tokens"),
        cached_share=float(cached_share or 0.0),
        ttft_ms=dist("ttft_ms"),
        tokens_per_s=dist("tokens_per_s"),
    )


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
    return read_usage_profiles(db, selection, ())[()]
