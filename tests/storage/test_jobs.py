"""job_runs and watched_files: written in one batch each, read back by the named queries, on a real file."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from storage.db import StorageError, open_write
from storage.jobs import FileMark, JobRun, file_marks, job_runs, job_summary, write_file_marks, write_job_run

T0 = datetime(2026, 11, 23, 9, 0, 0)


def a_run(job_id: str, outcome: str, at: datetime, *, session: str = "s1", **extra: object) -> JobRun:
    duration = 250.0 if outcome != "skipped" else 0.0
    return JobRun(
        run_id=uuid.uuid4().hex,
        session_id=session,
        job_id=job_id,
        kind=job_id.split(":")[0],
        scheduled_at=at,
        started_at=at + timedelta(milliseconds=5),
        finished_at=at + timedelta(milliseconds=5 + duration),
        duration_ms=duration,
        outcome=outcome,  # type: ignore[arg-type]
        error=None if outcome == "ok" else f"{outcome} because of reasons",
        summary=extra,
    )


def test_a_run_reads_back_as_written(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    run = a_run("probe:emu", "ok", T0, requests=5, ok=3, errors={"quota_429": 2})
    write_job_run(db, run)
    rows = job_runs(db).to_dicts()
    assert len(rows) == 1
    row = rows[0]
    assert row["run_id"] == run.run_id
    assert (row["job_id"], row["kind"], row["outcome"], row["error"]) == ("probe:emu", "probe", "ok", None)
    assert row["scheduled_at"] == T0
    assert row["started_at"] == run.started_at and row["finished_at"] == run.finished_at
    assert row["duration_ms"] == 250.0
    assert json.loads(row["summary"]) == {"requests": 5, "ok": 3, "errors": {"quota_429": 2}}


def test_outcome_is_one_of_three(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outcome"):
        a_run("probe:emu", "cancelled", T0)
    db = tmp_path / "q.duckdb"
    write_job_run(db, a_run("probe:emu", "ok", T0))
    # the table refuses it too, whoever writes
    with pytest.raises(StorageError), open_write(db) as con:
        con.execute(
            "INSERT INTO job_runs VALUES ('x', 's', 'j', 'probe', NULL, ?, ?, 1, 'maybe', NULL, '{}')",
            [T0, T0],
        )
    assert len(job_runs(db)) == 1


def test_summary_counts_outcomes_per_job(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    outcomes = {
        "probe:emu": ["ok", "ok", "skipped", "ok"],
        "probe:down": ["error", "error", "error"],
        "watch:incoming": ["ok", "error", "ok"],
    }
    for job_id, sequence in outcomes.items():
        for i, outcome in enumerate(sequence):
            write_job_run(db, a_run(job_id, outcome, T0 + timedelta(seconds=10 * i)))
    write_job_run(db, a_run("probe:emu", "ok", T0, session="other"))
    summary = {row["job_id"]: row for row in job_summary(db, session_id="s1").to_dicts()}
    assert set(summary) == set(outcomes)
    for job_id, sequence in outcomes.items():
        row = summary[job_id]
        assert row["runs"] == len(sequence)
        assert (row["ok"], row["error"], row["skipped"]) == tuple(
            sequence.count(o) for o in ("ok", "error", "skipped")
        )
        assert row["last_outcome"] == sequence[-1]
    assert summary["watch:incoming"]["last_error"] == "error because of reasons"
    assert summary["probe:emu"]["last_error"] == "skipped because of reasons"
    assert summary["probe:emu"]["duration_p50_ms"] == 250.0  # skipped runs do not count as fast runs
    assert len(job_runs(db, session_id="other")) == 1
    assert len(job_runs(db, job_ids=["probe:down"])) == 3
    assert len(job_runs(db, since=T0 + timedelta(seconds=15))) == 4


def test_file_marks_are_replaced_per_job_and_path(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    first = FileMark("/logs/a.jsonl", 100, 1_000, "ingested")
    write_file_marks(db, [("watch:a", first), ("watch:b", first)], T0)
    grown = FileMark("/logs/a.jsonl", 250, 2_000, "failed", "the gzip data ends early")
    write_job_run(db, a_run("watch:a", "error", T0), [("watch:a", grown)])
    marks = file_marks(db, ["watch:a", "watch:b", "watch:c"])
    assert marks == {"watch:a": {"/logs/a.jsonl": grown}, "watch:b": {"/logs/a.jsonl": first}, "watch:c": {}}


def test_a_failed_batch_leaves_neither_run_nor_marks(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    run = a_run("watch:a", "ok", T0)
    write_job_run(db, run)
    mark = FileMark("/logs/b.jsonl", 1, 1, "ingested")
    with pytest.raises(StorageError):
        write_job_run(db, run, [("watch:a", mark)])  # the same run id again: the whole batch is refused
    assert len(job_runs(db)) == 1
    assert file_marks(db, ["watch:a"]) == {"watch:a": {}}


def test_threads_of_one_process_record_concurrently(tmp_path: Path) -> None:
    """The scheduler's jobs write from several threads; every run must land (DuckDB opens race)."""
    db = tmp_path / "q.duckdb"
    with open_write(db):
        pass
    failures: list[BaseException] = []

    def record(job: int) -> None:
        for i in range(25):
            try:
                write_job_run(db, a_run(f"probe:{job}", "ok", T0 + timedelta(seconds=i)))
            except BaseException as e:  # collected: the assertion below names them
                failures.append(e)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(job_runs(db)) == 100
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT run_id) FROM job_runs").fetchone() == (100,)
