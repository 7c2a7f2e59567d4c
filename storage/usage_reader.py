"""One way for a named read to query usage, whichever engine holds it.

`open_usage(store)` gives a `UsageReader`: the DuckDB file read-only for the read (`storage.db.open_read`),
or the store's ClickHouse, where the same query text (DuckDB's SQL, `?` parameters) is rendered by
`storage.dialect` and usage is read `FINAL`. A read writes its query once and never asks which engine runs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import duckdb
import polars as pl

from storage.db import open_read, query_frame
from storage.store import StoreLike, as_store

__all__ = ["UsageReader", "open_usage"]


class UsageReader(Protocol):
    engine: Literal["duckdb", "clickhouse"]
    # the DuckDB connection when usage is in the DuckDB file (for what only it has: its rollups), else None
    duckdb: duckdb.DuckDBPyConnection | None

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """The query's result as a polars frame (DuckDB's column types on either engine)."""
        ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The query's result rows as tuples."""
        ...

    def columns(self, table: str) -> set[str]:
        """The columns `table` has on this engine."""
        ...


class _DuckDBReader:
    engine: Literal["duckdb", "clickhouse"] = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.duckdb: duckdb.DuckDBPyConnection | None = con

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        return query_frame(self.con, sql, params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()

    def columns(self, table: str) -> set[str]:
        found = self.con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table])
        return {row[0] for row in found.fetchall()}


class _ClickHouseReader:
    engine: Literal["duckdb", "clickhouse"] = "clickhouse"

    def __init__(self, store: Any) -> None:
        self.store = store
        self.duckdb: duckdb.DuckDBPyConnection | None = None

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        frame: pl.DataFrame = self.store.frame(sql, params)
        return frame

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.frame(sql, params).rows()

    def columns(self, table: str) -> set[str]:
        layout = self.store.layout
        found = self.store.arrow(
            "SELECT name FROM system.columns "
            f"WHERE database = '{layout.database}' AND table = '{layout.local(table)}'"
        )
        return set(found.column("name").to_pylist())


@contextmanager
def open_usage(store: StoreLike) -> Iterator[UsageReader]:
    """A reader of the store's usage for one read (or a few queries of one read)."""
    store = as_store(store)
    if store.clickhouse is None:
        with open_read(store.db) as con:
            yield _DuckDBReader(con)
        return
    from storage.clickhouse import connect  # chdb and clickhouse-connect load only for a ClickHouse store

    yield _ClickHouseReader(connect(store.clickhouse))
