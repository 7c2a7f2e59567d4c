"""Scheduler records: job runs and the folder watcher's file marks (writes), and named reads as polars frames.

Each write is one short batch through `open_write`, so a dashboard reading at the same time only waits for
that batch. The watcher's marks are read through a write connection too: the scheduler process may be
writing from another thread, and DuckDB lets one process hold a file in one mode only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from models.catalog import to_utc_naive
from models.money import plain
from storage.db import open_read, open_write, query_frame

Outcome = Literal["ok", "error", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "error", "skipped")
FileState = Literal["ingested", "failed"]


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of one scheduled job, as it ended (or why it never started)."""

    run_id: str
    session_id: str
    job_id: str
    kind: str
    scheduled_at: datetime | None  # UTC, naive
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    outcome: Outcome
    error: str | None = None  # one sentence; None when ok
    summary: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


@dataclass(frozen=True, slots=True)
class FileMark:
    """What a watched file looked like when it was last ingested (or failed to be)."""

    path: str
    size_bytes: int
    mtime_ns: int
    state: FileState
    error: str | None = None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _row(run: JobRun) -> list[Any]:
    return [
        run.run_id,
        run.session_id,
        run.job_id,
        run.kind,
        None if run.scheduled_at is None else to_utc_naive(run.scheduled_at),
        to_utc_naive(run.started_at),
        to_utc_naive(run.finished_at),
        run.duration_ms,
        run.outcome,
        run.error,
        json.dumps(dict(run.summary), default=_json_default, sort_keys=True),
    ]


def write_job_run(path: Path, run: JobRun, marks: Sequence[tuple[str, FileMark]] = ()) -> None:
    """Store one job run (and, for a folder watch, the file marks it leaves) in one transaction."""
    with open_write(path) as con:
        con.execute("INSERT INTO job_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(run))
        _write_marks(con, marks, run.finished_at)


def write_file_marks(path: Path, marks: Sequence[tuple[str, FileMark]], at: datetime) -> None:
    """Remember files a watch job has just ingested, as soon as each is stored (`(job_id, mark)` pairs)."""
    if marks:
        with open_write(path) as con:
            _write_marks(con, marks, at)


def _write_marks(con: duckdb.DuckDBPyConnection, marks: Sequence[tuple[str, FileMark]], at: datetime) -> None:
    if not marks:
        return
    con.executemany(
        "INSERT OR REPLACE INTO watched_files VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (job_id, m.path, m.size_bytes, m.mtime_ns, m.state, m.error, to_utc_naive(at))
            for job_id, m in marks
        ],
    )


def file_marks(path: Path, job_ids: Sequence[str]) -> dict[str, dict[str, FileMark]]:
    """The marks each watch job left, by job id then file path (creating the database if needed)."""
    out: dict[str, dict[str, FileMark]] = {job_id: {} for job_id in job_ids}
    if not job_ids:
        return out
    with open_write(path) as con:
        rows = con.execute(
            "SELECT job_id, path, size_bytes, mtime_ns, state, error FROM watched_files "
            f"WHERE job_id IN ({', '.join('?' for _ in job_ids)})",
            list(job_ids),
        ).fetchall()
    for job_id, file_path, size, mtime_ns, state, error in rows:
        out[job_id][file_path] = FileMark(file_path, int(size), int(mtime_ns), state, error)
    return out


# --------------------------------------------------------------------------------------------- queries


def _where(
    job_ids: Sequence[str] | None,
    session_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if job_ids:
        clauses.append(f"job_id IN ({', '.join('?' for _ in job_ids)})")
        params.extend(job_ids)
    if session_id is not None:
        clauses.append("session_id = ?")
        params.append(session_id)
    if since is not None:
        clauses.append("started_at >= ?")
        params.append(to_utc_naive(since))
    if until is not None:
        clauses.append("started_at < ?")
        params.append(to_utc_naive(until))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def job_runs(
    path: Path,
    job_ids: Sequence[str] | None = None,
    session_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """Every recorded run, oldest first (`summary` is the JSON text)."""
    where, params = _where(job_ids, session_id, since, until)
    sql = f"SELECT * FROM job_runs{where} ORDER BY started_at, finished_at, run_id"
    with open_read(path) as con:
        return query_frame(con, sql, params)


def job_summary(
    path: Path,
    job_ids: Sequence[str] | None = None,
    session_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """One row per job: runs by outcome, durations, and the latest run's outcome and error."""
    where, params = _where(job_ids, session_id, since, until)
    sql = f"""
        SELECT job_id, any_value(kind) AS kind, count(*) AS runs,
               count(*) FILTER (WHERE outcome = 'ok') AS ok,
               count(*) FILTER (WHERE outcome = 'error') AS error,
               count(*) FILTER (WHERE outcome = 'skipped') AS skipped,
               quantile_cont(duration_ms, 0.5) FILTER (WHERE outcome <> 'skipped') AS duration_p50_ms,
               max(duration_ms) AS duration_max_ms,
               min(started_at) AS first_started_at, max(started_at) AS last_started_at,
               arg_max(outcome, started_at) AS last_outcome,
               arg_max(error, started_at) FILTER (WHERE error IS NOT NULL) AS last_error
        FROM job_runs{where}
        GROUP BY job_id
        ORDER BY job_id
    """
    with open_read(path) as con:
        return query_frame(con, sql, params)
