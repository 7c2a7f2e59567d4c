"""Named reads for replays on a real DuckDB file."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from storage.db import DatabaseMissingError, open_read
from storage.replay import UsageFilter, read_demand, read_traffic, read_usage, usage_span
from storage.store import Store, as_store
from tests.storage.usage_rows import insert_usage

NINE = datetime(2026, 11, 2, 9)


@pytest.fixture
def db(store: Store) -> Store:
    path = store
    insert_usage(
        path,
        [
            {"ts": NINE + timedelta(seconds=2), "input_tokens": 100, "output_tokens": 10, "team": "a"},
            {"ts": NINE, "input_tokens": 200, "cached_input_tokens": 64, "output_tokens": 20, "team": "b"},
            # an export's per-minute buckets: 120 requests over 09:01, 60 over 09:02
            {
                "ts": NINE + timedelta(minutes=1),
                "n_requests": 120,
                "input_tokens": 1200,
                "output_tokens": 600,
                "source_id": 2,
                "provider": "openai",
                "model": "o1",
            },
            {
                "ts": NINE + timedelta(minutes=2),
                "n_requests": 60,
                "input_tokens": 600,
                "output_tokens": 0,
                "source_id": 2,
                "provider": "openai",
                "model": "o1",
            },
        ],
    )
    return path


def test_usage_rows_in_time_order_with_filters(db: Path) -> None:
    rows = read_usage(db)
    assert rows["ts"].to_list()[:2] == [NINE, NINE + timedelta(seconds=2)]
    assert rows["n_requests"].to_list() == [1, 1, 120, 60]
    assert read_usage(db, UsageFilter(team="a"))["input_tokens"].to_list() == [100]
    assert read_usage(db, UsageFilter(provider="openai", since=NINE + timedelta(minutes=2))).height == 1
    assert read_usage(db, UsageFilter(until=NINE)).height == 0


def test_demand_per_minute_and_per_second_spreads_buckets(db: Path) -> None:
    per_minute = read_demand(db)
    assert per_minute["at"].to_list() == [NINE + timedelta(minutes=m) for m in range(3)]
    assert per_minute["requests"].to_list() == [2, 120, 60]
    assert per_minute["total_tokens"].to_list() == [330, 1800, 600]
    assert per_minute["cached_input_tokens"].to_list() == [64, 0, 0]
    per_second = read_demand(db, UsageFilter(provider="openai"), every_s=1)
    # 120 requests in a 60-second bucket: two a second, 30 tokens each second
    assert per_second.height == 120
    assert set(per_second.filter(per_second["at"] < NINE + timedelta(minutes=2))["requests"].to_list()) == {
        2.0
    }
    assert per_second["total_tokens"].sum() == 2400


def test_traffic_and_span(db: Path) -> None:
    traffic = read_traffic(db)
    with open_read(as_store(db).db) as con:  # the second source's id (random on a ClickHouse store)
        second = con.execute("SELECT source_id FROM sources ORDER BY rowid").fetchall()[1][0]
    assert traffic.requests == 182 and traffic.aggregated_rows == 2 and traffic.bucket_s == {second: 60}
    assert usage_span(db) == (NINE, NINE + timedelta(minutes=2))
    assert usage_span(db, UsageFilter(team="nobody")) is None


def test_a_missing_database_names_what_fills_it(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissingError, match="quotascope ingest"):
        read_usage(tmp_path / "nothing.duckdb")
