"""Ingest into either store: every record accounted for per file (read = stored + duplicates + rejected), a
re-run stores nothing twice, and ClickHouse's own exactly-once guards (insert tokens, FINAL reads) hold."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from storage.clickhouse import connect
from storage.db import open_read
from storage.reports import UsageFilter, spend_report
from storage.store import ClickHouseTarget, Store
from storage.usage_reader import open_usage
from tests.collectors.ingest_support import SAMPLES, catalog, identity_holds, ingest, totals


def _file_with_repeats_and_rejects(tmp_path: Path) -> Path:
    lines = (SAMPLES / "deepseek.jsonl").read_text().splitlines()
    log = tmp_path / "mixed.jsonl"
    # every record, the first again (a duplicate), a broken line and a line with no usage (rejects)
    log.write_text("\n".join([*lines, lines[0], lines[1][:30], '{"id": "x"}']) + "\n")
    return log


def _sources(store: Store) -> list[tuple[int, int, int, int]]:
    with open_read(store.db) as con:
        return con.execute(
            "SELECT rows_read, rows_stored, rows_duplicate, rows_rejected FROM sources ORDER BY rowid"
        ).fetchall()


def test_every_record_is_accounted_for_and_a_rerun_stores_nothing_twice(store: Store, tmp_path: Path) -> None:
    log = _file_with_repeats_and_rejects(tmp_path)
    (first,) = ingest(store, log)
    records = len((SAMPLES / "deepseek.jsonl").read_text().splitlines())
    assert identity_holds(first)
    assert (first.counts.read, first.counts.stored, first.counts.duplicates, first.counts.rejected) == (
        records + 3,
        records,
        1,
        2,
    )
    stored = totals(store)
    assert stored["rows"] == records
    (again,) = ingest(store, log)
    assert identity_holds(again)
    assert (again.counts.stored, again.counts.duplicates, again.counts.rejected) == (0, records + 1, 2)
    assert totals(store) == stored
    # the per-file bookkeeping stays in the DuckDB file on either store, the same identity in every run
    assert _sources(store) == [(records + 3, records, 1, 2), (records + 3, 0, records + 1, 2)]


def test_every_sample_format_prices_the_same_to_the_cent_on_both_stores(
    chdb_folder: Path, tmp_path: Path
) -> None:
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jsonl", ".json", ".csv"))
    duck = Store(tmp_path / "duck.duckdb")
    chdb = Store(
        tmp_path / "beside.duckdb", ClickHouseTarget("chdb", database="same_spend", path=chdb_folder)
    )
    assert chdb.clickhouse is not None
    connect(chdb.clickhouse).command("TRUNCATE TABLE same_spend.usage")
    reports = []
    for store in (duck, chdb):
        results = ingest(store, *files)
        assert all(identity_holds(r) for r in results)
        reports.append(
            [r.to_json() for r in spend_report(store, catalog(), UsageFilter(), ("provider", "model", "day"))]
        )
    assert reports[0] and reports[0] == reports[1]


@pytest.fixture
def chdb_store(chdb_folder: Path, tmp_path: Path) -> Store:
    return Store(tmp_path / "q.duckdb", ClickHouseTarget("chdb", database="exactly_once", path=chdb_folder))


def test_a_retried_insert_is_dropped_by_its_token_and_a_copy_counts_once(chdb_store: Store) -> None:
    assert chdb_store.clickhouse is not None
    clickhouse = connect(chdb_store.clickhouse)
    clickhouse.command("TRUNCATE TABLE exactly_once.usage")
    rows = pa.table(
        {
            "source_id": pa.array([1, 1], pa.int64()),
            "record_key": ["a", "b"],
            "ts": pa.array([1_741_600_000_000_000, 1_741_600_001_000_000], pa.timestamp("us")),
            "model": ["deepseek-chat", "deepseek-chat"],
            "provider": ["deepseek", "deepseek"],
            "input_tokens": pa.array([100, 200], pa.int64()),
            "output_tokens": pa.array([10, 20], pa.int64()),
        }
    )
    clickhouse.insert("usage", rows, token="batch-1")
    clickhouse.insert("usage", rows, token="batch-1")  # a retry after a lost answer: dropped
    raw = clickhouse.arrow("SELECT count() AS n FROM exactly_once.usage").to_pylist()
    assert raw == [{"n": 2}]
    clickhouse.insert("usage", rows, token="batch-2")  # the same records again under another token
    raw = clickhouse.arrow("SELECT count() AS n FROM exactly_once.usage").to_pylist()
    assert raw == [{"n": 4}]  # not merged yet...
    assert (
        totals(chdb_store)["rows"] == 2 and totals(chdb_store)["input_tokens"] == 300
    )  # ...but read FINAL: once
    with open_usage(chdb_store) as usage:
        assert usage.rows("SELECT sum(input_tokens) FROM usage") == [(300,)]
