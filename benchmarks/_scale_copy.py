"""The usage rows of a DuckDB file copied into a ClickHouse store's usage table (benchmarks/scale.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

BATCH_ROWS = 1_000_000


def copy_usage(db: Path, url: str) -> int:
    """Insert the generated usage rows of `db` (source 1: not what the benchmark ingested) into the store
    `url` names, a million at a time; returns the rows."""
    from storage.clickhouse import connect
    from storage.store import parse_store

    store = parse_store(url, db)
    assert store.clickhouse is not None
    clickhouse = connect(store.clickhouse)
    copied = 0
    with duckdb.connect(str(db), read_only=True) as con:
        # a relation streams its batches (`execute` would hold all 100M rows in memory first)
        reader = con.sql("SELECT * FROM usage WHERE source_id = 1").fetch_arrow_reader(BATCH_ROWS)
        for number, batch in enumerate(reader):
            clickhouse.insert("usage", pa.Table.from_batches([batch]), token=f"scale-bench-{number}")
            copied += batch.num_rows
    return copied
