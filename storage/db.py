"""Connection discipline for the one DuckDB file (DESIGN.md, "Storage discipline").

DuckDB allows one read-write process or many read-only ones per file. So a writer (ingest, probe, scheduler)
runs each batch in one transaction and keeps the file no longer than that, or, storing batches back to back
(`WriteSession`), no longer than about a second (`HOLD_S`); a reader (report, dashboard) opens read-only per
query. Whoever finds the file locked by the other waits with back-off and tries
again, so a dashboard and a running ingest never make each other fail: they take turns.

A writer storing batches back to back frees the file only between two batches, for as long as it takes to
start the next one (milliseconds), while a waiting reader tries every tenth of a second or so: left to
chance, the reader could wait through many of the writer's turns. So a waiting reader says so (it touches
`<database>.turn` at each try, `ask_turn`), and a writer about to open the file lets a reader that is asking
go first (`let_readers_in`, for at most `TURN_S`): a reader waits at most about one hold, one batch and its
own next try, however busy the writer is.

Schema changes are the numbered migrations of `storage.migrations`, applied when a writer opens the file (and,
for a file an older quotascope created, briefly before a reader opens it).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from models.errors import QuotascopeError
from storage import migrations

if TYPE_CHECKING:  # polars costs a tenth of a second to import; an ingest never needs it
    import polars as pl

LOCK_TIMEOUT_S = 60.0  # how long to wait for the other side's batch or query before giving up
HOLD_S = 1.0  # how long a writer's session keeps the file across batches before it lets readers in
WAIT_NOTICE_S = 2.0  # after this long, a wait is told (what is waited for, and who holds the file)
FIRST_BACKOFF_S = 0.02
MAX_BACKOFF_S = 0.5  # a writer's longest pause between tries
READER_BACKOFF_S = 0.1  # a reader's: a turn the writer gives it (`let_readers_in`) is not missed
TURN_S = 0.5  # how long a writer about to open the file waits, at most, for a reader that asked to go first

MISSING_DATABASE_HINT = (
    "run `quotascope ingest FILE...` to load usage logs, `quotascope probe` to measure an endpoint, "
    "or `quotascope demo` for a sample database"
)

T = TypeVar("T")


class StorageError(QuotascopeError):
    """The database could not be opened, read or written; the message says why in one sentence."""


class DatabaseMissingError(StorageError):
    """There is no database file yet: the message names the command that fills it."""


def _is_lock_conflict(error: duckdb.Error) -> bool:
    text = str(error)
    return (
        "Could not set lock" in text
        or "Conflicting lock" in text
        # the same process already holds the file with the other mode (a writer while we read, or back)
        or "different configuration" in text
        # another thread of this process is opening or closing the file at this moment
        or "Unique file handle conflict" in text
    )


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    # DuckDB prints a progress bar on stdout for queries over 2 s, even into a pipe: it would corrupt --json
    con.execute("SET enable_progress_bar = false")
    return con


def _with_retry(connect: Callable[[], T], path: Path, timeout_s: float, *, reader: bool = False) -> T:
    """Call `connect` until the file is free of the other side's lock, backing off with jitter; a
    `reader` asks for its turn at each try (`ask_turn`) and tries again sooner.

    After `WAIT_NOTICE_S` the wait is told (a warning of the `quotascope.storage` logger: the CLI's stderr),
    naming what it waits for and who holds the file as DuckDB reports it; the error after `timeout_s`
    names the holder the same way."""
    started = time.monotonic()
    deadline = started + timeout_s
    delay = FIRST_BACKOFF_S
    told = False
    while True:
        try:
            return connect()
        except duckdb.Error as e:
            if not _is_lock_conflict(e):
                raise StorageError(f"cannot open the database {path}: {_first_line(e)}") from e
            if reader:
                ask_turn(path)
            holder = lock_holder(str(e))
            if not told and time.monotonic() - started >= WAIT_NOTICE_S:
                told = True
                log.warning(
                    "waiting for the database %s: it is locked by %s (giving up after %g s)",
                    path,
                    holder,
                    timeout_s,
                )
            if time.monotonic() + delay > deadline:
                raise StorageError(
                    f"the database {path} stayed locked for {timeout_s:g} s by {holder}; "
                    "try again when it has finished"
                ) from e
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, READER_BACKOFF_S if reader else MAX_BACKOFF_S)


def turn_file(path: Path) -> Path:
    """The file a waiting reader touches to ask a writer for its turn (`ask_turn`)."""
    return path.with_name(path.name + ".turn")


def ask_turn(path: Path) -> None:
    """Tell writers of `path` that a reader is waiting for the file (best effort: a reader that may not
    write in the database's folder waits as before, on its luck)."""
    with contextlib.suppress(OSError):
        turn_file(path).touch()


def _reader_asking(path: Path) -> bool:
    """Whether a reader asked for the file within its last two tries (`READER_BACKOFF_S` each, at most
    one and a half times that with the jitter)."""
    try:
        asked = turn_file(path).stat().st_mtime
    except OSError:
        return False
    return time.time() - asked < 3 * READER_BACKOFF_S


def let_readers_in(path: Path, *, most_s: float = TURN_S) -> None:
    """Before a writer opens the file: while a reader asks for it, wait (at most `most_s`), so that the
    reader, whose next try comes within `READER_BACKOFF_S` or so, finds it free. A reader that got in
    stops asking, and the writer's own open then waits for that reader's query to end."""
    deadline = time.monotonic() + most_s
    while _reader_asking(path) and time.monotonic() < deadline:
        time.sleep(0.02)


_HOLDER = re.compile(r"held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(message: str) -> str:
    """Who holds the file, in words, from DuckDB's lock error: the program and PID it names, and whether
    that process is quotascope (its command line, where /proc shows it); never a guess."""
    found = _HOLDER.search(message)
    if found is None:
        if "different configuration" in message or "Unique file handle" in message:
            return "another connection of this same process"
        return "another program (DuckDB did not say which)"
    pid, program = found.group("pid"), found.group("program")
    if int(pid) == os.getpid():
        return f"this process (PID {pid})"
    command = _command_line(int(pid))
    if command is not None and "quotascope" in command:
        return f"another quotascope process (PID {pid}: {command})"
    return f"PID {pid} ({command or program})"


def _command_line(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = [w.decode("utf-8", "replace") for w in raw.split(b"\0") if w]
    text = " ".join(" ".join([Path(words[0]).name, *words[1:]]).split()) if words else ""
    return text[:120] or None


log = logging.getLogger("quotascope.storage")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rstrip(".")


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> Any:
    """The single value a query returns (fetching it completely, so the connection is free again)."""
    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    return rows[0][0] if rows else None


@functools.cache
def known_migrations() -> tuple[migrations.Migration, ...]:
    """The migrations this process knows (discovered once: modules do not appear while it runs)."""
    return tuple(migrations.discover())


def applied_migrations(con: duckdb.DuckDBPyConnection) -> set[int]:
    exists = scalar(
        con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    )
    if not exists:
        return set()
    return {row[0] for row in con.execute("SELECT number FROM schema_migrations").fetchall()}


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every pending migration, each in its own transaction with its `schema_migrations` row."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(number INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    done = applied_migrations(con)
    applied = []
    for migration in known_migrations():
        if migration.number in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.number, migration.name, _utc_now()],
            )
        except duckdb.Error as e:
            con.execute("ROLLBACK")
            raise StorageError(
                f"migration {migration.number} ({migration.name}) failed on {_db_name(con)}: {_first_line(e)}"
            ) from e
        con.execute("COMMIT")
        applied.append(migration.number)
    return applied


def _db_name(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return str(row[0]) if row and row[0] else "the database"


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def open_write(path: Path, *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection for ONE batch: migrations applied, the body in one transaction, committed.

    Creates the file and its folder if needed. If the body raises, the transaction is rolled back and the
    database is as it was before; if the process is killed, DuckDB's write-ahead log drops the uncommitted
    batch on the next open. duckdb errors leave as `StorageError`.
    """
    with WriteSession(path, hold_s=0.0, timeout_s=timeout_s) as session, session.batch() as con:
        yield con


@contextmanager
def one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The body's statements on one DuckDB thread, the setting restored after (it is the database
    instance's, not the connection's, and not transactional).

    For a write batch beside a reader: an ingest's DuckDB reader already keeps the cores busy while its
    writer stores the batch before, and a parallel insert there only fights it for the cores (at load 9,
    491,520 rows took 0.64 s of CPU on two threads against 0.16 s on one). With nothing beside it, the same
    statements cost the same CPU on two threads and finish sooner: a file's last batch takes them all
    (`storage.usage.store_batch`'s `alone`)."""
    (threads,) = con.execute("SELECT current_setting('threads')").fetchall()[0]
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # a broken connection keeps the body's own error
            con.execute(f"SET threads = {int(threads)}")


class WriteSession:
    """One writer's connection, kept across the batches it stores back to back, each batch its own
    transaction (`batch`), as `open_write` runs one.

    Opening the file and closing it are most of a small batch's cost, and each close checkpoints: the
    rollups' partial row groups, written again at every close. A session keeps the connection until
    `hold_s` have passed since it opened it, then closes it after the batch in hand, so readers still get
    their turn within about that long; `close` ends it (and checkpoints). Every committed batch is in the
    write-ahead log, so a process killed between batches loses nothing that was committed.
    One thread at a time."""

    def __init__(self, path: Path, *, hold_s: float = HOLD_S, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.hold_s = hold_s
        self.timeout_s = timeout_s
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened = 0.0

    def __enter__(self) -> WriteSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> duckdb.DuckDBPyConnection:
        """The session's connection, opened (and the file migrated) unless it is open: a writer may do this
        before its first batch is ready (a new file's migrations take a quarter of a second)."""
        if self._con is None:
            let_readers_in(self.path)
            self._con = _open_for_writing(self.path, self.timeout_s)
            self._opened = time.monotonic()
        return self._con

    @contextmanager
    def batch(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, inside one transaction that commits when the body returns and is rolled back
        (the connection closed) when it raises."""
        con = self.open()
        try:
            try:
                con.execute("BEGIN TRANSACTION")
            except duckdb.Error as e:
                raise StorageError(f"cannot prepare the database {self.path}: {_first_line(e)}") from e
            try:
                yield con
            except BaseException as e:
                _rollback(con)
                if isinstance(e, duckdb.Error):
                    raise StorageError(f"writing to the database {self.path} failed: {_first_line(e)}") from e
                raise
            try:
                con.execute("COMMIT")
            except duckdb.Error as e:
                _rollback(con)
                raise StorageError(f"could not commit to the database {self.path}: {_first_line(e)}") from e
        except BaseException:
            self.close()
            raise
        if time.monotonic() - self._opened >= self.hold_s:
            self.close()

    def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            con.close()


def _open_for_writing(path: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """A read-write connection with every migration applied; the file and its folder created if needed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create the folder for the database {path}: {e.strerror}") from e
    if path.is_dir():
        raise StorageError(
            f"the database path {path} is a folder; give a file name like {path}/quotascope.duckdb"
        )
    shared = _shared_reads.get()
    if shared is not None:
        shared.release(path)
    con = _with_retry(lambda: _connect(path, read_only=False), path, timeout_s)
    try:
        without_vacuum(con)
        if _pending(con):
            migrate(con)
    except duckdb.Error as e:
        con.close()
        raise StorageError(f"cannot prepare the database {path}: {_first_line(e)}") from e
    except BaseException:
        con.close()
        raise
    return con


def without_vacuum(con: duckdb.DuckDBPyConnection) -> None:
    """No vacuum when the writer's checkpoints run (each close of a session, `HOLD_S` apart, and DuckDB's
    own when the write-ahead log passes its threshold).

    A batch of more than a row group (122,880 rows) is written straight into the file at commit, its last
    part row group as one of its own; the next checkpoint's vacuum merges such part row groups with their
    neighbours, compressing the batch's rows a second time: storing 250,000-row batches, each close then
    took 0.26-0.29 s, as long as the batch's own insert and commit, against 0.01 s without the vacuum
    (row groups aligned to 245,760 rows take 0.01 s either way; benchmarks/write_path.py measures it). What
    is given up: a part row group (4,240 rows of such a batch) stays one, and a row group holding deleted
    rows is not compacted; a row group whose rows are all deleted (a rollup merged in place) is still
    dropped. The setting is the database instance's, which only this writer holds; DuckDB before 1.2 lacks
    it and vacuums as before."""
    with contextlib.suppress(duckdb.CatalogException, duckdb.InvalidInputException):
        con.execute("SET max_vacuum_tasks = 0")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # nothing to roll back when the transaction was already aborted or never began
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


@contextmanager
def open_read(
    path: Path, *, timeout_s: float = LOCK_TIMEOUT_S, missing_hint: str = MISSING_DATABASE_HINT
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one query (or a few), waiting while a writer finishes its batch.

    A missing database raises `DatabaseMissingError` telling which command fills it. A file whose schema an
    older quotascope wrote is migrated first (briefly, as a writer), so readers always see every table.
    Inside `one_connection()` the reads of a file share one connection (each gets its own cursor).
    """
    path = Path(path)
    shared = _shared_reads.get()
    if shared is not None:
        with shared.cursor(path, timeout_s, missing_hint) as cursor:
            yield cursor
        return
    con = _open_read(path, timeout_s, missing_hint)
    try:
        yield con
    except duckdb.Error as e:
        raise StorageError(f"reading the database {path} failed: {_first_line(e)}") from e
    finally:
        con.close()


def _open_read(path: Path, timeout_s: float, missing_hint: str) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise DatabaseMissingError(f"there is no database at {path} yet: {missing_hint}")
    if path.is_dir():
        raise StorageError(f"the database path {path} is a folder, not a DuckDB file")
    con = _with_retry(lambda: _connect(path, read_only=True), path, timeout_s, reader=True)
    try:
        pending = _pending(con)
    except duckdb.Error as e:
        con.close()
        raise StorageError(f"{path} is not a quotascope database: {_first_line(e)}") from e
    if pending:
        con.close()
        with open_write(path, timeout_s=timeout_s):
            pass
        con = _with_retry(lambda: _connect(path, read_only=True), path, timeout_s, reader=True)
    return con


class _SharedReads:
    """The read-only connections of one `one_connection()` block, one per file, opened at its first read.

    Opening a DuckDB file costs 20-50 ms (its catalog is read again each time); a dashboard page makes
    10-20 reads, so a page run opening the file once instead of per read saves most of a first visit's
    fixed cost. Each read gets a cursor of the shared connection (a cursor is a connection of its own to
    the same open database, so a read nested in another never disturbs the outer one's result)."""

    def __init__(self) -> None:
        self.connections: dict[Path, duckdb.DuckDBPyConnection] = {}
        self.in_use: dict[Path, int] = {}

    @contextmanager
    def cursor(self, path: Path, timeout_s: float, missing_hint: str) -> Iterator[duckdb.DuckDBPyConnection]:
        key = path.absolute()
        con = self.connections.get(key)
        if con is None:
            con = self.connections[key] = _open_read(path, timeout_s, missing_hint)
        cursor = con.cursor()
        self.in_use[key] = self.in_use.get(key, 0) + 1
        try:
            yield cursor
        except duckdb.Error as e:
            raise StorageError(f"reading the database {path} failed: {_first_line(e)}") from e
        finally:
            self.in_use[key] -= 1
            cursor.close()

    def release(self, path: Path) -> None:
        """Close the shared connection to `path` so that this process can write to it (DuckDB refuses a
        writer beside a reader of the same file in one process)."""
        key = path.absolute()
        if self.in_use.get(key):
            raise StorageError(
                f"cannot write to {path} while this process reads it (a write inside a read of the same file)"
            )
        con = self.connections.pop(key, None)
        if con is not None:
            con.close()

    def close(self) -> None:
        for con in self.connections.values():
            con.close()
        self.connections.clear()


_shared_reads: contextvars.ContextVar[_SharedReads | None] = contextvars.ContextVar(
    "quotascope_shared_reads", default=None
)


@contextmanager
def one_connection() -> Iterator[None]:
    """Within this block every read of a file shares one read-only connection (`open_read`), opened at the
    first read and closed when the block ends: one dashboard page run, say. Held that long, the connection
    keeps a writer waiting for the rest of the block (writers retry with back-off), so keep blocks to one
    short unit of work. A write in the block to a file it reads closes the shared connection first; the next
    read opens it again. Per thread (and asyncio task): other threads open their own."""
    if _shared_reads.get() is not None:  # already inside one: the outer block owns the connections
        yield
        return
    shared = _SharedReads()
    token = _shared_reads.set(shared)
    try:
        yield
    finally:
        _shared_reads.reset(token)
        shared.close()


def _pending(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a migration this process knows is missing (asked of the table itself: a lookup in
    information_schema cost a tenth of a second per page on a file with the rollups' tables, and 12 ms
    of every write batch)."""
    wanted = {m.number for m in known_migrations()}
    try:
        have = {row[0] for row in con.execute("SELECT number FROM schema_migrations").fetchall()}
    except duckdb.CatalogException:
        return True
    return bool(wanted - have)


def query_frame(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
    """A query's result as a polars frame, through Arrow (no row-by-row conversion)."""
    import polars as pl

    table = con.sql(sql, params=list(params)).to_arrow_table()
    frame = pl.from_arrow(table) if table is not None else pl.DataFrame()
    assert isinstance(frame, pl.DataFrame)
    return frame
