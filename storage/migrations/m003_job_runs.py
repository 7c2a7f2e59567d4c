"""Scheduler records (collectors/scheduler, `quotascope schedule`): one row per job run, and watched files.

Every run a scheduler starts, skips or cancels is a `job_runs` row with its outcome and duration, so "did the
hourly probe run last night, and why not?" is a query. `watched_files` is the folder watcher's memory: what
size and modification time each file had when it was last ingested (or failed), so a restarted scheduler
reads only new or grown files. No key, prompt or log content is ever stored here.
"""

from __future__ import annotations

NUMBER = 3
NAME = "job_runs"

SQL = """
CREATE TABLE job_runs (
    run_id        VARCHAR NOT NULL PRIMARY KEY,
    session_id    VARCHAR NOT NULL,      -- one `quotascope schedule` process from start to stop
    job_id        VARCHAR NOT NULL,      -- the id in the schedule config, e.g. `probe:ark-r1`
    kind          VARCHAR NOT NULL,      -- probe, watch, catalog
    scheduled_at  TIMESTAMP,             -- UTC: when the trigger wanted the run (NULL for --once)
    started_at    TIMESTAMP NOT NULL,    -- UTC
    finished_at   TIMESTAMP NOT NULL,
    duration_ms   DOUBLE NOT NULL,
    outcome       VARCHAR NOT NULL CHECK (outcome IN ('ok', 'error', 'skipped')),
    error         VARCHAR,               -- one sentence; NULL when ok
    summary       VARCHAR NOT NULL       -- JSON object of counts (requests, files, rows...) for the kind
);

CREATE TABLE watched_files (
    job_id      VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,        -- absolute
    size_bytes  BIGINT NOT NULL,         -- size when the ingest that this row records began
    mtime_ns    BIGINT NOT NULL,         -- modification time then (ns since the epoch)
    state       VARCHAR NOT NULL CHECK (state IN ('ingested', 'failed')),
    error       VARCHAR,                 -- why it failed; it is read again once it changes
    seen_at     TIMESTAMP NOT NULL,      -- UTC
    PRIMARY KEY (job_id, path)
);
"""
