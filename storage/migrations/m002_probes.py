"""Probe runs and their per-request results (collectors/probe, `quotascope probe`).

Times in results are milliseconds from the request's *intended* send time (`reference/probe-metrics.md`).
No key, header value other than `x-ratelimit-*`, prompt or answer text is ever stored; `base_url` is kept
without credentials or query string.
"""

from __future__ import annotations

NUMBER = 2
NAME = "probes"

SQL = """
CREATE TABLE probe_runs (
    run_id            VARCHAR NOT NULL PRIMARY KEY,
    endpoint          VARCHAR NOT NULL,      -- the endpoints-file name, or `model@host` for an ad hoc probe
    base_url          VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    offer_id          VARCHAR,               -- the catalog offer that priced the probe's tokens
    profile           VARCHAR NOT NULL,      -- sequential, concurrency, rate, poisson, sweep
    plan              VARCHAR NOT NULL,      -- the load plan as JSON
    started_at        TIMESTAMP NOT NULL,    -- UTC
    finished_at       TIMESTAMP NOT NULL,
    requests          INTEGER NOT NULL,      -- sent (results stored)
    ok                INTEGER NOT NULL,
    not_sent          INTEGER NOT NULL,      -- planned but never sent (early stop, time budget)
    stopped_early     BOOLEAN NOT NULL,
    stop_reason       VARCHAR NOT NULL,
    canary_pass_rate  DOUBLE,                -- NULL when no canary was answered
    cost              DECIMAL(20, 10),       -- the probe's own cost under the offer; NULL if unpriced
    cost_currency     VARCHAR,
    loop_lag_p50_ms   DOUBLE NOT NULL,
    loop_lag_p99_ms   DOUBLE NOT NULL,
    loop_lag_max_ms   DOUBLE NOT NULL,
    summary           VARCHAR NOT NULL       -- the `quotascope probe --json` document
);

CREATE TABLE probe_results (
    run_id               VARCHAR NOT NULL,
    seq                  INTEGER NOT NULL,   -- order of dispatch within the run
    phase                VARCHAR NOT NULL,   -- `c=16`, `rate=5/s`, `poisson=5/s`, `sequential`, `canary`
    kind                 VARCHAR NOT NULL,   -- load or canary
    concurrency          INTEGER,            -- closed-loop phases
    input_tokens_target  INTEGER,            -- the prompt length asked for
    intended_at          TIMESTAMP NOT NULL, -- UTC: when the request was meant to leave
    send_delay_ms        DOUBLE NOT NULL,    -- actual send − intended: client-side queueing
    http_status          INTEGER,
    error_class          VARCHAR,            -- NULL when ok, else one of models.probe.ERROR_CLASSES
    error                VARCHAR NOT NULL,
    ttft_ms              DOUBLE,             -- first token of any kind (reasoning included)
    ttfo_ms              DOUBLE,             -- first answer-content token
    itl_ms               DOUBLE,
    output_tokens_per_s  DOUBLE,             -- output tokens / (last token − first token)
    e2e_ms               DOUBLE,
    input_tokens         INTEGER,            -- all prompt tokens, cached included
    cached_input_tokens  INTEGER,
    output_tokens        INTEGER,            -- all generated tokens, reasoning included
    reasoning_tokens     INTEGER,
    tokens_estimated     BOOLEAN NOT NULL,   -- counted by the client because usage lacked them
    finish_reason        VARCHAR,
    chunks               INTEGER NOT NULL,
    retry_after_s        DOUBLE,
    ratelimit_headers    VARCHAR NOT NULL,   -- JSON object of every x-ratelimit-* header as sent
    loop_lag_ms          DOUBLE NOT NULL,    -- worst client event-loop lag while the request was open
    client_saturated     BOOLEAN NOT NULL,
    cost                 DECIMAL(20, 10),
    cost_currency        VARCHAR,
    canary_id            VARCHAR,
    canary_verdict       VARCHAR,            -- pass, fail, unclear
    PRIMARY KEY (run_id, seq)
);
"""
