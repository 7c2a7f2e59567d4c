"""Writing usage rows into a real store (a DuckDB file or chdb) the way ingestion stores them (tests only)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from storage.store import StoreLike
from storage.usage import SourceRun, store_batch

COLUMNS = (
    "source_id",
    "record_key",
    "ts",
    "provider",
    "model",
    "team",
    "project",
    "key_id",
    "n_requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "ttft_ms",
    "latency_ms",
    "status",
    "billed_cost",
    "billed_currency",
)
DEFAULTS: dict[str, Any] = {
    "source_id": 1,
    "provider": "deepseek",
    "model": "deepseek-reasoner",
    "n_requests": 1,
    "cached_input_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
}


TYPES: dict[str, pa.DataType] = {
    "source_id": pa.int64(),
    "ts": pa.timestamp("us"),
    "n_requests": pa.int64(),
    "input_tokens": pa.int64(),
    "cached_input_tokens": pa.int64(),
    "cache_write_tokens": pa.int64(),
    "output_tokens": pa.int64(),
    "reasoning_tokens": pa.int64(),
    "ttft_ms": pa.float64(),
    "latency_ms": pa.float64(),
    "billed_cost": pa.decimal128(20, 10),
}
_serial = itertools.count(1)


def insert_usage(store: StoreLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Store canonical usage rows through ingestion's own write path (`store_batch`), into whichever store
    `store` is; missing columns take ingestion's defaults or NULL. Rows are stored one batch per `source_id`
    they name, in its order (so a fresh store numbers the sources as the rows do). Every row gets a key of
    its own (a given `record_key` is made unique too), so none is taken for a duplicate."""
    rows = [{**DEFAULTS, **row} for row in rows]
    for source in sorted({row["source_id"] for row in rows}):
        _store_batch(store, [row for row in rows if row["source_id"] == source])
    return len(rows)


def _store_batch(store: StoreLike, rows: list[dict[str, Any]]) -> None:
    columns = [c for c in COLUMNS if c != "source_id"]

    def values(column: str) -> list[Any]:
        if column == "record_key":
            return [f"{row.get(column, 'test')}-{next(_serial)}" for row in rows]
        if column == "billed_cost":  # a float given for money is read as its shortest decimal
            return [None if row.get(column) is None else Decimal(str(row[column])) for row in rows]
        return [row.get(column) for row in rows]

    table = pa.table(
        {
            "line_no": pa.array(range(1, len(rows) + 1), pa.int64()),
            **{column: pa.array(values(column), TYPES.get(column, pa.string())) for column in columns},
        }
    )
    run = SourceRun("test rows", 0, "test", {}, datetime(2025, 1, 1))
    _, counts = store_batch(store, run, [table], [])
    assert counts.stored == len(rows), counts
