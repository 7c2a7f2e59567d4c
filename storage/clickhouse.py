"""ClickHouse as the usage store: a server through `clickhouse-connect`, or chdb's engine in this process.

One small adapter (`ClickHouse`) with what usage needs: run a query rendered from DuckDB's SQL
(`storage.dialect`), insert an Arrow batch with an insert deduplication token, and read a query that joins a
batch of keys sent along with it. Errors of either driver become `StorageError` here, with the URL as a
person can read it (no password: `storage.store` never holds one, and the driver's message does not echo it).

The usage table is a `ReplacingMergeTree` ordered by the common filters and time and partitioned by month
(`storage.clickhouse_schema`); every read of it is `FINAL`, so a record the table holds twice before a merge
counts once.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from storage.clickhouse_schema import MIGRATIONS, Layout, migrations_table
from storage.db import StorageError
from storage.dialect import clickhouse_sql
from storage.otel_traces import link_traces, store_link
from storage.settle import INSERTS_TABLE, SURPLUS_TABLE, as_inserted, settle_recent
from storage.store import PASSWORD_ENV, ClickHouseTarget

__all__ = ["ClickHouse", "connect", "plain_frame"]

# tables holding usage rows: read FINAL (the ReplacingMergeTree's duplicates not merged yet count once;
# a surplus copy recorded by several writers, once: `storage.settle`)
FINAL_TABLES = frozenset({"usage", SURPLUS_TABLE})
# what every query runs with, so that ClickHouse answers as DuckDB does: an aggregate over no rows is NULL
# (min, max, sum; not the type's default), an outer join's missing side is NULL, and a column's name means
# the column even where the query also names an expression so (`sum(input_tokens) AS input_tokens` beside
# `input_tokens / n_requests`: ClickHouse would otherwise read the sum there)
# and for every insert: a retried insert that usage drops by its token is dropped by every rollup view too
# (the default of recent servers; earlier ones pushed the repeat on to the views)
QUERY_SETTINGS = {
    "aggregate_functions_null_for_empty": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "join_use_nulls": 1,
    "prefer_column_name_to_alias": 1,
}
# how far the server's clock (a row's `inserted_at`) may be behind this one's
LINK_CLOCK_SLACK = timedelta(minutes=5)


class ClickHouse:
    """One open ClickHouse (server client or chdb connection) and the layout of its tables."""

    def __init__(self, target: ClickHouseTarget) -> None:
        self.target = target
        self.layout = Layout(target.database, target.cluster)
        self._lock = threading.Lock()  # chdb's connection runs one statement at a time
        self._client: Any = None
        self._chdb: Any = None
        if target.kind == "chdb":
            self._chdb = _chdb_connection(target)
            for name, value in QUERY_SETTINGS.items():
                self._chdb.query(f"SET {name} = {value}", "CSV")
        else:
            self._client = _server_client(target)

    def close(self) -> None:
        if self._chdb is not None:
            self._chdb.close()
        elif self._client is not None:
            self._client.close()

    # -------------------------------------------------------------------------------- statements

    def command(self, sql: str) -> None:
        """Run one ClickHouse statement (DDL, a mutation) for its effect."""
        with self._errors("running a statement"):
            if self._chdb is not None:
                with self._lock:
                    self._chdb.query(sql, "CSV")
            else:
                self._client.command(sql)

    def arrow(self, sql: str, attached: Mapping[str, pa.Table] | None = None) -> pa.Table:
        """A ClickHouse query's result; `attached` tables are readable by name while it runs (external
        data on a server, temporary tables in chdb)."""
        with self._errors("reading"):
            if self._chdb is not None:
                with self._lock:
                    return self._chdb_arrow(sql, attached or {})
            if attached:
                from clickhouse_connect.driver.external import ExternalData

                external = ExternalData()
                for name, table in attached.items():
                    external.add_file(file_name=name, data=_arrow_stream(table), fmt="ArrowStream")
                return self._client.query_arrow(sql, external_data=external, use_strings=True)
            return self._client.query_arrow(sql, use_strings=True)

    def _chdb_arrow(self, sql: str, attached: Mapping[str, pa.Table]) -> pa.Table:
        for name, table in attached.items():
            structure = ", ".join(f"{f.name} {_clickhouse_type(f.type)}" for f in table.schema)
            self._chdb.query(f"DROP TEMPORARY TABLE IF EXISTS {name}", "CSV")
            self._chdb.query(f"CREATE TEMPORARY TABLE {name} ({structure}) ENGINE = Memory", "CSV")
            self._chdb_insert(f"INSERT INTO {name}", table)
        try:
            result = self._chdb.query(sql, "ArrowTable")
        finally:
            for name in attached:
                self._chdb.query(f"DROP TEMPORARY TABLE IF EXISTS {name}", "CSV")
        return result if isinstance(result, pa.Table) else pa.table({})

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """A query written in DuckDB's SQL, rendered for ClickHouse, as a polars frame of DuckDB's types."""
        return plain_frame(self.arrow(self.render(sql, params)))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.frame(sql, params).rows()

    def render(
        self, sql: str, params: Sequence[Any] = (), *, final: bool = True, attached: Sequence[str] = ()
    ) -> str:
        """`sql` (DuckDB's dialect) for this ClickHouse: its tables in the store's database (but the
        `attached` ones), usage read `FINAL` unless `final=False`."""
        return clickhouse_sql(
            sql,
            params,
            final=FINAL_TABLES if final else (),
            database=self.layout.database,
            unqualified=attached,
        )

    def describe(self, sql: str) -> list[tuple[str, str]]:
        """The columns a ClickHouse query returns, with their ClickHouse types."""
        found = self.arrow(f"DESCRIBE ({sql})").to_pylist()
        return [(str(row["name"]), str(row["type"])) for row in found]

    def _render_unqualified_final(self, sql: str) -> str:
        return self.render(sql, final=False)

    def insert(self, table: str, data: pa.Table, *, token: str) -> None:
        """Insert `data` into `table` once: a retried insert with the same `token` is dropped by ClickHouse
        (insert deduplication; the table keeps a window of recent tokens). On a cluster the insert returns
        once the rows are on their shard (`insert_distributed_sync`), not queued on this node: the writer's
        count of the copies it just stored (`storage.settle`) must see them."""
        columns = ", ".join(data.column_names)
        settings: dict[str, str | int] = {"insert_deduplication_token": _token(token)}
        if self.layout.cluster:
            settings["insert_distributed_sync"] = 1
        with self._errors("writing"):
            if self._chdb is not None:
                given = ", ".join(f"{name} = {value!r}" for name, value in settings.items())
                with self._lock:
                    self._chdb_insert(
                        f"INSERT INTO {self.layout.qualified(table)} ({columns}) SETTINGS {given}", data
                    )
            else:
                self._client.insert_arrow(table, data, database=self.target.database, settings=settings)

    def _chdb_insert(self, statement: str, data: pa.Table) -> None:
        inserter = self._chdb.send_insert(statement, "ArrowStream")
        inserter.append(_arrow_stream(data))
        inserter.finish()

    def delete_usage(self, where: str) -> None:
        """Delete the usage rows `where` selects (SQL over a usage row, in either dialect) and recompute
        every rollup bucket they were in as its view would sum it now: from the rows left (`usage FINAL`)
        and the surplus copies left (`storage.settle`: every rollup read subtracts those), the surplus
        copies `where` selects deleted too, and the insert log's rows of them (a file ingested again is not
        a copy of its discarded rows). A materialized view sees inserts only, so a delete is the
        rollups' to follow here, as `storage.rollups.refresh` does in the DuckDB file. Synchronous: it
        returns when usage and the rollups hold the rows left. (Rows inserted into a touched bucket while it
        runs may be counted twice: a delete is for an operator's command, `quotascope ingest --discard`,
        `traces --relink`, not for a store taking inserts at that moment.)"""
        from storage import rollups

        layout = self.layout
        touched = {
            rollup: [
                row[0]
                for row in self.rows(
                    f"SELECT DISTINCT {rollup.bucket_sql} AS bucket FROM (SELECT ts FROM usage WHERE {where} "
                    f"UNION ALL SELECT ts FROM {SURPLUS_TABLE} WHERE {where})"
                )
            ]
            for rollup in rollups.ROLLUPS
        }
        sync = "SETTINGS mutations_sync = 2"
        for table in ("usage", SURPLUS_TABLE, INSERTS_TABLE):  # the log too: its copies are gone
            local = layout.qualified(layout.local(table))
            self.command(f"ALTER TABLE {local}{layout.on_cluster} DELETE WHERE {where} {sync}")
        for rollup, starts in touched.items():
            if not starts:
                continue
            buckets = self.render(f"SELECT * FROM t WHERE {rollups.one_of('bucket', starts)}", final=False)
            local = layout.qualified(layout.local(rollup.name))
            self.command(
                f"ALTER TABLE {local}{layout.on_cluster} DELETE {buckets[buckets.index('WHERE') :]} {sync}"
            )
            again = self.render(rollup.select(as_inserted(rollup, starts), rollups.SEED_BANDS))
            # not a repeat to drop: the same sums may well have been inserted before
            self.command(
                f"INSERT INTO {layout.qualified(rollup.name)} SETTINGS insert_deduplicate = 0 {again}"
            )

    # -------------------------------------------------------------------------------- schema

    def migrate(self) -> list[int]:
        """Apply every ClickHouse migration not applied yet (`storage.clickhouse_schema.MIGRATIONS`)."""
        self.command(f"CREATE DATABASE IF NOT EXISTS {self.layout.database}{self.layout.on_cluster}")
        for statement in migrations_table(self.layout):
            self.command(statement)
        done = {
            int(n)
            for n in self.arrow(f"SELECT number FROM {self.layout.qualified('schema_migrations')} FINAL")
            .column("number")
            .to_pylist()
        }
        applied = []
        for migration in MIGRATIONS:
            if migration.number in done:
                continue
            for statement in migration.statements(self.layout, self.describe, self._render_unqualified_final):
                self.command(statement)
            self.command(
                f"INSERT INTO {self.layout.qualified('schema_migrations')} (number, name) "
                f"VALUES ({migration.number}, '{migration.name}')"
            )
            applied.append(migration.number)
        return applied

    def data_version(self) -> tuple[int, ...]:
        """Changes whenever usage rows are written (or merged) or a surplus copy recorded: the parts of the
        usage and surplus tables, cluster-wide."""
        parts = "system.parts"
        if self.layout.cluster:
            parts = f"clusterAllReplicas('{self.layout.cluster}', system.parts)"
        found = self.arrow(
            "SELECT count() AS n, sum(rows) AS r, toUnixTimestamp(max(modification_time)) AS at "
            f"FROM {parts} "
            f"WHERE active AND database = '{self.layout.database}' "
            f"AND table IN ('{self.layout.local('usage')}', '{self.layout.local(SURPLUS_TABLE)}')"
        ).to_pylist()
        row = found[0] if found else {}
        return tuple(int(row.get(k) or 0) for k in ("n", "r", "at"))

    # -------------------------------------------------------------------------------- errors

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except Exception as e:  # either driver's own exception classes; never shown as a traceback
            if not _driver_error(e):
                raise
            raise StorageError(f"{doing} ClickHouse {self.target.display()} failed: {_first_line(e)}") from e


def _driver_error(error: Exception) -> bool:
    module = type(error).__module__ or ""
    return module.startswith(("chdb", "clickhouse_connect", "urllib3")) or isinstance(
        error, RuntimeError | OSError
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    password = os.environ.get(PASSWORD_ENV)
    if password:
        line = line.replace(password, "***")
    return line[:300]


def _token(token: str) -> str:
    return "".join(c for c in token if c.isalnum() or c in ":-_.")


def _arrow_stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _clickhouse_type(kind: pa.DataType) -> str:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "String"
    if pa.types.is_integer(kind):
        return "Int64"
    if pa.types.is_timestamp(kind):
        return "DateTime64(6, 'UTC')"
    raise TypeError(f"cannot attach a column of {kind}")


def plain_frame(table: pa.Table) -> pl.DataFrame:
    """A ClickHouse result in the types DuckDB gives the same query: naive UTC timestamps, signed integers."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            column = pc.cast(column, pa.timestamp(kind.unit))  # values are UTC instants: drop the zone
        elif pa.types.is_unsigned_integer(kind):
            column = pc.cast(column, pa.int64())
        elif pa.types.is_dictionary(kind):
            column = pc.cast(column, kind.value_type)
        columns.append(column)
    frame = pl.from_arrow(pa.table(columns, names=table.column_names))
    assert isinstance(frame, pl.DataFrame)
    return frame


# ------------------------------------------------------------------------------------------ connections

_connections: dict[ClickHouseTarget, ClickHouse] = {}
_connections_lock = threading.Lock()


def connect(target: ClickHouseTarget) -> ClickHouse:
    """The process's connection to `target`, migrated on first use (kept open: chdb's engine starts once per
    process, and a server client keeps its HTTP pool). A database holding the OpenTelemetry Collector's
    `otel_traces` gets the views that read its spans as usage (`storage.otel_traces`), once."""
    with _connections_lock:
        found = _connections.get(target)
        if found is None:
            if target.kind == "chdb":  # chdb runs one data folder per process: another one closes it first
                for other in [t for t in _connections if t.kind == "chdb" and t.path != target.path]:
                    _connections.pop(other).close()
            found = ClickHouse(target)
            found.migrate()
            started = datetime.now(UTC)
            if link_traces(found, store_link(found.layout)) in ("linked", "relinked"):
                # the copy of what otel_traces held may have raced an ingest elsewhere (`storage.settle`)
                settle_recent(found, started - LINK_CLOCK_SLACK)
            _connections[target] = found
        return found


def _chdb_connection(target: ClickHouseTarget) -> Any:
    try:
        import chdb
    except ImportError as e:  # pragma: no cover - the extra is part of `make test`
        raise StorageError("a chdb:// store needs chdb: pip install 'quotascope[clickhouse]'") from e
    assert target.path is not None
    try:
        target.path.mkdir(parents=True, exist_ok=True)
        return chdb.connect(str(target.path))  # type: ignore[no-untyped-call]
    except Exception as e:
        raise StorageError(
            f"cannot open the chdb store {target.display()}: {_first_line(e)} (chdb serves one data folder "
            "to one process at a time; share a ClickHouse server between processes)"
        ) from e


def _server_client(target: ClickHouseTarget) -> Any:
    try:
        import clickhouse_connect
    except ImportError as e:  # pragma: no cover - the extra is part of `make test`
        raise StorageError(
            "a clickhouse:// store needs clickhouse-connect: pip install 'quotascope[clickhouse]'"
        ) from e
    try:
        return clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.user,
            password=os.environ.get(PASSWORD_ENV, ""),
            database=target.database,
            secure=target.secure,
            # queries of several threads (the dashboard) share the client: no server session to collide in
            autogenerate_session_id=False,
            settings=QUERY_SETTINGS,
        )
    except Exception as e:
        raise StorageError(f"cannot connect to ClickHouse {target.display()}: {_first_line(e)}") from e


def _close_all() -> None:
    """Close every connection (tests that start over)."""
    with _connections_lock:
        for connection in _connections.values():
            connection.close()
        _connections.clear()
