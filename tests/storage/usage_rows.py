"""Writing usage rows straight into a real DuckDB file, as ingestion would store them (tests only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from storage import rollups
from storage.db import open_write

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


def insert_usage(db: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert canonical usage rows in one batch; missing columns take ingestion's defaults or NULL."""
    values = []
    for n, row in enumerate(rows):
        full = {**DEFAULTS, "record_key": f"test-{n}", **row}
        values.append([full.get(column) for column in COLUMNS])
    placeholders = ", ".join("?" for _ in COLUMNS)
    with open_write(db) as con:
        start = con.execute("SELECT count(*) FROM usage").fetchone()
        offset = int(start[0]) if start else 0
        for value in values:
            value[1] = f"{value[1]}-{offset}"
        present = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'usage'"
            ).fetchall()
        }
        con.execute("CREATE TEMP TABLE incoming AS SELECT " + ", ".join(COLUMNS) + " FROM usage LIMIT 0")
        con.executemany(f"INSERT INTO incoming VALUES ({placeholders})", values)
        # ingestion's dedupe hash, where the schema has it
        extra = ", md5_number_lower(record_key) AS key_hash" if "key_hash" in present else ""
        con.execute(f"INSERT INTO usage BY NAME SELECT *{extra} FROM incoming")
        con.execute("DROP TABLE incoming")
        rollups.rebuild(con)  # what a bulk load does after writing usage rows itself
    return len(values)
