"""What settling racing writers' copies costs a ClickHouse store (`storage.settle`), in chdb, each beside a
reference measured in the same run:

- write: a batch's insert with the insert log's view (`usage_inserts`, ClickHouse migration 9), beside the
  same insert with that view dropped; the batch's count of the copies of the keys it just inserted
  (`settle`, a read of the log by its primary key), beside the lookup of the same keys every batch makes
  before inserting (usage through the record key's bloom filter);
- read: `quotascope report spend --by team,model` and the token profiles as the reports read them (every
  rollup read less the surplus copies: `storage.settle.corrected`), beside the same reads of the rollup
  tables as they are (what a read cost before), with no surplus copy and with 1,000 settled;
- the periodic count (`settle_recent`, `quotascope schedule` every 5 minutes) over the last day, when all
  rows are a day old (an ordinary run) and when every row was inserted in it (the worst case), beside one
  full scan of usage (`count()`, `sum(input_tokens)`).

    .venv/bin/python benchmarks/settle.py [--rows 2000000] [--batch 100000] [--runs 5]

A month of requests is inserted through `ClickHouse.insert` (as ingests insert it) into a chdb folder
under /tmp, deleted afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from storage import rollups  # noqa: E402
from storage.clickhouse import ClickHouse, connect  # noqa: E402
from storage.profiles import read_usage_profiles  # noqa: E402
from storage.replay import UsageFilter  # noqa: E402
from storage.reports import spend_report  # noqa: E402
from storage.settle import INSERTS_TABLE, RECENT, settle, settle_keys, settle_recent  # noqa: E402
from storage.store import ClickHouseTarget, Store  # noqa: E402
from storage.usage import _clickhouse_stored_keys  # noqa: E402

START = datetime(2026, 11, 1)
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("deepseek", "deepseek-chat"))
TEAMS = ("search", "checkout", "support", "growth")


def _rows(first: int, count: int, source: int) -> pa.Table:
    rng = np.random.default_rng(first)
    seconds = (np.arange(first, first + count) * (30 * 86_400 // max(first + count, 1))).astype("int64")
    pick = rng.integers(0, len(MODELS), count)
    return pa.table(
        {
            "source_id": pa.array(np.full(count, source), pa.int64()),
            "record_key": pa.array([f"chatcmpl-{n:024d}" for n in range(first, first + count)]),
            "line_no": pa.array(np.arange(1, count + 1), pa.int64()),
            "ts": pa.array(
                [START + timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC")
            ),
            "provider": pa.array([MODELS[i][0] for i in pick]),
            "model": pa.array([MODELS[i][1] for i in pick]),
            "team": pa.array([TEAMS[i] for i in rng.integers(0, len(TEAMS), count)]),
            "n_requests": pa.array(np.ones(count, "int64")),
            "input_tokens": pa.array(rng.integers(100, 20_000, count), pa.int64()),
            "cached_input_tokens": pa.array(np.zeros(count, "int64")),
            "cache_write_tokens": pa.array(np.zeros(count, "int64")),
            "output_tokens": pa.array(rng.integers(10, 2_000, count), pa.int64()),
            "reasoning_tokens": pa.array(np.zeros(count, "int64")),
            "ttft_ms": pa.array(rng.integers(100, 2_000, count).astype("float64")),
            "billed_cost": pa.nulls(count, pa.decimal128(20, 10)),
            "billed_currency": pa.nulls(count, pa.string()),
            "tags": pa.array([[]] * count, pa.map_(pa.string(), pa.string())),
        }
    )


def _inserts(clickhouse: ClickHouse, first: int, size: int, runs: int) -> Callable[[], None]:
    """Each call inserts the next of `runs` batches of `size` new requests (keys from `first` on), made
    before any is timed."""
    batches = iter([_rows(first + n * size, size, 3) for n in range(runs)])
    tokens = iter(range(runs))

    def insert() -> None:
        clickhouse.insert("usage", next(batches), token=f"bench-insert-{first}-{next(tokens)}")

    return insert


def _median(runs: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _line(label: str, seconds: float, reference: float, ref_label: str) -> None:
    print(
        f"  {label:<44} {seconds * 1000:9.1f} ms   {ref_label} {reference * 1000:9.1f} ms   "
        f"ratio {seconds / reference:5.2f}x"
    )


def _reads(store: Store, runs: int) -> tuple[float, float]:
    """The reports' reads as they are (less the surplus), and of the rollup tables as they are."""
    from report_spend import catalog_toml

    from storage.catalog import read_catalog_file

    path = store.db.parent / "catalog.toml"
    path.write_text(catalog_toml())
    catalog = read_catalog_file(path)

    def read() -> None:
        spend_report(store, catalog, UsageFilter(), ("team", "model"))
        read_usage_profiles(store, UsageFilter(), ("provider", "model"))

    stored = rollups._stored
    as_stored: Callable[..., str] = lambda usage, rollup: rollup.name  # noqa: E731
    timings: dict[str, list[float]] = {"corrected": [], "plain": []}
    read()  # warm: the first read of a process compiles what every later one reuses
    for _ in range(runs):  # alternated, so neither gains from the other's warm caches
        for name, choice in (("corrected", stored), ("plain", as_stored)):
            rollups._stored = choice
            try:
                timings[name].append(_median(1, read))
            finally:
                rollups._stored = stored
    corrected, plain = (statistics.median(timings[n]) for n in ("corrected", "plain"))
    return corrected, plain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qs-settle-"))
    try:
        store = Store(work / "beside.duckdb", ClickHouseTarget("chdb", database="settle", path=work / "ch"))
        assert store.clickhouse is not None
        clickhouse: ClickHouse = connect(store.clickhouse)
        began = time.perf_counter()
        for first in range(0, args.rows, 500_000):
            part = _rows(first, min(500_000, args.rows - first), 1)
            clickhouse.insert("usage", part, token=f"bench-{first}")
        print(f"{args.rows:,} requests inserted in {time.perf_counter() - began:.1f} s")

        logged = _median(args.runs, _inserts(clickhouse, args.rows, args.batch, args.runs))
        view = f"settle.{INSERTS_TABLE}_mv"
        definition = clickhouse.arrow(f"SHOW CREATE TABLE {view}").column(0)[0].as_py()
        clickhouse.command(f"DROP VIEW {view}")
        try:
            bare = _median(args.runs, _inserts(clickhouse, args.rows * 2, args.batch, args.runs))
        finally:
            clickhouse.command(definition)
        print(f"write: a batch of {args.batch:,} requests")
        _line("insert, with the insert log's view", logged, bare, "without it")

        batch = _rows(args.rows // 2, args.batch, 1)
        keys = batch.select(["record_key"])
        lo, hi = START - timedelta(days=7), START + timedelta(days=38)
        lookup = _clickhouse_stored_keys(clickhouse)
        looked = _median(args.runs, lambda: lookup(keys, lo, hi))
        counted = _median(args.runs, lambda: settle(clickhouse, keys, lo, hi))
        _line("count of its copies after the insert", counted, looked, "lookup before it")

        scan = _median(
            args.runs, lambda: clickhouse.arrow("SELECT count(), sum(input_tokens) FROM settle.usage")
        )
        print("read: spend by team and model + profiles by provider and model")
        corrected, plain = _reads(store, args.runs)
        _line("less the surplus (no surplus copy)", corrected, plain, "rollups as stored")
        again = _rows(args.rows // 3, 1_000, 2)  # a thousand requests stored twice, settled
        clickhouse.insert("usage", again, token="bench-again")
        settle_keys(clickhouse, again.column("record_key").to_pylist(), lo, hi)
        corrected, plain = _reads(store, args.runs)
        _line("less the surplus (1,000 copies settled)", corrected, plain, "rollups as stored")

        print("periodic count over the last day (settle_recent)")
        since = datetime.now(UTC) - RECENT
        every = _median(args.runs, lambda: settle_recent(clickhouse, since))
        _line("every row inserted in the last day", every, scan, "full scan")
        later = datetime.now(UTC) + timedelta(minutes=1)  # as a day later: no row is recent
        none = _median(args.runs, lambda: settle_recent(clickhouse, later))
        _line("no row inserted in the last day", none, scan, "full scan")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
