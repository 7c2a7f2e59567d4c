"""What a batch of the OTLP receiver's rows costs to store, per statement, beside a bare insert of them.

The rows are the receiver's own: requests of the `benchmarks/otlp.py` mix, scanned (`SpanBatcher.
prepare_protobuf`) and checked (`storage.columnar.check_records`) as the receiver does; that base is then
repeated with fresh record keys and later times (a receiver's traffic goes on) to fill larger batches.

For each batch size, into a fresh file and into one already holding `--stored` rows (stored the same way,
so its rollups are as a long-running receiver's), a few batches are stored by `storage.usage.store_batch`
on a kept `WriteSession` (as the receiver's drain stores them, one DuckDB thread), each statement timed by
what it does; and, in the same file, the same batch is inserted bare into a plain table of the same columns
(`INSERT INTO t SELECT * FROM batch` and `COMMIT`, one thread): the reference. The figure is the ratio of
`store_batch`'s wall time to the reference's, with every stage in microseconds per row beside it. After each
batch the session is closed and opened again, as the receiver's is about every second (`storage.db.HOLD_S`):
that line is apart from both, and its checkpoint writes the reference's rows as well as the batch's.

    nice .venv/bin/python benchmarks/write_path.py [--sizes 50000,250000,500000] [--stored 3000000]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from otlp import bodies  # noqa: E402

from collectors.otlp.writer import SPEC, SpanBatcher  # noqa: E402
from storage.columnar import check_records  # noqa: E402
from storage.db import WriteSession  # noqa: E402
from storage.usage import IngestContext, Normaliser, SourceRun, store_batch  # noqa: E402

# what a statement does, by a piece of its text (the first that matches)
STAGES = (
    ("BEGIN", "begin"),
    ("COMMIT", "commit"),
    ("INSERT INTO usage", "insert rows"),
    ("FROM usage", "stored-key lookup"),
    ("DISTINCT record_key", "repeated-key count"),
    ("duckdb_columns", "column defaults"),
    ("rollup_", "rollups"),
    ("sources", "sources row"),
    ("threads", "thread setting"),
)


ROLLUP = re.compile(r"INTO (rollup_\w+)|TABLE (rollup_\w+)")


def stage_of(sql: str) -> str:
    stage = next((name for text, name in STAGES if text in sql), "other statements")
    named = ROLLUP.search(sql) if stage == "rollups" else None
    return f"rollups: {next(g for g in named.groups() if g)}" if named else stage


class TimedConnection:
    """A DuckDB connection whose statements are timed by stage (`stage_of`) into `clock`."""

    def __init__(self, con: Any, clock: dict[str, float]) -> None:
        self._con = con
        self._clock = clock

    def execute(self, sql: str, params: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        finally:
            self._clock[stage_of(sql)] += time.perf_counter() - started

    def sql(self, sql: str, **kwargs: Any) -> Any:
        relation = self._con.sql(sql, **kwargs)
        clock, stage = self._clock, stage_of(sql)

        class Timed:
            def to_arrow_table(self) -> Any:
                started = time.perf_counter()
                try:
                    return relation.to_arrow_table()
                finally:
                    clock[stage] += time.perf_counter() - started

            def __getattr__(self, name: str) -> Any:
                return getattr(relation, name)

        return Timed()

    def register(self, name: str, table: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._con.register(name, table)
        finally:
            self._clock["register"] += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class TimedSession(WriteSession):
    """The receiver's session, its connection timed (`TimedConnection`)."""

    def __init__(self, path: Path, clock: dict[str, float]) -> None:
        super().__init__(path, hold_s=1e9)
        self.clock = clock

    def open(self) -> Any:
        return TimedConnection(super().open(), self.clock)


def base_rows(requests: int) -> pa.Table:
    """The receiver's checked rows of `requests` requests of the mix (500 spans each, 350 LLM rows)."""
    batcher = SpanBatcher({})
    prepared = [batcher.prepare_protobuf(b) for b in bodies(requests, 500)]
    records = pa.concat_tables([p.columns for p in prepared if p.columns is not None])
    normaliser = Normaliser()
    context = IngestContext(salt="bench")
    numbers = np.arange(1, records.num_rows + 1, dtype=np.int64)
    checked = check_records(SPEC, records, numbers, context, normaliser.schema(SPEC, context))
    normaliser.close()
    assert not checked.rejects
    return checked.rows


class Rows:
    """Endless rows of the receiver's shape: the base repeated, each copy with keys of its own and times
    after the last copy's (as a receiver's traffic goes on)."""

    def __init__(self, base: pa.Table) -> None:
        self.base = base
        times = base.column("ts")
        self.span = pc.max(times).as_py() - pc.min(times).as_py() + timedelta(seconds=1)
        self.copy = 0
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def _next_copy(self) -> pa.Table:
        k = self.copy
        self.copy += 1
        n = self.base.num_rows
        table = self.base
        keys = pc.binary_join_element_wise(table.column("record_key"), pa.scalar(f"c{k}"), "-")
        table = table.set_column(0, "record_key", keys)
        table = table.set_column(1, "line_no", pa.array(np.arange(k * n + 1, (k + 1) * n + 1)))
        shift = pa.scalar(self.span * k, pa.duration("us"))
        table = table.set_column(2, "ts", pc.add(table.column("ts"), shift))
        return table

    def take(self, count: int) -> pa.Table:
        while self.buffered < count:
            self.buffer.append(self._next_copy())
            self.buffered += self.buffer[-1].num_rows
        table = pa.concat_tables(self.buffer)
        out, rest = table.slice(0, count), table.slice(count)
        self.buffer, self.buffered = [rest], rest.num_rows
        return out.combine_chunks()


def reference(session: WriteSession, batch: pa.Table) -> float:
    """Seconds a bare insert of `batch` into the plain table `bare` takes, committed, on one thread."""
    con = session.open()
    con = getattr(con, "_con", con)  # untimed: its statements are not store_batch's
    con.execute("SET threads = 1")
    con.register("bare_batch", batch)
    con.execute("CREATE TABLE IF NOT EXISTS bare AS SELECT * FROM bare_batch LIMIT 0")
    started = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO bare SELECT * FROM bare_batch")
    con.execute("COMMIT")
    seconds = time.perf_counter() - started
    con.unregister("bare_batch")
    return seconds


@contextmanager
def timed_session(db: Path) -> Iterator[tuple[TimedSession, dict[str, float]]]:
    clock: dict[str, float] = defaultdict(float)
    with TimedSession(db, clock) as session:
        yield session, clock


def measure(db: Path, rows: Rows, size: int, batches: int) -> tuple[dict[str, float], float, float]:
    """Store `batches` batches of `size` rows; (seconds per stage, store_batch's wall, the reference's)."""
    run = SourceRun("otlp://bench", 0, "otlp", {}, datetime(2026, 1, 1))
    run, _ = store_batch(db, run, [rows.take(1)], [])  # the source's row
    wall = bare = reopen = 0.0
    with timed_session(db) as (session, clock):
        for _ in range(batches):
            batch = rows.take(size)
            started = time.perf_counter()
            run, counts = store_batch(db, run, [batch], [], session=session)
            wall += time.perf_counter() - started
            assert counts.stored == size, counts
            bare += reference(session, batch)
            # the receiver's session lets readers in about every second (`storage.db.HOLD_S`): its close
            # checkpoints what the write-ahead log holds, and the next batch opens the file again
            started = time.perf_counter()
            session.close()
            session.open()
            reopen += time.perf_counter() - started
            spent = dict(clock)
    spent["python (between statements)"] = wall - sum(spent.values())
    spent["close (checkpoint) + open, each batch"] = reopen
    return spent, wall, bare


def fill(db: Path, rows: Rows, count: int, size: int = 500_000) -> None:
    run = SourceRun("otlp://fill", 0, "otlp", {}, datetime(2026, 1, 1))
    with WriteSession(db) as session:
        for start in range(0, count, size):
            run, _ = store_batch(db, run, [rows.take(min(size, count - start))], [], session=session)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50000,250000,500000")
    parser.add_argument("--stored", type=int, default=3_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows stored per size and file")
    parser.add_argument("--requests", type=int, default=60, help="requests of 500 spans in the base")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})", flush=True)
    base = base_rows(args.requests)
    print(f"base: {base.num_rows:,} rows of the receiver's mix, repeated with new keys and times", flush=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="qs-write-path-") as folder:
        files = [("empty file", 0)] + ([(f"{args.stored:,} rows stored", args.stored)] if args.stored else [])
        for label, stored in files:
            for size in sizes:
                db = Path(folder) / f"w{size}-{stored}.duckdb"
                rows = Rows(base)
                if stored:
                    fill(db, rows, stored)
                batches = max(1, args.rows // size)
                spent, wall, bare = measure(db, rows, size, batches)
                n = size * batches
                print(
                    f"{label}, batches of {size:,} rows ({batches} batches): store_batch "
                    f"{wall / n * 1e6:.2f} us/row, bare insert {bare / n * 1e6:.2f} us/row: "
                    f"{wall / bare:.2f}x the bare insert",
                    flush=True,
                )
                for stage, seconds in sorted(spent.items(), key=lambda p: -p[1]):
                    print(f"    {stage:32s} {seconds / n * 1e6:6.3f}")
                db.unlink()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
