"""Named reads for replays and spend: stored usage as the frames `models.replay` and `models.pricing` take.

Every read opens the database read-only for one query (`storage.db.open_read`), so a running ingest and a
replay take turns rather than fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import polars as pl

from models.access import Scope
from models.capacity import Latency
from models.catalog import to_utc_naive
from models.traffic import ATTRIBUTION, USAGE_SCHEMA, Traffic, demand_series, traffic_from_usage
from storage import rollups
from storage.store import StoreLike
from storage.usage_reader import open_usage


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which stored usage a read selects: [since, until) in UTC, exact attribution matches, and `teams`,
    the viewer's scope: only rows of these teams (None: every row, those with no team included).

    The dashboard sets `teams` in one place (`dashboard.state.read`, through `within`); a read that returns
    team data takes a `selection` so that it cannot be left out.
    """

    since: datetime | None = None
    until: datetime | None = None
    provider: str | None = None
    model: str | None = None
    team: str | None = None
    project: str | None = None
    teams: tuple[str, ...] | None = None

    def within(self, scope: Scope) -> UsageFilter:
        """This selection cut down to what `scope` may see."""
        return replace(self, teams=scope.narrow(self.teams))

    def where(self) -> tuple[str, list[Any]]:
        """A SQL condition on usage rows (with `?` parameters) selecting what this selection selects."""
        attributes, params = self.attribute_where()
        clauses = [attributes]
        # times as literals, not parameters: DuckDB skips the row groups outside a period only for
        # constants it sees when planning (a replay of the last day then reads the last day's rows)
        if self.since is not None:
            clauses.append(f"ts >= TIMESTAMP '{to_utc_naive(self.since):%Y-%m-%d %H:%M:%S.%f}'")
        if self.until is not None:
            clauses.append(f"ts < TIMESTAMP '{to_utc_naive(self.until):%Y-%m-%d %H:%M:%S.%f}'")
        return " AND ".join(clauses), params

    def attribute_where(self) -> tuple[str, list[Any]]:
        """The condition on everything but the time: it applies to a rollup's rows as to usage rows."""
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if self.teams is not None:
            # a row with no team is nobody's: a NULL team never matches, so only an unscoped read has it
            clauses.append(f"team IN ({', '.join('?' * len(self.teams))})" if self.teams else "FALSE")
            params.extend(self.teams)
        for column in ("provider", "model", "team", "project"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return " AND ".join(clauses), params


ALL_USAGE = UsageFilter()  # no period, no filter, no scope: every stored row


def _columns(names: Sequence[str]) -> str:
    return ", ".join(names)


def read_usage(
    path: StoreLike, selection: UsageFilter = UsageFilter(), *, attribution: bool = True, ordered: bool = True
) -> pl.DataFrame:
    """Usage rows (`models.traffic.USAGE_SCHEMA`), in time order unless `ordered=False`.

    Without `attribution` the provider, model, team and project columns are left out: a replay needs none
    of them, and ten million strings cost more to read than every number of the row together.
    """
    names = [n for n in USAGE_SCHEMA if attribution or n not in ATTRIBUTION]
    where, params = selection.where()
    order = " ORDER BY ts" if ordered else ""
    sql = f"SELECT {_columns(names)} FROM usage WHERE {where}{order}"
    with open_usage(path) as usage:
        frame = usage.frame(sql, params)
    return frame.select(pl.col(name).cast(USAGE_SCHEMA[name]) for name in names)


def read_traffic(
    path: StoreLike,
    selection: UsageFilter = UsageFilter(),
    *,
    latency: Latency | None = None,
    bucket_s: int | None = None,
    attribution: bool = False,
) -> Traffic:
    """Stored usage as replayable traffic (aggregated rows spread over their buckets), sorted in polars."""
    rows = read_usage(path, selection, attribution=attribution, ordered=False)
    return traffic_from_usage(rows, latency=latency, bucket_s=bucket_s)


def read_demand(path: StoreLike, selection: UsageFilter = UsageFilter(), every_s: int = 60) -> pl.DataFrame:
    """Recorded demand per second (`every_s=1`) or per minute (60) for a period: `at`, `requests`,
    `input_tokens`, `cached_input_tokens`, `output_tokens`, `tokens`."""
    return demand_series(read_traffic(path, selection), every_s)


def usage_span(path: StoreLike, selection: UsageFilter = UsageFilter()) -> tuple[datetime, datetime] | None:
    """The first and last stored request time in the selection, or None if it holds none."""
    with open_usage(path) as usage:
        source, params = rollups.covering(usage, rollups.spend_rollup(selection), selection)
        rows = usage.rows(f"SELECT min(first_ts), max(last_ts) FROM {source}", params)
    if not rows or rows[0][0] is None:
        return None
    return rows[0][0], rows[0][1]
