"""Replaying stored traffic against several offers: the one call behind `quotascope simulate` and the
dashboard's Switch view.

The traffic is read once (`storage.replay.read_traffic`) and replayed per offer (`models.replay`); what it
cost as served comes from the spend report's price groups (`storage.reports.spend_report`), so a replay's
`cost_actual` and `quotascope report spend` always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import polars as pl

from models.capacity import Latency
from models.catalog import Catalog, to_utc_naive
from models.errors import InputError
from models.replay import Replay, ReplayOptions, comparison_rows, replay
from models.spend import SpendRow
from models.traffic import demand_series
from storage import rollups
from storage.replay import UsageFilter, read_traffic, usage_span
from storage.reports import spend_report
from storage.store import StoreLike
from storage.usage_reader import open_usage

DEFAULT_DAYS = 30  # a replay with no --since looks this far back from the last stored request
# The dashboard replays at most this many requests at once (the latest of its period, in whole half hours):
# a replay holds every request in memory and takes time in proportion, so a first visit would otherwise
# grow with the traffic. About a day of a 10M-requests-a-month workload, with its daily peak.
MAX_REPLAY_REQUESTS = 400_000


@dataclass(frozen=True)
class Simulation:
    """Recorded traffic replayed against several offers, and what it cost as served."""

    selection: UsageFilter
    requests: float
    actual: SpendRow | None  # the spend report's total row for the selection, in the replays' currency
    replays: tuple[Replay, ...]
    # the recorded demand per `demand_every_s` of the same traffic (`models.traffic.demand_series`), if asked
    demand: pl.DataFrame | None = None

    def comparison(self) -> pl.DataFrame:
        """Side-by-side rows (`models.replay.comparison_rows`) for the Switch view."""
        return comparison_rows(self.replays, self.actual.cost if self.actual else None)


def default_period(path: StoreLike, selection: UsageFilter, days: int = DEFAULT_DAYS) -> UsageFilter:
    """The selection with a missing end filled in: up to just after the last stored request, from `days`
    before that (or the first request, if later)."""
    if selection.since is not None and selection.until is not None:
        if selection.until <= selection.since:
            raise InputError("--until must be after --since")
        return selection
    span = usage_span(path, selection)
    if span is None:
        raise InputError("no stored usage matches; ingest usage logs first (`quotascope ingest FILE...`)")
    until = selection.until or span[1] + timedelta(microseconds=1)
    since = selection.since or max(span[0], until - timedelta(days=days))
    if until <= since:
        raise InputError("--until must be after --since")
    return replace(selection, since=since, until=until)


def replay_window(
    path: StoreLike, selection: UsageFilter, max_requests: int = MAX_REPLAY_REQUESTS
) -> UsageFilter:
    """The latest part of `selection` holding at most `max_requests` requests (whole half hours, at least
    the last one), counted from the rollups; the selection itself when it holds no more."""
    with open_usage(path) as usage:
        return rollups.recent_part(usage, selection, max_requests)


def simulate_offers(
    path: StoreLike,
    catalog: Catalog,
    offer_ids: Sequence[str],
    options: ReplayOptions,
    selection: UsageFilter,
    *,
    latency: Latency | None = None,
    bucket_s: int | None = None,
    demand_every_s: int | None = None,
) -> Simulation:
    """Read the selection once and replay it against each offer, all money in one currency (the options',
    else the first offer's in force at the end of the period, or at `options.version_at`). With
    `demand_every_s`, the recorded demand per that many seconds comes along, from the same read."""
    if not offer_ids:
        raise InputError("name at least one target with --offer (see `quotascope catalog list`)")
    offers = [catalog.get(offer_id) for offer_id in offer_ids]
    selection = default_period(path, selection)
    traffic = read_traffic(path, selection, latency=latency, bucket_s=bucket_s)
    if traffic.units.height == 0:
        raise InputError("no stored usage in that period matches; widen --since/--until or the filters")
    last = traffic.last
    assert last is not None
    if options.currency is None:
        at = to_utc_naive(options.version_at or last)
        first = offers[0]
        version = first.version_at(at) if at >= first.versions[0].effective_from else first.versions[0]
        options = replace(options, currency=version.currency)
    rows = spend_report(path, catalog, selection, (), options.currency)
    replays = tuple(replay(traffic, offer, options, fx=catalog.fx) for offer in offers)
    demand = demand_series(traffic, demand_every_s) if demand_every_s is not None else None
    return Simulation(selection, traffic.requests, rows[0] if rows else None, replays, demand)
