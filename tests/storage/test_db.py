"""Connection discipline on real DuckDB files: migrations on open, one transaction per batch, read-only
readers, waiting out the other side's lock, and one clear sentence for every failure."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import storage.db
from storage import migrations
from storage.db import (
    DatabaseMissingError,
    StorageError,
    WriteSession,
    one_connection,
    open_read,
    open_write,
)

ROOT = Path(__file__).resolve().parents[2]


def test_open_write_creates_the_file_and_records_every_migration(tmp_path: Path) -> None:
    db = tmp_path / "new" / "folder" / "q.duckdb"
    with open_write(db) as con:
        recorded = con.execute("SELECT number, name FROM schema_migrations ORDER BY number").fetchall()
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert recorded == [(m.number, m.name) for m in migrations.discover()]
    assert {"usage", "sources", "rejects", "catalog_prices"} <= tables
    with open_write(db) as con:  # applied once only
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchall() == [(len(recorded),)]


def test_a_failing_batch_leaves_the_database_as_before(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with open_write(db) as con:
        con.execute("INSERT INTO rejects VALUES (1, 1, 'kept', NULL)")
    with (
        pytest.raises(StorageError, match=r"writing to the database .* failed: Catalog Error"),
        open_write(db) as con,
    ):
        con.execute("INSERT INTO rejects VALUES (1, 2, 'rolled back', NULL)")
        con.execute("SELECT * FROM no_such_table")
    with (
        pytest.raises(KeyError),
        open_write(db) as con,
    ):  # not a database error: passes through, still rolled back
        con.execute("INSERT INTO rejects VALUES (1, 3, 'rolled back too', NULL)")
        raise KeyError("boom")
    with open_read(db) as con:
        assert con.execute("SELECT reason FROM rejects").fetchall() == [("kept",)]


def _held(db: Path) -> bool:
    """Whether another connection holds the file for writing (a read-only open of it fails)."""
    try:
        subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}, read_only=True).close()"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError:
        return True
    return False


def test_a_session_keeps_its_connection_across_batches_until_its_hold_is_over(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with WriteSession(db, hold_s=60) as session:
        with session.batch() as first:
            first.execute("INSERT INTO rejects VALUES (1, 1, 'first', NULL)")
        with session.batch() as second:
            assert second is first  # no new connection, no checkpoint in between
            second.execute("INSERT INTO rejects VALUES (1, 2, 'second', NULL)")
        assert _held(db)  # between batches, within the hold
    assert not _held(db)  # closed with the session
    with WriteSession(db, hold_s=0) as session:
        with session.batch() as con:
            con.execute("INSERT INTO rejects VALUES (1, 3, 'third', NULL)")
        assert not _held(db)  # the hold over: closed after the batch, readers get their turn
    with open_read(db) as con:
        assert con.execute("SELECT reason FROM rejects ORDER BY line_no").fetchall() == [
            ("first",),
            ("second",),
            ("third",),
        ]


def test_a_writers_checkpoint_does_not_rewrite_the_part_row_groups_of_large_batches(tmp_path: Path) -> None:
    """Two batches of more than a row group (122,880 rows), each closed (checkpointed) after: each leaves
    its part row group as it was written (a vacuum would merge them, compressing those rows again), and
    every row still reads back."""
    db = tmp_path / "q.duckdb"
    with open_write(db) as con:
        con.execute("CREATE TABLE wide (i BIGINT, s VARCHAR)")
    for first in (0, 130_000):
        with open_write(db) as con:
            con.execute(f"INSERT INTO wide SELECT range, 'r' || range FROM range({first}, {first + 130_000})")
    with open_read(db) as con:
        groups = con.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('wide')"
        ).fetchall()[0][0]
        assert con.execute("SELECT count(*), count(DISTINCT i), sum(i) FROM wide").fetchall() == [
            (260_000, 260_000, 260_000 * 259_999 // 2)
        ]
    assert groups == 4  # 122,880 + 7,120 each; merged by a vacuum they would be 3


def test_a_failing_batch_of_a_session_is_rolled_back_and_ends_its_connection(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with WriteSession(db, hold_s=60) as session:
        with session.batch() as con:
            con.execute("INSERT INTO rejects VALUES (1, 1, 'kept', NULL)")
        with pytest.raises(StorageError, match="Catalog Error"), session.batch() as con:
            con.execute("INSERT INTO rejects VALUES (1, 2, 'rolled back', NULL)")
            con.execute("SELECT * FROM no_such_table")
        assert not _held(db)
        with session.batch() as con:  # the next batch opens the file again
            con.execute("INSERT INTO rejects VALUES (1, 3, 'after', NULL)")
    with open_read(db) as con:
        reasons = con.execute("SELECT reason FROM rejects ORDER BY line_no").fetchall()
    assert reasons == [("kept",), ("after",)]


def test_a_missing_database_names_the_command_that_fills_it(tmp_path: Path) -> None:
    with (
        pytest.raises(DatabaseMissingError, match=r"no database at .* `quotascope ingest FILE...`"),
        open_read(tmp_path / "absent.duckdb"),
    ):
        pass


def test_paths_that_are_not_databases(tmp_path: Path) -> None:
    text = tmp_path / "notes.duckdb"
    text.write_text("hello, I am not a database\n")
    with pytest.raises(StorageError, match="cannot open the database"), open_read(text):
        pass
    with pytest.raises(StorageError, match="is a folder"), open_write(tmp_path):
        pass


def test_a_reader_migrates_a_database_an_older_version_wrote(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_migrations (number INTEGER, name VARCHAR, applied_at TIMESTAMP)")
    con.close()
    with open_read(db) as reader:
        assert reader.execute("SELECT count(*) FROM usage").fetchall() == [(0,)]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from storage.db import open_write
    with open_write(Path(sys.argv[1])) as con:
        con.execute("INSERT INTO rejects VALUES (9, 9, 'from the other process', NULL)")
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _hold(db: Path, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_reader_waits_for_a_writers_batch_instead_of_failing(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with open_write(db):
        pass
    writer = _hold(db, 1.0)
    try:
        started = time.monotonic()
        with open_read(db) as con:
            rows = con.execute("SELECT reason FROM rejects").fetchall()
        waited = time.monotonic() - started
    finally:
        writer.communicate(timeout=30)
    assert rows == [("from the other process",)]  # it saw the committed batch, after waiting for it
    assert waited > 0.3


# Stores batches back to back in one session until told to stop (a line on stdin): one row, then a tenth of a
# second of work, per batch, as a busy receiver or ingest does.
BACK_TO_BACK = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from storage.db import WriteSession
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    n = 0
    with WriteSession(Path(sys.argv[1]), hold_s=float(sys.argv[2])) as session:
        while not stop.is_set():
            with session.batch() as con:
                n += 1
                con.execute("INSERT INTO rejects VALUES (1, ?, 'batch', NULL)", [n])
                time.sleep(0.1)
            if n == 3:
                print("storing", flush=True)
    """
)


def test_a_reader_gets_its_turn_from_a_writer_storing_back_to_back(tmp_path: Path) -> None:
    """Between two batches of a session the file is free only while the next one starts; the reader asks
    for its turn and the writer, before opening the file again, lets it in: read after read, each within
    about a hold and a batch, for as long as the writer keeps storing."""
    db = tmp_path / "q.duckdb"
    with open_write(db):
        pass
    hold_s = 0.3
    writer = subprocess.Popen(
        [sys.executable, "-c", BACK_TO_BACK, str(db), str(hold_s)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    waits: list[float] = []
    seen: list[int] = []
    try:
        assert writer.stdout.readline().strip() == "storing"
        for _ in range(8):
            asked = time.monotonic()
            with open_read(db) as con:
                waits.append(time.monotonic() - asked)
                seen.append(con.execute("SELECT count(*) FROM rejects").fetchall()[0][0])
            time.sleep(0.05)
    finally:
        writer.communicate("stop\n", timeout=30)
    assert writer.returncode == 0
    assert seen == sorted(seen) and seen[-1] > seen[0]  # the writer kept storing between the reads
    # a hold, the batch in hand and the reader's next try; room for a loaded machine, far below a starved
    # reader's wait (the writer never stops before the reader is done)
    assert max(waits) < hold_s + 3.0, waits


def test_a_lock_held_too_long_is_one_sentence(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with open_write(db):
        pass
    writer = _hold(db, 3.0)
    try:
        with (
            pytest.raises(StorageError, match=r"stayed locked for 0\.3 s by PID \d+ \(python -c import sys"),
            open_write(db, timeout_s=0.3),
        ):
            pass
    finally:
        writer.communicate(timeout=30)


def test_a_lock_wait_says_what_it_waits_for_and_names_the_holder_honestly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print(1, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline()
        with (
            caplog.at_level("WARNING", logger="quotascope.storage"),
            pytest.raises(StorageError) as raised,
            open_write(db, timeout_s=6),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    message = str(raised.value)
    # not a quotascope process: it is named by its PID and command line, not blamed on quotascope
    assert f"PID {holder.pid}" in message and "another quotascope process" not in message
    assert "python" in message and "stayed locked for 6 s" in message
    (told,) = [r.getMessage() for r in caplog.records if "waiting for the database" in r.getMessage()]
    assert str(db) in told and f"PID {holder.pid}" in told


def test_reads_in_one_connection_block_open_the_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "q.duckdb"
    with open_write(db) as con:
        con.execute("INSERT INTO rejects VALUES (1, 1, 'first', NULL)")
    opened: list[bool] = []
    connect = storage.db._connect

    def counted(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        opened.append(read_only)
        return connect(path, read_only=read_only)

    monkeypatch.setattr(storage.db, "_connect", counted)
    with one_connection():
        with open_read(db) as outer:
            outer_result = outer.execute("SELECT reason FROM rejects")
            with open_read(db) as inner:  # a read nested in another leaves the outer's result alone
                assert inner.execute("SELECT count(*) FROM rejects").fetchall() == [(1,)]
            assert outer_result.fetchall() == [("first",)]
        with open_read(db) as con:
            assert con.execute("SELECT count(*) FROM rejects").fetchall() == [(1,)]
        assert opened == [True]  # three reads, one open of the file
        with open_write(db) as con:  # a write closes the shared reader first, then reads see it
            con.execute("INSERT INTO rejects VALUES (1, 2, 'second', NULL)")
        with open_read(db) as con:
            assert con.execute("SELECT count(*) FROM rejects").fetchall() == [(2,)]
        assert opened == [True, False, True]
        with (
            open_read(db),
            pytest.raises(StorageError, match="while this process reads it"),
            open_write(db),
        ):
            pass
    # the block closed its connection: another process may write now
    write = "from pathlib import Path; import sys; from storage.db import open_write\n"
    write += "with open_write(Path(sys.argv[1]), timeout_s=2) as con: con.execute('DELETE FROM rejects')"
    done = subprocess.run([sys.executable, "-c", write, str(db)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_read_error_in_one_connection_block_is_one_sentence(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with open_write(db):
        pass
    with one_connection():
        with (
            pytest.raises(StorageError, match=r"reading the database .* failed: Catalog Error"),
            open_read(db) as con,
        ):
            con.execute("SELECT * FROM no_such_table")
        with open_read(db) as con:  # the shared connection survives a failed read
            assert con.execute("SELECT 1").fetchall() == [(1,)]
