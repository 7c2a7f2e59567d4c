"""The per-request token profile of stored usage: exact weighted means and weighted percentiles (within
0.5 %: `models.profile_bins`) of input, cached, output and reasoning tokens per request, time to first
token and output speed.

Read from the profile rollups (`storage.rollups.PROFILES`: a bin's requests and the exact sum of their
values per month, provider, model and team), so the figures are those of every stored request without
reading the rows; a selection by project, which the rollups do not keep, is read from the raw rows, binned
by the same rule, so either way gives the same answer. Several groups (each provider and model of a month,
say) come from one query per measure: the store counts the requests per bin and accumulates them in a
running sum, so one row per group leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from models.profile_bins import bin_sql, value_of
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
    """The requests and the sum of their amounts per bin of a measure (`b`, `w`, `s`) per group of `by`,
    from the relation `values` of bins (partial rows of a rollup, or raw rows)."""
    keys = "".join(f"{k}, " for k in by)
    return f"SELECT {keys}b, sum(w)::BIGINT AS w, sum(s) AS s FROM {values} GROUP BY ALL"


PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def _stats_sql(values: str, by: Sequence[str]) -> str:
    """Per group of `by`: requests, the sum of their amounts and percentiles — the first bin whose
    cumulative requests reach the share — of the requests per bin (`_values_sql`), in the store's engine
    (`_distributions` turns the sum into the exact mean and the bins into their values, in Python, so both
    stores give the same figures to the last bit):
    a running sum over the bins, so only one row per group leaves it (in polars, the values of
    a month of 100M requests held 130 MB and took twice as long)."""
    keys = "".join(f"{k}, " for k in by)
    partition = f"PARTITION BY {', '.join(by)} " if by else ""
    reaching = ", ".join(f"min(b) FILTER (WHERE cw >= {share} * tw) AS {name}" for name, share in PERCENTILES)
    return f"""SELECT {keys}sum(w) AS n, sum(s) AS s, {reaching}
        FROM (SELECT *, sum(w) OVER ({partition}ORDER BY b ROWS UNBOUNDED PRECEDING) AS cw,
                sum(w) OVER ({partition.strip()}) AS tw
              FROM ({_values_sql(values, by)}))
        {"GROUP BY ALL" if by else ""}"""


def _distributions(rows: list[tuple[Any, ...]], by: Sequence[str], scale: int) -> dict[Key, dict[str, float]]:
    """`_stats_sql`'s rows keyed by their group: requests, the exact mean (the sum of the amounts over
    `scale` and the requests) and each percentile's bin's value."""
    width = len(by)
    found = {}
    for row in rows:
        n, total, *bins = row[width:]
        stats = {"n": n, "mean": total / scale / n if n else None}
        for (name, _), b in zip(PERCENTILES, bins, strict=True):
            stats[name] = None if b is None else value_of(int(b))
        found[tuple(row[:width])] = stats
    return found


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
            (
                f"(SELECT {keys}{bin_sql(m.value)} AS b, n_requests AS w, {m.amount} AS s "
                f"FROM {rows} WHERE ({m.value}) IS NOT NULL)",
                params,
            )
            for m in rollups.PROFILE_METRICS.values()
        ]
        totals = (rows, params)
    else:
        requests = "requests"
        totals = rollups.covering(usage, rollups.SPEND, selection)
        values = []
        for name in rollups.PROFILE_METRICS:
            source, params = rollups.covering(usage, rollups.PROFILES[name], selection)
            values.append((f"(SELECT {keys}bin AS b, weight AS w, total AS s FROM {source})", params))
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
        stats = [
            _distributions(usage.rows(sql, params), by, metric.scale)
            for (sql, params), metric in zip(measures, rollups.PROFILE_METRICS.values(), strict=True)
        ]
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
