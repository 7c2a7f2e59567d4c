"""The ingestion guarantees: each record stored once however often a file is read (or after it grew), a killed
ingest leaves the database as before its batch and a re-run completes it, and a reader and a running ingest
never make each other fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.ingest import FileResult, files, pipeline
from storage import staging
from storage.db import open_read
from storage.reports import UsageFilter, read_usage_buckets
from tests.collectors.ingest_support import identity_holds, ingest, query, totals

ROOT = Path(__file__).resolve().parents[2]


def line(i: int, prompt: int, completion: int, *, with_id: bool = True) -> str:
    record = {
        "object": "chat.completion",
        "created": 1741000000 + i,
        "model": "deepseek-chat",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }
    if with_id:
        record["id"] = f"req-{i}"
    return json.dumps(record)


records = st.lists(
    st.tuples(
        st.integers(0, 40),  # record number: repeats are duplicates of one request
        st.integers(0, 5000),
        st.integers(0, 5000),
        st.booleans(),  # carries an id, or is keyed by a hash of its fields
        st.sampled_from(["ok", "ok", "ok", "bad-json", "bad-type", "blank"]),
    ),
    max_size=60,
)


def render(rows: list[tuple[int, int, int, bool, str]]) -> str:
    out = []
    for i, prompt, completion, with_id, kind in rows:
        text = line(i, prompt + i, completion, with_id=with_id)  # the same i means the same record
        if kind == "bad-json":
            text = text[:-5]
        elif kind == "bad-type":
            text = text.replace('"prompt_tokens": ', '"prompt_tokens": "').replace(
                ', "completion', '", "completion'
            )
        elif kind == "blank":
            text = "   "
        out.append(text)
    return "\n".join(out) + ("\n" if out else "")


def stored_rows(db: Path) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    return query(db, "SELECT record_key, ts, input_tokens, output_tokens FROM usage ORDER BY record_key")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=records, more=records, readers=st.permutations(["fast", "lines", "blocks"]))
def test_reingesting_changes_nothing_and_a_grown_file_adds_only_its_new_records(
    first: list[tuple[int, int, int, bool, str]],
    more: list[tuple[int, int, int, bool, str]],
    readers: list[str],
) -> None:
    reader, other = readers[0], readers[1]
    with tempfile.TemporaryDirectory() as folder:
        log, db, fresh = Path(folder) / "log.jsonl", Path(folder) / "q.duckdb", Path(folder) / "fresh.duckdb"
        log.write_text(render(first))
        (one,) = ingest(db, log, reader=reader)
        after_one = stored_rows(db)
        (two,) = ingest(db, log, reader=reader)
        assert stored_rows(db) == after_one  # re-reading stores nothing new
        assert identity_holds(one) and identity_holds(two)
        assert two.counts.stored == 0
        assert two.counts.duplicates == one.counts.stored + one.counts.duplicates
        assert two.counts.rejected == one.counts.rejected
        # the file grows: only what is new is stored, and the result is what one read of it gives
        with log.open("a") as handle:
            handle.write(render(more))
        (three,) = ingest(db, log, reader=reader)
        assert identity_holds(three)
        ingest(fresh, log, reader=other)  # another reader, in one go
        assert stored_rows(db) == stored_rows(fresh)
        keys = [r[0] for r in stored_rows(db)]
        assert len(keys) == len(set(keys))


def test_a_request_in_two_logs_is_stored_once_when_its_times_are_within_a_week(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    day = 86_400

    def log(name: str, shift_s: int, ids: range) -> Path:
        path = tmp_path / name
        records = [json.loads(line(i, 1000, 100)) for i in ids]
        for record in records:
            record["created"] += shift_s
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    (first,) = ingest(db, log("gateway.jsonl", 0, range(10)))
    assert first.counts.stored == 10
    # the same requests as another tool logged them, a day later (a batch finished the next day): duplicates
    (later,) = ingest(db, log("responses.jsonl", day, range(5)))
    assert (later.counts.stored, later.counts.duplicates) == (0, 5)
    # the same ids eight days on are other requests (only a week either side of a batch is searched)
    (reused,) = ingest(db, log("next-week.jsonl", 8 * day, range(5, 10)))
    assert (reused.counts.stored, reused.counts.duplicates) == (5, 0)
    assert query(db, "SELECT count(*), count(DISTINCT record_key) FROM usage") == [(15, 10)]
    # and reading any of them again stores nothing
    for name in ("gateway.jsonl", "responses.jsonl", "next-week.jsonl"):
        (again,) = ingest(db, tmp_path / name)
        assert again.counts.stored == 0 and identity_holds(again)


@pytest.mark.parametrize("reader", ["fast", "lines", "blocks"])
def test_an_id_repeated_weeks_apart_in_one_file_is_kept_alike_whatever_the_batches(
    tmp_path: Path, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one id at day 0, 5 and 10 (10 days from the one kept, 5 from the one dropped); another at day 0 and
    # twice at day 3 (duplicates of the first)
    day, log = 86_400, tmp_path / "log.jsonl"
    lines = [line(i, 1000, 100) for i in range(3000)]
    for at, shift in ((0, 0), (1000, 5 * day), (2999, 10 * day)):
        lines[at] = line(0, 1000, 100).replace('"created": 1741000000', f'"created": {1741000000 + shift}')
    lines[2000] = lines[1500] = line(1, 1000, 100).replace(
        '"created": 1741000001', f'"created": {1741000001 + 3 * day}'
    )
    log.write_text("\n".join(lines) + "\n")
    # small pieces, so that a file of 3000 lines can be stored in several batches
    monkeypatch.setattr(staging.LineStream.rows, "__defaults__", (250,))  # DuckDB's rows handed over
    monkeypatch.setattr(files, "BLOCK_BYTES", 16_384)  # bytes read at a time by the exact reader
    batches: list[int] = []
    store_batch = pipeline.store_batch

    def counted(*args: Any, **kwargs: Any) -> Any:
        batches.append(sum(t.num_rows for t in args[2]))
        return store_batch(*args, **kwargs)

    monkeypatch.setattr(pipeline, "store_batch", counted)

    def read(db: Path, rows: int) -> FileResult:
        batches.clear()
        (result,) = ingest(db, log, reader=reader, batch_rows=rows, min_batch_rows=rows, block_bytes=16_384)
        assert identity_holds(result)
        return result

    stored = []
    for rows in (100_000, 300):  # one batch, or many
        db = tmp_path / f"{rows}.duckdb"
        read(db, rows)
        filled = [n for n in batches if n]
        assert len(filled) == 1 if rows == 100_000 else len(filled) >= 5, filled
        stored.append(query(db, "SELECT record_key, ts FROM usage WHERE record_key IN ('req-0', 'req-1')"))
        for again in (100_000, 300):  # read again in other batches: nothing new
            assert read(db, again).counts.stored == 0
    assert sorted(stored[0]) == sorted(stored[1])
    kept = [key for key, _ in sorted(stored[0], key=lambda row: row[1])]
    assert kept == ["req-0", "req-1", "req-0"]  # req-0 at day 0 and 10, req-1 at day 0


def _big_log(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            out.write(line(i, 1000, 100) + "\n")


KILLABLE = textwrap.dedent(
    """
    import sys, time
    from contextlib import contextmanager
    from pathlib import Path
    import storage.db
    from collectors.ingest import IngestOptions, ingest_paths

    db, log, batch_rows, mode, hold_at, pause_s, marker = sys.argv[1:8]
    real_batch = storage.db.WriteSession.batch
    batches = 0

    @contextmanager
    def observed(session):
        # the real write transaction; on batch `hold_at`, once every statement has run and before the commit,
        # say how many rows were committed before it and wait there to be killed
        global batches
        batches += 1
        with real_batch(session) as con:
            ((committed,),) = con.execute(
                "SELECT coalesce(max(rows_stored), 0) FROM sources WHERE path = ?", [log]
            ).fetchall()
            yield con
            if batches == int(hold_at):
                Path(marker).write_text(str(committed))
                time.sleep(600)
        time.sleep(float(pause_s))  # room for readers between batches

    storage.db.WriteSession.batch = observed
    reader = "fast" if mode == "streamed" else "blocks"
    options = IngestOptions(batch_rows=int(batch_rows), reader=reader, block_bytes=1 << 20)
    ingest_paths(Path(db), [Path(log)], salt="s", options=options)
    """
)


def _locked(db: Path) -> bool:
    """True while another process holds the database (a batch is being written)."""
    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.IOException as e:
        return "lock" in str(e).lower()
    except duckdb.Error:
        return False
    return False


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["streamed", "blocks"])
def test_kill_9_during_a_batch_leaves_whole_batches_and_a_rerun_completes(tmp_path: Path, mode: str) -> None:
    db, log, marker = tmp_path / "q.duckdb", tmp_path / "big.jsonl", tmp_path / "holding"
    count = 200_000
    _big_log(log, count)
    ingest(db, Path(ROOT / "tests" / "data" / "usage" / "deepseek.jsonl"))  # what was there before
    before = totals(db)
    # the child holds its second batch's transaction open, all statements run, not committed: kill it there
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(db), str(log), "20000", mode, "2", "0", str(marker)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not marker.exists():
            time.sleep(0.01)
        assert marker.exists(), "the ingest never reached its second batch"
        assert _locked(db), "the batch's transaction is not open"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    committed_before_the_kill = int(marker.read_text())
    assert committed_before_the_kill > 0  # the first batch had committed
    # whole batches only: the rows stored for the killed run are exactly its committed counts, lines 1..n
    source_id, stored_count, finished = query(
        db, "SELECT source_id, rows_stored, finished_at IS NOT NULL FROM sources WHERE path = ?", [str(log)]
    )[0]
    assert not finished
    assert stored_count == committed_before_the_kill
    lines = query(
        db, "SELECT min(line_no), max(line_no), count(*) FROM usage WHERE source_id = ?", [source_id]
    )
    assert lines == [(1, stored_count, stored_count)]
    assert totals(db, "source_id = 1") == before  # what was there before is untouched
    # a re-run completes it: every record once
    (result,) = ingest(db, log, reader="fast" if mode == "streamed" else "blocks")
    assert result.counts.stored == count - stored_count and result.counts.duplicates == stored_count
    assert totals(db)["rows"] == before["rows"] + count
    assert query(db, "SELECT count(DISTINCT record_key) = count(*) FROM usage") == [(True,)]


@pytest.mark.slow
def test_a_reader_and_a_running_ingest_never_fail_each_other(tmp_path: Path) -> None:
    db, log = tmp_path / "q.duckdb", tmp_path / "big.jsonl"
    _big_log(log, 150_000)
    ingest(db, Path(ROOT / "tests" / "data" / "usage" / "deepseek.jsonl"))
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(db), str(log), "10000", "blocks", "0", "0.3", "-"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reads = 0
    seen: list[int] = []
    try:
        while process.poll() is None:
            frame = read_usage_buckets(db, UsageFilter(), ("day",))  # a dashboard's read: must not fail
            with open_read(db) as con:
                seen.append(int(con.execute("SELECT count(*) FROM usage").fetchall()[0][0]))
            reads += 1
            assert frame.height >= 1
    finally:
        _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert reads >= 3
    assert seen == sorted(seen)  # readers saw whole batches arrive, never a half one going away
    assert totals(db)["rows"] == 6 + 150_000


@pytest.mark.parametrize("reader", ["fast", "lines", "blocks"])
def test_every_reader_records_the_files_content_hash(tmp_path: Path, reader: str) -> None:
    log, db = tmp_path / "log.jsonl", tmp_path / "q.duckdb"
    _big_log(log, 50)
    ingest(db, log, reader=reader)
    expected = "xxh3-128:" + xxhash.xxh3_128(log.read_bytes()).hexdigest()
    assert query(db, "SELECT content_hash, rows_stored FROM sources") == [(expected, 50)]


def test_an_ingest_and_its_rollups_import_no_polars(tmp_path: Path) -> None:
    """polars costs a third of a second of one core to import; an ingest (rows, rollups, the long-context
    band rule they render) never needs it, so it is not paid on the writer's first batch."""
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from collectors.ingest import ingest_paths
        (result,) = ingest_paths(Path(sys.argv[1]), [Path(sys.argv[2])], salt="s")
        assert result.counts.stored > 0, result.counts
        print("polars" in sys.modules)
        """
    )
    sample = ROOT / "tests" / "data" / "usage" / "openai.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "q.duckdb"), str(sample)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert query(tmp_path / "q.duckdb", "SELECT count(*) FROM rollup_spend")[0][0] > 0
