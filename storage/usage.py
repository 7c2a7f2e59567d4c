"""Usage writes: store normalised batches once each, in one transaction per batch.

`store_batch` opens the database for one write transaction: it skips records already stored (by
`record_key`), inserts the rest and the rejects, and updates the source's counts, all or nothing — so a
killed ingest leaves the database as it was before the batch, and re-running completes it.
Normalising (parsing and checking records) happens before, without the database: `storage.normalise`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from models.catalog import Catalog
from models.outside_text import redact_secrets
from models.usage_record import SAME_REQUEST_WITHIN
from storage import rollups
from storage.db import WriteSession, one_thread, open_write, scalar
from storage.normalise import IngestContext, Normalised, Normaliser, Reject
from storage.store import Store, StoreLike, as_store

if TYPE_CHECKING:
    import polars as pl

    from storage.clickhouse import ClickHouse

__all__ = [
    "RECEIVER_FORMAT",
    "ROW_GROUP_ROWS",
    "BatchCounts",
    "IngestContext",
    "Normalised",
    "Normaliser",
    "Reject",
    "SourceRun",
    "kept_reject",
    "snapshot_catalog",
    "store_batch",
]


# DuckDB's row group. A transaction that appends whole row groups has them compressed and written straight
# into the file; a part row group goes through the write-ahead log and is rewritten when the file is
# checkpointed on close. Measured on 1M rows: batches of 245,760 rows stored in 1.18 s, of 250,000 in 2.01 s.
ROW_GROUP_ROWS = 122_880


@dataclass(frozen=True, slots=True)
class BatchCounts:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0

    def __add__(self, other: BatchCounts) -> BatchCounts:
        return BatchCounts(
            self.read + other.read,
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.rejected + other.rejected,
        )


# the format of the OTLP receiver's sources: a stream whose every run brings records of its own, never a
# re-read of one whole file as an ingest of a path is
RECEIVER_FORMAT = "otlp"


@dataclass(frozen=True)
class SourceRun:
    """One ingest of one file; `source_id` is assigned by the first batch stored."""

    path: str
    size_bytes: int
    format: str
    tags: Mapping[str, str]
    started_at: datetime
    source_id: int | None = None


# ------------------------------------------------------------------------------------------ writes


def _new_rows(
    table: pa.Table,
    stored_keys: Callable[[pa.Table, datetime, datetime], pa.Table],
    con: duckdb.DuckDBPyConnection,
) -> pa.Table:
    """The rows of `table` that are new: no stored record and no earlier kept row of the table has the same
    key within `SAME_REQUEST_WITHIN` of the row's time.

    Row by row in line order, as if each were stored before the next is looked at, so the answer does not
    depend on where batches begin and end. `stored_keys(keys, lo, hi)` is the store's lookup of the stored
    (record_key, ts) of these keys between `lo` and `hi` (`_duckdb_stored_keys`, `_clickhouse_stored_keys`);
    `con`, the batch's DuckDB connection, counts its distinct keys. In the usual case (nothing seen before, no
    repeats) the table passes through untouched.
    """
    span = pc.min_max(table.column("ts"))
    within = SAME_REQUEST_WITHIN
    lo, hi = span["min"].as_py() - within, span["max"].as_py() + within
    keys = table.select(["record_key"])
    stored = stored_keys(keys, lo, hi)
    if stored.num_rows:
        table = _not_stored(table, stored, within)
    if _distinct_keys(con, keys) < keys.num_rows:
        table = _first_of_repeats(table.sort_by("line_no"), within)
    return table


def _distinct_keys(con: duckdb.DuckDBPyConnection, keys: pa.Table) -> int:
    """How many distinct record keys `keys` holds. DuckDB's count, not Arrow's `unique`: that builds its
    hash table in fresh memory, 0.2 s of a process's first batch of 300,000 rows (0.05 s after)."""
    con.register("batch_keys_counted", keys)
    try:
        ((count,),) = con.execute("SELECT count(DISTINCT record_key) FROM batch_keys_counted").fetchall()
    finally:
        con.unregister("batch_keys_counted")
    return int(count)


def _duckdb_stored_keys(con: duckdb.DuckDBPyConnection) -> Callable[[pa.Table, datetime, datetime], pa.Table]:
    """DuckDB finds the stored rows of the batch's keys with a parallel hash join, reading only the row groups
    within the window of the batch's times (it skips the others by their min/max time), so the search does
    not slow as the database grows (benchmarks/ingest_growth.py: a 1 GB file into 10M stored rows ran at
    0.73x the rate into an empty database when it read every stored key, 1.0x now)."""

    def stored_keys(keys: pa.Table, lo: datetime, hi: datetime) -> pa.Table:
        con.register("batch_keys", keys)
        try:
            return con.sql(
                f"""
                SELECT record_key, ts FROM usage
                WHERE ts BETWEEN {_timestamp(lo)} AND {_timestamp(hi)}
                  AND record_key IN (SELECT record_key FROM batch_keys)
                """
            ).to_arrow_table()
        finally:
            con.unregister("batch_keys")

    return stored_keys


def _clickhouse_stored_keys(store: ClickHouse) -> Callable[[pa.Table, datetime, datetime], pa.Table]:
    """ClickHouse reads only the months (partitions) and key ranges of the window; the batch's keys travel
    with the query (external data on a server, a temporary table in chdb). No FINAL: a key found twice
    is the same answer."""

    from storage.settle import settle_found

    def stored_keys(keys: pa.Table, lo: datetime, hi: datetime) -> pa.Table:
        sql = store.render(
            "SELECT record_key, ts FROM usage WHERE ts BETWEEN ? AND ? "
            "AND record_key IN (SELECT record_key FROM batch_keys)",
            [lo, hi],
            final=False,
            attached=["batch_keys"],
        )
        found = store.arrow(sql, {"batch_keys": keys})
        found = found.set_column(1, "ts", pc.cast(found.column("ts"), pa.timestamp("us")))
        settle_found(store, found, lo, hi)  # a key stored twice: settled by whoever meets it next
        return found

    return stored_keys


def _not_stored(table: pa.Table, stored: pa.Table, within: timedelta) -> pa.Table:
    """The rows of `table` no stored (record_key, ts) has the same key within `within` of its time."""
    import polars as pl  # a tenth of a second to import: only a batch that meets stored keys needs it

    matched = (
        _keys_in_micros(table)
        .join(_keys_in_micros(stored).drop("i"), on="record_key", suffix="_stored")
        .filter((pl.col("ts") - pl.col("ts_stored")).abs() <= within // timedelta(microseconds=1))
        .get_column("i")
    )
    return _without_rows(table, matched.to_list())


def _first_of_repeats(table: pa.Table, within: timedelta) -> pa.Table:
    """Drop each row whose key an earlier kept row has within `within` of its time (rows in line order).

    A key whose times all lie within `within` of its first line's (a file holding its records twice, say)
    keeps its first line only, vectorised; the rare key spread wider is walked row by row.
    """
    import polars as pl

    limit = within // timedelta(microseconds=1)
    frame = _keys_in_micros(table).filter(pl.col("record_key").is_duplicated())
    spread = frame.group_by("record_key").agg(  # a group keeps its rows' order: first() is the first line
        (pl.col("ts").max() - pl.col("ts").first()).alias("after"),
        (pl.col("ts").first() - pl.col("ts").min()).alias("before"),
    )
    near_keys = spread.filter((pl.col("after") <= limit) & (pl.col("before") <= limit))["record_key"]
    near = pl.col("record_key").is_in(near_keys.implode())
    dropped = frame.filter(near & ~pl.col("record_key").is_first_distinct())["i"].to_list()
    far = frame.filter(~near)
    kept: dict[str, list[int]] = {}
    walked = zip(far["i"].to_list(), far["record_key"].to_list(), far["ts"].to_list(), strict=True)
    for index, key, at in walked:
        earlier = kept.setdefault(key, [])
        if any(abs(at - t) <= limit for t in earlier):
            dropped.append(index)
        else:
            earlier.append(at)
    return _without_rows(table, dropped)


def _keys_in_micros(table: pa.Table) -> pl.DataFrame:
    """`record_key`, `ts` as integer microseconds, and `i`, the row's place in `table`."""
    import polars as pl

    return (
        pl.DataFrame(table.select(["record_key", "ts"]))
        .with_columns(pl.col("ts").cast(pl.Datetime("us")).cast(pl.Int64))
        .with_row_index("i")
    )


def _without_rows(table: pa.Table, places: list[int]) -> pa.Table:
    if not places:
        return table
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return table.filter(pc.invert(pc.is_in(rows, value_set=pa.array(places, pa.int64()))))


def _timestamp(at: datetime) -> str:
    """A SQL literal (not a parameter: DuckDB prunes row groups by constants it sees when planning)."""
    return f"TIMESTAMP '{at:%Y-%m-%d %H:%M:%S.%f}'"


def kept_reject(reject: Reject) -> Reject:
    """A reject as it may be kept and shown: its reason and excerpt without anything shaped like a key."""
    return Reject(reject.line_no, redact_secrets(reject.reason), redact_secrets(reject.excerpt))


def store_batch(
    store: StoreLike,
    run: SourceRun,
    staged: Sequence[pa.Table],
    rejects: Sequence[Reject],
    *,
    finished_hash: str | None = None,
    finished: bool = False,
    session: WriteSession | None = None,
    alone: bool = False,
) -> tuple[SourceRun, BatchCounts]:
    """Store one batch in one transaction: new rows, rejects, the source's counts (and its end, if done:
    `finished_hash` given, or `finished` for a file that could not be read to its end).

    This is the one write path of every input (log readers, the OTLP receiver): each reject's reason and
    excerpt pass `models.outside_text.redact_secrets` here, so no reader can store a key in a reason.

    With a ClickHouse store the rows go there (`_store_rows_in_clickhouse`) inside the DuckDB transaction
    that records the source's counts and rejects: if that transaction is lost (a kill, a failed commit)
    after the rows were inserted, the re-run finds them stored and counts them as duplicates, so every
    run still accounts for every record it read, and no record is stored twice.

    A writer storing several batches back to back passes its `session` (`storage.db.WriteSession`, on the
    store's file): the batch is then one transaction on its connection instead of a connection of its own.

    The batch's statements run on one DuckDB thread beside a reader that keeps the cores busy, or on all of
    the database's threads when the writer is `alone` (a file's last batch, stored after its last line was
    read: 262,720 rows stored in 0.32-0.34 s on two threads against 0.49-0.52 s on one, the same CPU)."""
    store = as_store(store)
    assert session is None or session.path == store.db, "a session on another file"
    rejects = [kept_reject(r) for r in rejects]
    staged = [t for t in staged if t.num_rows]
    # one chunk per column: DuckDB scans it faster than the stream's many small batches
    table = pa.concat_tables(staged, promote_options="default").combine_chunks() if staged else None
    now = datetime.now(UTC).replace(tzinfo=None)
    # one thread: the batch is stored while the ingest's reader keeps the cores busy (`storage.db.one_thread`)
    with (
        open_write(store.db) if session is None else session.batch() as con,
        nullcontext() if alone else one_thread(con),
    ):
        if run.source_id is None:
            run = replace(run, source_id=_new_source(con, run, shared=store.clickhouse is not None))
        valid = stored = 0
        if table is not None and table.num_rows:
            valid = table.num_rows
            if store.clickhouse is None:
                stored = _store_rows_in_duckdb(con, run, table)
            else:
                stored = _store_rows_in_clickhouse(store, run, table, con)
        if rejects:
            # lists as parameters, zipped by unnest in DuckDB (pa.table over Python lists imports pandas)
            con.execute(
                "INSERT INTO rejects SELECT $source_id, unnest($lines), unnest($reasons), unnest($excerpts)",
                {
                    "source_id": run.source_id,
                    "lines": [r.line_no for r in rejects],
                    "reasons": [r.reason for r in rejects],
                    "excerpts": [r.excerpt for r in rejects],
                },
            )
        counts = BatchCounts(valid + len(rejects), stored, valid - stored, len(rejects))
        con.execute(
            """
            UPDATE sources SET rows_read = rows_read + $read, rows_stored = rows_stored + $stored,
                rows_duplicate = rows_duplicate + $dup, rows_rejected = rows_rejected + $rej,
                finished_at = CASE WHEN $done THEN $now ELSE finished_at END,
                content_hash = CASE WHEN $done THEN $hash ELSE content_hash END
            WHERE source_id = $id
            """,
            {
                "read": counts.read,
                "stored": counts.stored,
                "dup": counts.duplicates,
                "rej": counts.rejected,
                "done": finished or finished_hash is not None,
                "now": now,
                "hash": finished_hash,
                "id": run.source_id,
            },
        )
    return run, counts


def as_stored(
    con: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[str], source_id: int | None
) -> str:
    """The rows of `relation` (with these usage `columns`, and `source_id` unless given) as `INSERT INTO
    usage` stores them: the other columns take their defaults. For the rollups of rows just inserted."""
    defaults = con.execute(
        "SELECT column_name, column_default FROM duckdb_columns() WHERE table_name = 'usage' "
        "AND schema_name = 'main' ORDER BY column_index"
    ).fetchall()
    given = set(columns)

    def stored(name: str, default: str | None) -> str:
        if name == "source_id" and source_id is not None:
            return f"{int(source_id)} AS source_id"
        return name if name in given else f"{default or 'NULL'} AS {name}"

    parts = [stored(name, default) for name, default in defaults]
    return f"(SELECT {', '.join(parts)} FROM {relation})"


# Where a run's id is drawn from when its rows go to a shared ClickHouse store (`shared_source_id`): above
# every id a file's own sequence hands out, below Int64's end.
SHARED_SOURCE_IDS = (1 << 32, 1 << 63)


def shared_source_id() -> int:
    """A new run's id on a shared ClickHouse store: random in `SHARED_SOURCE_IDS`. Every machine writing
    to that store numbers its runs in its own DuckDB file, so the file's sequence (1, 2, ...) would give
    two machines' runs the same id in ClickHouse's usage rows: a discard on one machine would delete the
    other's rows of that run, and the insert token (made of the run's id and its rows' keys) would drop
    the other's insert of the same rows as a retry. Two of 2**63 - 2**32 ids drawn at random meet with a
    chance below one in a billion even after millions of runs."""
    low, high = SHARED_SOURCE_IDS
    return low + secrets.randbelow(high - low)


def _new_source(con: duckdb.DuckDBPyConnection, run: SourceRun, *, shared: bool) -> int:
    """The run's row in `sources`: numbered by the file's sequence, or, when its rows go to a shared
    ClickHouse store (`shared`), by `shared_source_id`."""
    source_id = scalar(
        con,
        "INSERT INTO sources (source_id, path, size_bytes, format, tags, started_at) "
        "VALUES (coalesce(?::BIGINT, nextval('sources_id_seq')), ?, ?, ?, "
        "map(?::VARCHAR[], ?::VARCHAR[]), ?) RETURNING source_id",
        [
            shared_source_id() if shared else None,
            run.path,
            run.size_bytes,
            run.format,
            list(run.tags),
            list(run.tags.values()),
            run.started_at,
        ],
    )
    return int(source_id)


def _store_rows_in_duckdb(con: duckdb.DuckDBPyConnection, run: SourceRun, table: pa.Table) -> int:
    table = _new_rows(table, _duckdb_stored_keys(con), con)
    if table.num_rows:
        con.register("staged", table)
        columns = ", ".join(table.column_names)
        con.execute(
            f"INSERT INTO usage (source_id, {columns}) SELECT $source_id, {columns} FROM staged",
            {"source_id": run.source_id},
        )
        con.unregister("staged")
        # the rollups, in the same transaction: a batch is in both or in neither
        coded = rollups.coded(table)
        con.register("staged_coded", coded.table)
        rollups.append(con, as_stored(con, "staged_coded", table.column_names, run.source_id), coded.values)
        con.unregister("staged_coded")
    return int(table.num_rows)


def _store_rows_in_clickhouse(
    store: Store, run: SourceRun, table: pa.Table, con: duckdb.DuckDBPyConnection
) -> int:
    """Insert the batch's new rows into ClickHouse with an insert deduplication token made of the rows'
    identities (source, record keys and times): a retried insert of the same rows is dropped by ClickHouse,
    and a copy that slips past both (two ingests of one file at once) is one row to every `FINAL` read."""
    from storage.clickhouse import connect
    from storage.settle import settle_inserted

    assert store.clickhouse is not None and run.source_id is not None
    clickhouse = connect(store.clickhouse)
    table = _new_rows(table, _clickhouse_stored_keys(clickhouse), con)
    if not table.num_rows:
        return 0
    table = table.add_column(0, "source_id", pa.array(np.full(table.num_rows, run.source_id, np.int64)))
    if "tags" in table.column_names:  # a ClickHouse Map is never NULL: no tags is the empty map
        tags = table.column("tags")
        table = table.set_column(
            table.column_names.index("tags"),
            "tags",
            pc.if_else(pc.is_null(tags), pa.scalar([], tags.type), tags),
        )
    clickhouse.insert("usage", table, token=_insert_token(run.source_id, table))
    settle_inserted(clickhouse, table)  # another writer may have stored some of them since the lookup
    return int(table.num_rows)


def _insert_token(source_id: int, table: pa.Table) -> str:
    digest = xxhash.xxh3_128()
    digest.update(str(source_id).encode())
    for column in ("record_key", "ts"):
        for chunk in table.column(column).chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(memoryview(buffer))
    return f"usage:{digest.hexdigest()}"


def discard_source(store: StoreLike, source_id: int) -> None:
    """Remove everything one ingest run stored (its rows, rejects and sources row) and its part of the
    rollups, in one transaction (with a ClickHouse store, its rows and rollups there first, synchronously)."""
    store = as_store(store)
    if store.clickhouse is not None:
        from storage.clickhouse import connect

        connect(store.clickhouse).delete_usage(f"source_id = {int(source_id)}")
    with open_write(store.db) as con:
        touched = rollups.touched_buckets(con, f"(SELECT ts FROM usage WHERE source_id = {int(source_id)})")
        con.execute("DELETE FROM usage WHERE source_id = ?", [source_id])
        rollups.refresh(con, touched)
        con.execute("DELETE FROM rejects WHERE source_id = ?", [source_id])
        con.execute("DELETE FROM sources WHERE source_id = ?", [source_id])


def snapshot_catalog(db: Path, catalog: Catalog) -> int:
    """Replace `catalog_prices` with the catalog's token prices (for SQL users), and band the rollups by
    every long-context threshold the catalog has (rebuilt when one is new); returns the rows written."""
    from models.pricing import tier_bounds

    rows: list[tuple[Any, ...]] = []
    for offer in catalog.offers.values():
        for v in offer.versions:
            prices = v.prices
            rows.append(
                (
                    offer.id,
                    offer.provider,
                    offer.model,
                    v.version_id,
                    v.effective_from,
                    v.effective_to,
                    v.currency,
                    prices.input if prices else None,
                    prices.cached_input if prices else None,
                    prices.cache_write if prices else None,
                    prices.output if prices else None,
                    prices.reasoning_output if prices else None,
                    v.source,
                    v.as_of,
                )
            )
    with open_write(db) as con:
        con.execute("DELETE FROM catalog_prices")
        if rows:
            con.executemany(
                "INSERT INTO catalog_prices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        rollups.ensure_bands(con, tier_bounds(list(catalog.offers.values())))
    return len(rows)
