"""Shared helpers for the ingestion tests: the sample logs, the test catalog, and reading a real database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from collectors.ingest import FileResult, IngestOptions, ingest_paths
from models.catalog import Catalog
from models.traffic import TOKEN_COLUMNS
from storage.catalog import read_catalog_file
from storage.store import StoreLike
from storage.usage_reader import open_usage

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "usage"
CATALOG_FILE = SAMPLES / "catalog.toml"
SALT = "test-salt"


def catalog() -> Catalog:
    return read_catalog_file(CATALOG_FILE)


def ingest(
    db: StoreLike,
    *paths: Path,
    fmt: str = "auto",
    tags: Mapping[str, str] | None = None,
    csv_map: Mapping[str, str] | None = None,
    **options: Any,
) -> list[FileResult]:
    return ingest_paths(
        db,
        list(paths),
        salt=SALT,
        tags=tags,
        options=IngestOptions(format=fmt, csv_map=dict(csv_map or {}), **options),
    )


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def totals(db: StoreLike, where: str = "TRUE") -> dict[str, int]:
    """Rows, requests and tokens stored in the store's usage (DuckDB file or ClickHouse, read FINAL)."""
    with open_usage(db) as usage:
        (row,) = usage.rows(
            f"""SELECT count(*), coalesce(sum(n_requests), 0), coalesce(sum(input_tokens), 0),
            coalesce(sum(cached_input_tokens), 0), coalesce(sum(cache_write_tokens), 0),
            coalesce(sum(output_tokens), 0), coalesce(sum(reasoning_tokens), 0) FROM usage WHERE {where}"""
        )
    names = ("rows", "requests", *TOKEN_COLUMNS)  # the usage columns summed, by their own names
    return dict(zip(names, (int(v) for v in row), strict=True))


def identity_holds(result: FileResult) -> bool:
    c = result.counts
    return c.read == c.stored + c.duplicates + c.rejected
