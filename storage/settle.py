"""Two writers storing one request at the same moment on a ClickHouse store, settled to exactly once.

Every write looks the keys it brings up before inserting (the ingest, the `otel_traces` view), so a request
reaches `usage` once, and a retried insert is dropped by its token. Two writers inserting the same request
at once (two ingests of one file from two machines, an ingest racing the `otel_traces` view) both pass the
lookup: `usage` then holds two copies, and every rollup view summed both (a view sees every inserted block).
This module finds such copies and settles them, idempotently, so that any number of writers may do it:

- **Found**: after each insert the writer counts the copies of the keys it just inserted (`settle_inserted`,
  `settle`: one
  read of `usage_inserts`, ClickHouse migration 9, a materialized view's log of every row's identity as
  inserted, kept two days: it still counts two copies a merge of usage already folded into one row); the
  later of two racing inserts sees both. A lookup before an insert that finds a key twice settles it too
  (`settle_found`: a writer killed between its insert and its count, its file ingested again), and
  `settle_recent` counts the copies of every key inserted since a time (for the `otel_traces` view, which
  no quotascope process follows: `quotascope traces`, the link's copy, and `quotascope schedule` run it).
- **Which copy stays**: the copies of one request (one key, times within `SAME_REQUEST_WITHIN`) are grouped
  by their usage sort key (provider, model, team, hour, key, time). The earliest time (then provider,
  model, team) wins, a rule that no merge, delete or later copy changes; inside the winning group the row
  `FINAL` shows stays. Every other copy is surplus.
- **usage**: the surplus copies of other sort keys are deleted (a lightweight `DELETE` by their identity:
  key, time, source, insert time); those of the winner's sort key are already one row to every `FINAL`
  read, and are left to the merges (deleting one could hit the row a merge kept).
- **rollups**: every surplus copy is recorded in `usage_surplus` (ClickHouse migration 8), a
  `ReplacingMergeTree` with usage's columns keyed by the copy's identity, read `FINAL`: two writers
  recording the same copy record it once. Every rollup read subtracts the surplus' rollup rows
  (`corrected`), so the rollups' sums hold `usage FINAL` exactly (a key's first and last request times
  stay those of every copy when a surplus copy shared the key with kept rows: a min or max cannot be
  subtracted, and a wider span only makes `storage.rollups.covering` sum such a bucket from its rows when
  a period cuts it). A discard or relink sums its buckets again from
  the rows left *and* the surplus left (`ClickHouse.delete_usage`), which keeps that invariant.

The surplus is recorded before anything is deleted: a writer killed in between leaves the copies, which
the next count finds and settles again (the same records, the same deletes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from models.usage_record import SAME_REQUEST_WITHIN

if TYPE_CHECKING:
    from storage.clickhouse import ClickHouse
    from storage.clickhouse_schema import Layout
    from storage.rollups import Rollup
    from storage.usage_reader import UsageReader

__all__ = [
    "RECENT",
    "SURPLUS_TABLE",
    "corrected",
    "settle",
    "settle_found",
    "settle_inserted",
    "settle_keys",
    "settle_recent",
]

SURPLUS_TABLE = "usage_surplus"
INSERTS_TABLE = "usage_inserts"
# how far back a periodic settle (`quotascope traces`, the schedule) counts copies: well past its period
RECENT = timedelta(days=1)
# a copy's identity in usage: two copies differ in one of these at least (another source or insert)
IDENTITY = ("record_key", "ts", "source_id", "inserted_at")
# usage's sort key (its hour is the time's): copies with the same one are one row to a FINAL read
SORT_KEY = ("provider", "model", "team", "record_key", "ts")
_KEPT = (*SORT_KEY, "source_id", "inserted_at")

Row = dict[str, Any]


def settle(clickhouse: ClickHouse, keys: pa.Table, lo: datetime, hi: datetime) -> int:
    """Settle the copies of the record keys `keys` (a table with `record_key`) stored between `lo` and
    `hi`: after a writer inserted them. Returns how many surplus copies it recorded (usually 0, after one
    query of the insert log by its sort key)."""
    sql = clickhouse.render(
        f"SELECT record_key FROM {INSERTS_TABLE} WHERE ts BETWEEN ? AND ? "
        "AND record_key IN (SELECT record_key FROM batch_keys) GROUP BY record_key HAVING count(*) > 1",
        [lo, hi],
        final=False,
        attached=["batch_keys"],
    )
    found = clickhouse.arrow(sql, {"batch_keys": keys.select(["record_key"])})
    if not found.num_rows:
        return 0
    return settle_keys(clickhouse, [str(k) for k in found.column(0).to_pylist()], lo, hi)


def settle_inserted(clickhouse: ClickHouse, rows: pa.Table) -> int:
    """`settle` the rows a writer just inserted (`record_key`, `ts`): their copies within
    `SAME_REQUEST_WITHIN` of the batch's times. Another writer may have stored some of these records since
    the writer's lookup; the later of two racing inserts sees both copies."""
    span = pc.min_max(rows.column("ts"))
    lo, hi = span["min"].as_py() - SAME_REQUEST_WITHIN, span["max"].as_py() + SAME_REQUEST_WITHIN
    return settle(clickhouse, rows, lo, hi)


def settle_found(clickhouse: ClickHouse, found: pa.Table, lo: datetime, hi: datetime) -> int:
    """Settle the keys a writer's lookup before inserting (`found`: the stored `record_key`s of its batch
    between `lo` and `hi`, usage read without FINAL) met more than once: two writers raced and the later
    was stopped before it counted its copies (killed, say); settled by whoever meets them next. Usually
    every key is there once (one count says so) and nothing is read."""
    keys = found.column("record_key")
    if pc.count_distinct(keys).as_py() == found.num_rows:
        return 0
    repeated = [str(c["values"]) for c in pc.value_counts(keys).to_pylist() if c["counts"] > 1]
    return settle_keys(clickhouse, repeated, lo, hi)


def settle_recent(clickhouse: ClickHouse, since: datetime) -> int:
    """Settle every key inserted since `since` that was inserted more than once (the insert log's two
    days): for a path no quotascope process follows (the `otel_traces` view), as `settle` does."""
    at = since.astimezone(UTC).replace(tzinfo=None) if since.tzinfo else since
    sql = clickhouse.render(
        f"SELECT record_key, min(ts) AS lo, max(ts) AS hi FROM {INSERTS_TABLE} "
        f"WHERE record_key IN (SELECT record_key FROM {INSERTS_TABLE} WHERE inserted_at >= ?) "
        "GROUP BY record_key HAVING count(*) > 1",
        [at],
        final=False,
    )
    found = clickhouse.arrow(sql)
    if not found.num_rows:
        return 0
    lo = pc.min(found.column("lo")).as_py().replace(tzinfo=None) - SAME_REQUEST_WITHIN
    hi = pc.max(found.column("hi")).as_py().replace(tzinfo=None) + SAME_REQUEST_WITHIN
    return settle_keys(clickhouse, [str(k) for k in found.column("record_key").to_pylist()], lo, hi)


def settle_keys(clickhouse: ClickHouse, keys: Sequence[str], lo: datetime, hi: datetime) -> int:
    """Settle the copies of `keys` between `lo` and `hi` (the module's rule): record the surplus copies
    in `usage_surplus` (those not recorded yet), then delete those usage still shows. Returns how many
    surplus copies it recorded.

    The copies are those the insert log saw (`usage_inserts`), and any older ones usage holds: a copy a
    merge folded into another row of its sort key is the log's identity with that row's values (one
    request's copies of one sort key carry the same counts)."""
    attached = {"settled_keys": pa.table({"record_key": pa.array(list(keys), pa.string())})}
    where = "ts BETWEEN ? AND ? AND record_key IN (SELECT record_key FROM settled_keys)"

    def read(sql: str, final: bool = False) -> pa.Table:
        rendered = clickhouse.render(sql, [lo, hi], final=final, attached=["settled_keys"])
        return clickhouse.arrow(rendered, attached)

    stored = read(f"SELECT * FROM usage WHERE {where}")
    kept = read(f"SELECT * FROM usage WHERE {where}", final=True)
    logged = read(f"SELECT {', '.join(_KEPT)} FROM {INSERTS_TABLE} WHERE {where}").to_pylist()
    copies, rows = _copies(stored, kept, logged)
    surplus, deleted = surplus_of(copies, kept.select(list(_KEPT)).to_pylist())
    # a copy with no row (neither usage nor a shown row of its sort key holds it) was deleted here before,
    # so recorded before
    found = [row for row in (rows[i] for i in surplus) if row is not None]
    if not found:
        return 0
    table = pa.concat_tables(found)
    table = table.append_column("copy", pa.array(_copy_numbers(table), pa.uint32()))
    recorded = read(f"SELECT {', '.join(IDENTITY)}, copy FROM {SURPLUS_TABLE} WHERE {where}", final=True)
    known = {_identity(r) for r in recorded.to_pylist()}
    new = [
        i for i, r in enumerate(table.select([*IDENTITY, "copy"]).to_pylist()) if _identity(r) not in known
    ]
    if new:  # recorded by another writer already (or by this one, killed before it deleted): once is enough
        table = table.take(pa.array(new, pa.int64()))
        clickhouse.insert(SURPLUS_TABLE, table, token=_token(table))
    gone = [copies[i] for i in deleted if i < stored.num_rows]  # only copies usage still holds
    if gone:
        _delete(clickhouse, [{c: row[c] for c in IDENTITY} for row in gone])
    return len(new)


def _copies(stored: pa.Table, kept: pa.Table, logged: list[Row]) -> tuple[list[Row], list[pa.Table | None]]:
    """Every copy of the keys: usage's rows (`stored`, not FINAL), then each copy the insert log saw
    beyond those (an identity logged more often than usage holds it), with a full row when a row of its
    sort key is still shown (`kept`): that row with the copy's source and insert time. Their identities
    (sort key, source, insert time) and rows, by index."""
    copies = stored.select(list(_KEPT)).to_pylist()
    rows: list[pa.Table | None] = [stored.slice(i, 1) for i in range(stored.num_rows)]
    held: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in copies:
        held[_copy_identity(row)] += 1
    shown = {_sort_key(r): i for i, r in enumerate(kept.select(list(SORT_KEY)).to_pylist())}
    for row in logged:
        identity = _copy_identity(row)
        if held[identity] > 0:
            held[identity] -= 1  # usage holds this one
            continue
        copies.append(row)
        at = shown.get(_sort_key(row))
        if at is None:
            rows.append(None)
            continue
        folded = kept.slice(at, 1)
        for column in ("source_id", "inserted_at"):
            index = folded.column_names.index(column)
            folded = folded.set_column(
                index, column, pa.array([row[column]], folded.schema.field(column).type)
            )
        rows.append(folded)
    return copies, rows


def _copy_identity(row: Row) -> tuple[Any, ...]:
    return (*_sort_key(row), row["source_id"], _naive(row["inserted_at"]))


def surplus_of(copies: Sequence[Row], kept: Sequence[Row]) -> tuple[list[int], list[int]]:
    """Which of `copies` (usage rows of some keys, not FINAL: their sort key, source and insert time) are
    surplus, and which of those to delete from usage, given the rows a `FINAL` read shows (`kept`): per
    request (a key's copies within `SAME_REQUEST_WITHIN` of its earliest), the sort key of the earliest
    time stays, with the row FINAL shows of it; the other copies of that sort key are surplus, those of
    every other sort key surplus and deleted. Indexes into `copies`."""
    shown = {_sort_key(r): (r["source_id"], _naive(r["inserted_at"])) for r in kept}
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(copies):
        by_key[str(row["record_key"])].append(i)
    surplus: list[int] = []
    deleted: list[int] = []
    for indexes in by_key.values():
        for request in _requests(copies, indexes):
            if len(request) < 2:
                continue
            winner = min((_sort_key(copies[i]) for i in request), key=_order)
            stays = shown.get(winner)
            for i in sorted(request, key=lambda i: _order(_sort_key(copies[i]))):
                row = copies[i]
                if _sort_key(row) == winner:
                    if stays is not None and (row["source_id"], _naive(row["inserted_at"])) == stays:
                        stays = None  # the one row that stays; any identical twin is surplus
                        continue
                    surplus.append(i)
                else:
                    surplus.append(i)
                    deleted.append(i)
    return surplus, deleted


def _requests(copies: Sequence[Row], indexes: list[int]) -> list[list[int]]:
    """One key's copies split into requests: each its earliest copy's time and those within
    `SAME_REQUEST_WITHIN` after it (the ingest's rule for one request)."""
    ordered = sorted(indexes, key=lambda i: _naive(copies[i]["ts"]))
    requests: list[list[int]] = []
    start: datetime | None = None
    for i in ordered:
        at = _naive(copies[i]["ts"])
        if start is None or at - start > SAME_REQUEST_WITHIN:
            requests.append([])
            start = at
        requests[-1].append(i)
    return requests


def _sort_key(row: Row) -> tuple[Any, ...]:
    return tuple(_naive(row[c]) if c == "ts" else row[c] for c in SORT_KEY)


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The winner's order: earliest time, then provider, model, team (a missing one first)."""
    provider, model, team, record_key, ts = key
    return (ts, provider or "", model, team or "", record_key)


def _naive(at: Any) -> Any:
    if isinstance(at, datetime) and at.tzinfo is not None:
        return at.astimezone(UTC).replace(tzinfo=None)
    return at


def _copy_numbers(rows: pa.Table) -> list[int]:
    """Each surplus copy's number among surplus copies of one identity (0 unless two are identical)."""
    seen: dict[tuple[Any, ...], int] = defaultdict(int)
    numbers = []
    for row in rows.select(list(IDENTITY)).to_pylist():
        identity = tuple(_naive(row[c]) for c in IDENTITY)
        numbers.append(seen[identity])
        seen[identity] += 1
    return numbers


def _identity(row: Row) -> tuple[Any, ...]:
    return tuple(_naive(row[c]) for c in (*IDENTITY, "copy"))


def _token(rows: pa.Table) -> str:
    digest = xxhash.xxh3_128()
    for row in sorted(str(r) for r in rows.select([*IDENTITY, "copy"]).to_pylist()):
        digest.update(row.encode())
    return f"surplus:{digest.hexdigest()}"


def _delete(clickhouse: ClickHouse, identities: list[Row]) -> None:
    """Delete exactly these copies (by identity) from usage, on every shard; synchronous."""
    clickhouse.command(deletion_sql(clickhouse.layout, clickhouse.render, identities))


def deletion_sql(layout: Layout, render: Callable[..., str], identities: list[Row]) -> str:
    """The lightweight `DELETE` of these copies of usage rows (by identity), `ON CLUSTER` on a cluster (its
    local table: a Distributed one takes no delete); `render` turns DuckDB's SQL and its parameters into
    ClickHouse's."""
    conditions = " OR ".join(
        "(record_key = ? AND ts = ? AND source_id = ? AND inserted_at = ?)" for _ in identities
    )
    params = [_naive(row[c]) for row in identities for c in IDENTITY]
    select = render(f"SELECT * FROM usage WHERE {conditions}", params, final=False)
    usage = layout.qualified(layout.local("usage"))
    return f"DELETE FROM {usage}{layout.on_cluster} {select[select.index('WHERE') :]}"


# ------------------------------------------------------------------------------------------ reading


def corrected(usage: UsageReader, rollup: Rollup, bands: Sequence[int]) -> str:
    """`rollup` on a ClickHouse store as a relation of partial rows holding `usage FINAL` exactly: its
    stored rows less the surplus copies' rows (`usage_surplus`). Usually there is none (one tiny read says
    so) and the relation is the rollup itself; otherwise the buckets no surplus copy is in are read as
    stored, and the few others grouped with the surplus' rows negated, dropping a key left with no request
    (a surplus copy's own, deleted from usage). DuckDB's SQL, read FINAL when rendered."""
    times = [row[0] for row in usage.rows(f"SELECT DISTINCT ts FROM {SURPLUS_TABLE}")]
    if not times:
        return rollup.name
    from storage.rollups import one_of

    dirty = one_of("bucket", sorted({rollup.bucket_of(at) for at in times}))
    columns = ", ".join(rollup.column_names)
    negated = ", ".join(
        [
            *rollup.key_names,
            *(f"-{m.name} AS {m.name}" if m.merge == "sum" else m.name for m in rollup.measures),
        ]
    )
    surplus = f"SELECT {negated} FROM ({rollup.select(SURPLUS_TABLE, bands)})"
    grouped = rollup.merged(
        f"(SELECT {columns} FROM {rollup.name} WHERE {dirty} UNION ALL SELECT {columns} FROM ({surplus}))"
    )
    counted = next(m.name for m in rollup.measures if m.sql.startswith("sum(n_requests)"))
    return (
        f"(SELECT {columns} FROM {rollup.name} WHERE NOT {dirty} "
        f"UNION ALL SELECT {columns} FROM ({grouped} HAVING sum({counted}) <> 0))"
    )


def as_inserted(rollup: Rollup, starts: Sequence[datetime]) -> str:
    """The usage rows in `rollup`'s buckets starting at `starts` as its view summed them: the rows left
    (`usage FINAL`) and the surplus copies left. A relation of usage's columns, to sum such buckets again
    after a delete (`ClickHouse.delete_usage`)."""
    from storage import rollups
    from storage.clickhouse_schema import USAGE_NAMES

    columns = ", ".join(USAGE_NAMES)
    in_buckets = rollups.one_of(f"({rollup.bucket_sql})", starts)
    return (
        f"(SELECT {columns} FROM {rollup.raw_rows_of(starts)} "
        f"UNION ALL SELECT {columns} FROM {SURPLUS_TABLE} WHERE {in_buckets})"
    )
