"""The write path's rollups when a batch's text keys reach them as codes (`storage.rollups.coded`): every
rollup still equals its definition run over the stored rows, whatever the keys hold (NULLs, one value, many,
more distinct values than are coded), in large batches (summed from the finer rollup) and small ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from storage import rollups
from storage.usage import SourceRun, store_batch

START = datetime(2026, 3, 31, 22, 0)  # a batch that crosses a month's end and many half hours


def rows(count: int, first: int, *, many_keys: bool) -> pa.Table:
    """`count` usage rows with text keys of every shape: a provider that is NULL on some rows, a team of
    one value, projects NULL on all rows, and (`many_keys`) key ids of more distinct values than coded."""
    n = range(first, first + count)
    key_ids = [f"key-{i}" if many_keys else f"key-{i % 3}" for i in n]
    return pa.table(
        {
            "record_key": [f"r-{i}" for i in n],
            "line_no": pa.array(list(n), pa.int64()),
            "ts": pa.array([START + timedelta(seconds=7 * i) for i in n], pa.timestamp("us")),
            "provider": [None if i % 11 == 0 else ("openai", "anthropic", "deepseek")[i % 3] for i in n],
            "model": [f"model-{i % 5}" for i in n],
            "team": ["search"] * count,
            "project": pa.array([None] * count, pa.string()),
            "key_id": key_ids,
            "endpoint": [("chat", "responses")[i % 2] for i in n],
            "service_tier": [None if i % 4 else "flex" for i in n],
            "n_requests": pa.array([1] * count, pa.int64()),
            "input_tokens": pa.array([50 + (i * 37) % 300_000 for i in n], pa.int64()),
            "cached_input_tokens": pa.array([(i * 13) % 40 for i in n], pa.int64()),
            "output_tokens": pa.array([1 + i % 900 for i in n], pa.int64()),
            "reasoning_tokens": pa.array([i % 7 for i in n], pa.int64()),
            "ttft_ms": pa.array([None if i % 2 else 100.0 + i % 50 for i in n], pa.float64()),
            "latency_ms": pa.array([400.0 + i % 300 for i in n], pa.float64()),
        }
    )


def test_coded_keys_keep_their_values_and_nulls() -> None:
    table = rows(50, 0, many_keys=False)
    coded = rollups.coded(table)
    assert set(coded.values) == {"provider", "model", "team", "key_id", "endpoint", "service_tier"}
    for name, values in coded.values.items():  # every code points back at the row's own text
        decoded = [None if c is None else values[c] for c in coded.table.column(name).to_pylist()]
        assert decoded == table.column(name).to_pylist(), name
    assert coded.table.column("project").to_pylist() == [None] * 50  # nothing to code: left as it is
    many = rollups.coded(rows(rollups.CODED_MAX_VALUES + 1, 0, many_keys=True))
    assert "key_id" not in many.values and pa.types.is_string(many.table.column("key_id").type)


@pytest.mark.parametrize("sizes", [(30_000, 25_000), (700, 300, 5)], ids=["summed from the finer", "small"])
def test_rollups_of_coded_batches_equal_their_definition(tmp_path: Path, sizes: tuple[int, ...]) -> None:
    db = tmp_path / "q.duckdb"
    run = SourceRun("otlp://test", 0, "otlp", {}, START)
    first = 0
    for many_keys, size in zip([True, False, True], sizes, strict=False):
        run, counts = store_batch(db, run, [rows(size, first, many_keys=many_keys)], [])
        assert counts.stored == size
        first += size
    con = duckdb.connect(str(db), read_only=True)
    try:
        differing = {r.name: rollups.rederived_difference(con, r) for r in rollups.ROLLUPS}
        teams = con.execute("SELECT DISTINCT team FROM rollup_spend").fetchall()
        providers = con.execute("SELECT DISTINCT provider FROM rollup_profile_bins_input_tokens").fetchall()
    finally:
        con.close()
    assert differing == dict.fromkeys(differing, 0)
    assert teams == [("search",)]
    assert set(providers) == {("anthropic",), ("deepseek",), ("openai",), (None,)}
