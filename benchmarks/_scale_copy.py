"""The usage rows of a DuckDB file copied into a ClickHouse store's usage table (benchmarks/scale.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

BATCH_ROWS = 1_000_000


def batches(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    """The reader's batches gathered into tables of at least `rows` rows (the last one fewer): DuckDB's
    reader hands out one row group (122,880 rows) at a time whatever batch size it is asked for, and each
    ClickHouse insert writes a part and runs every rollup's materialized view once; 2M rows took 33 s in
    500k-row inserts here and 3M rows 31 s in 1M-row ones. Only one table's rows are held at a time."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in reader:
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield pa.Table.from_batches(pending)
            pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


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
        reader = con.sql("SELECT * FROM usage WHERE source_id = 1").to_arrow_reader(BATCH_ROWS)
        for number, table in enumerate(batches(reader, BATCH_ROWS)):
            clickhouse.insert("usage", table, token=f"scale-bench-{number}")
            copied += table.num_rows
    return copied
