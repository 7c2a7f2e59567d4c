"""Storing probe runs and the named queries the dashboard reads them with (polars frames).

A run and all its results are written in one batch (one transaction): a killed probe leaves no half run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from models.catalog import to_utc_naive
from models.errors import QuotascopeError
from models.money import plain
from models.probe import TTFT_DEFINITIONS, ProbeRun, RequestResult, summarize
from storage.db import open_read, open_write, query_frame, scalar
from storage.normalise import Reject

_RESULT_SCHEMA: dict[str, Any] = {
    "run_id": pl.String,
    "seq": pl.Int32,
    "phase": pl.String,
    "kind": pl.String,
    "concurrency": pl.Int32,
    "input_tokens_target": pl.Int32,
    "intended_at": pl.Datetime("us"),
    "send_delay_ms": pl.Float64,
    "http_status": pl.Int32,
    "error_class": pl.String,
    "error": pl.String,
    "ttft_ms": pl.Float64,
    "ttfo_ms": pl.Float64,
    "itl_ms": pl.Float64,
    "output_tokens_per_s": pl.Float64,
    "e2e_ms": pl.Float64,
    "input_tokens": pl.Int32,
    "cached_input_tokens": pl.Int32,
    "output_tokens": pl.Int32,
    "reasoning_tokens": pl.Int32,
    "tokens_estimated": pl.Boolean,
    "finish_reason": pl.String,
    "chunks": pl.Int32,
    "retry_after_s": pl.Float64,
    "ratelimit_headers": pl.String,
    "loop_lag_ms": pl.Float64,
    "client_saturated": pl.Boolean,
    "cost": pl.Decimal(20, 10),
    "cost_currency": pl.String,
    "canary_id": pl.String,
    "canary_verdict": pl.String,
}


def _result_row(run_id: str, r: RequestResult) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "seq": r.seq,
        "phase": r.phase,
        "kind": r.kind,
        "concurrency": r.concurrency,
        "input_tokens_target": r.input_tokens_target,
        "intended_at": r.intended_at,
        "send_delay_ms": r.send_delay_ms,
        "http_status": r.http_status,
        "error_class": r.error_class,
        "error": r.error,
        "ttft_ms": r.ttft_ms,
        "ttfo_ms": r.ttfo_ms,
        "itl_ms": r.itl_ms,
        "output_tokens_per_s": r.output_tokens_per_s,
        "e2e_ms": r.e2e_ms,
        "input_tokens": r.input_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "output_tokens": r.output_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "tokens_estimated": r.tokens_estimated,
        "finish_reason": r.finish_reason,
        "chunks": r.chunks,
        "retry_after_s": r.retry_after_s,
        "ratelimit_headers": json.dumps(dict(sorted(r.ratelimit.items()))),
        "loop_lag_ms": r.loop_lag_ms,
        "client_saturated": r.client_saturated,
        "cost": r.cost.amount.quantize(Decimal("1e-10")) if r.cost is not None else None,
        "cost_currency": r.cost.currency if r.cost is not None else None,
        "canary_id": r.canary_id,
        "canary_verdict": r.canary_verdict,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


_RUN_COLUMNS = (
    "run_id, endpoint, base_url, model, offer_id, profile, plan, started_at, finished_at, requests, ok, "
    "not_sent, stopped_early, stop_reason, canary_pass_rate, cost, cost_currency, loop_lag_p50_ms, "
    "loop_lag_p99_ms, loop_lag_max_ms, summary, tool, ttft_definition, source_id"
)


def _run_row(run: ProbeRun, source_id: int | None) -> list[Any]:
    summary = summarize(run)
    cost = summary["cost"]
    return [
        run.run_id,
        run.endpoint,
        run.base_url,
        run.model,
        run.offer_id,
        run.plan.profile,
        json.dumps(run.plan.to_json()),
        run.started_at,
        run.finished_at,
        summary["requests"],
        summary["ok"],
        run.not_sent,
        run.stopped_early,
        run.stop_reason,
        summary["canary_pass_rate"],
        Decimal(cost["amount"]) if cost else None,
        cost["currency"] if cost else None,
        run.loop_lag.p50_ms,
        run.loop_lag.p99_ms,
        run.loop_lag.max_ms,
        json.dumps(summary, default=_json_default),
        run.tool,
        TTFT_DEFINITIONS[run.tool],
        source_id,
    ]


def _store_run(
    con: duckdb.DuckDBPyConnection, run: ProbeRun, source_id: int | None, merge: bool = False
) -> tuple[int, int]:
    """Store `run` inside the caller's transaction: (results stored, results already there).

    With `merge`, a run read again (a peer's file imported twice, or grown since) keeps its stored results,
    gains the new ones, and has its row recomputed from the whole run as read now; without, a run id that
    exists is an error (a probe's runs are written once).
    """
    rows = con.execute("SELECT seq FROM probe_results WHERE run_id = ?", [run.run_id]).fetchall()
    stored_seqs = {seq for (seq,) in rows} if merge else set()
    row = _run_row(run, source_id)
    if merge and scalar(con, "SELECT count(*) FROM probe_runs WHERE run_id = ?", [run.run_id]):
        names = [name.strip() for name in _RUN_COLUMNS.split(",")][1:]
        assignments = ", ".join(f"{name} = ?" for name in names)
        con.execute(f"UPDATE probe_runs SET {assignments} WHERE run_id = ?", [*row[1:], run.run_id])
    else:
        con.execute(f"INSERT INTO probe_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
    new = [r for r in run.results if r.seq not in stored_seqs]
    if new:
        results = pl.DataFrame([_result_row(run.run_id, r) for r in new], schema=_RESULT_SCHEMA, orient="row")
        con.register("new_probe_results", results)
        con.execute(f"INSERT INTO probe_results SELECT {', '.join(_RESULT_SCHEMA)} FROM new_probe_results")
        con.unregister("new_probe_results")
    return len(new), len(run.results) - len(new)


def write_probe_run(path: Path, run: ProbeRun) -> None:
    """Store one run and its results in one transaction."""
    with open_write(path) as con:
        _store_run(con, run, None)


@dataclass(frozen=True)
class ImportCounts:
    """One import of a peer's result file: `read = stored + duplicates + rejected`, always."""

    source_id: int
    read: int
    stored: int
    duplicates: int
    rejected: int
    runs: tuple[str, ...]


def store_probe_import(
    path: Path,
    file: Path,
    file_format: str,
    content_hash: str,
    runs: Sequence[ProbeRun],
    read: int,
    rejects: Sequence[Reject],
) -> ImportCounts:
    """Store the runs read from one peer file, its rejects and its counts as one `sources` row, in one
    transaction: a killed import leaves nothing; importing the file again stores each record once."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_write(path) as con:
        source_id = int(
            scalar(
                con,
                "INSERT INTO sources (path, size_bytes, content_hash, format, started_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING source_id",
                [str(file.resolve()), file.stat().st_size, content_hash, file_format, now],
            )
        )
        stored = duplicates = 0
        for run in runs:
            new, old = _store_run(con, run, source_id, merge=True)
            stored, duplicates = stored + new, duplicates + old
        if rejects:
            con.execute(
                "INSERT INTO rejects SELECT $source_id, unnest($lines), unnest($reasons), unnest($excerpts)",
                {
                    "source_id": source_id,
                    "lines": [r.line_no for r in rejects],
                    "reasons": [r.reason for r in rejects],
                    "excerpts": [r.excerpt for r in rejects],
                },
            )
        if stored + duplicates + len(rejects) != read:
            raise QuotascopeError(
                f"{file}: {read} records read but {stored} stored, {duplicates} duplicates and "
                f"{len(rejects)} rejected: nothing was stored"
            )
        con.execute(
            "UPDATE sources SET rows_read = ?, rows_stored = ?, rows_duplicate = ?, rows_rejected = ?, "
            "finished_at = ? WHERE source_id = ?",
            [read, stored, duplicates, len(rejects), datetime.now(UTC).replace(tzinfo=None), source_id],
        )
    return ImportCounts(source_id, read, stored, duplicates, len(rejects), tuple(r.run_id for r in runs))


# --------------------------------------------------------------------------------------------- queries


def _where(
    endpoints: Sequence[str] | None, since: datetime | None, until: datetime | None, alias: str = "r"
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if endpoints:
        clauses.append(f"{alias}.endpoint IN ({', '.join('?' for _ in endpoints)})")
        params.extend(endpoints)
    if since is not None:
        clauses.append(f"{alias}.started_at >= ?")
        params.append(to_utc_naive(since))
    if until is not None:
        clauses.append(f"{alias}.started_at < ?")
        params.append(to_utc_naive(until))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


_QUANTILES = """
    count(*) FILTER (WHERE p.kind = 'load')                                           AS requests,
    count(*) FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL)                  AS ok,
    count(*) FILTER (WHERE p.error_class = 'quota_429')                                AS errors_quota_429,
    count(*) FILTER (WHERE p.error_class = 'overload_5xx')                             AS errors_overload_5xx,
    count(*) FILTER (WHERE p.error_class = 'timeout')                                  AS errors_timeout,
    count(*) FILTER (WHERE p.error_class = 'connection')                               AS errors_connection,
    count(*) FILTER (WHERE p.error_class = 'protocol')                                 AS errors_protocol,
    count(*) FILTER (WHERE p.error_class = 'client_4xx')                               AS errors_client_4xx,
    quantile_cont(p.ttft_ms, 0.5)  FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS ttft_p50_ms,
    quantile_cont(p.ttft_ms, 0.95) FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS ttft_p95_ms,
    quantile_cont(p.ttft_ms, 0.99) FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS ttft_p99_ms,
    quantile_cont(p.ttfo_ms, 0.5)  FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS ttfo_p50_ms,
    quantile_cont(p.ttfo_ms, 0.95) FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS ttfo_p95_ms,
    quantile_cont(p.e2e_ms, 0.5)   FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS e2e_p50_ms,
    quantile_cont(p.e2e_ms, 0.95)  FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS e2e_p95_ms,
    quantile_cont(p.e2e_ms, 0.99)  FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS e2e_p99_ms,
    quantile_cont(p.output_tokens_per_s, 0.5)
        FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL)                  AS output_tokens_per_s_p50,
    quantile_cont(p.itl_ms, 0.5)   FILTER (WHERE p.kind = 'load' AND p.error_class IS NULL) AS itl_p50_ms,
    avg(CASE p.canary_verdict WHEN 'pass' THEN 1.0 WHEN 'fail' THEN 0.0 WHEN 'unclear' THEN 0.0 END)
                                                                                       AS canary_pass_rate,
    count(*) FILTER (WHERE p.client_saturated)                                         AS client_saturated
"""


def probe_runs(
    path: Path,
    endpoints: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """One row per run, oldest first: results over time per endpoint (percentiles, errors, canary, cost)."""
    where, params = _where(endpoints, since, until)
    sql = f"""
        SELECT r.run_id, r.endpoint, r.model, r.offer_id, r.profile, r.started_at, r.finished_at,
               r.stopped_early, r.stop_reason, r.not_sent, r.cost, r.cost_currency,
               r.loop_lag_p99_ms, coalesce(r.tool, 'quotascope') AS tool, r.ttft_definition, {_QUANTILES}
        FROM probe_runs r LEFT JOIN probe_results p USING (run_id)
        {where}
        GROUP BY ALL
        ORDER BY r.started_at, r.run_id
    """
    with open_read(path) as con:
        return query_frame(con, sql, params)


def probe_percentiles(
    path: Path,
    endpoints: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by_phase: bool = False,
) -> pl.DataFrame:
    """Percentiles over every run in the window, per endpoint and the tool that measured it (tools time TTFT
    differently, so their runs are never pooled), and per load phase with `by_phase`."""
    where, params = _where(endpoints, since, until)
    phase = ", p.phase" if by_phase else ""
    sql = f"""
        SELECT r.endpoint, coalesce(r.tool, 'quotascope') AS tool{phase}, count(DISTINCT r.run_id) AS runs,
               min(r.started_at) AS first_run, max(r.started_at) AS last_run,
               any_value(r.ttft_definition) AS ttft_definition, {_QUANTILES},
               sum(p.cost) AS cost, any_value(p.cost_currency) AS cost_currency
        FROM probe_runs r JOIN probe_results p USING (run_id)
        {where}
        GROUP BY r.endpoint, coalesce(r.tool, 'quotascope'){phase}
        ORDER BY r.endpoint, tool{phase}
    """
    with open_read(path) as con:
        return query_frame(con, sql, params)


def probe_results(
    path: Path,
    run_id: str | None = None,
    endpoints: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """Per-request rows (with the run's endpoint and model), in send order."""
    where, params = _where(endpoints, since, until)
    if run_id is not None:
        where += (" AND " if where else " WHERE ") + "r.run_id = ?"
        params.append(run_id)
    sql = f"""
        SELECT r.endpoint, r.model, p.*
        FROM probe_runs r JOIN probe_results p USING (run_id)
        {where}
        ORDER BY r.started_at, p.run_id, p.seq
    """
    with open_read(path) as con:
        return query_frame(con, sql, params)


def probe_rate_limits(path: Path, endpoints: Sequence[str] | None = None) -> pl.DataFrame:
    """The latest value of every `x-ratelimit-limit-*` header each endpoint announced, and when."""
    where, params = _where(endpoints, None, None)
    sql = f"""
        WITH headers AS (
            SELECT r.endpoint, p.intended_at, unnest(json_keys(p.ratelimit_headers)) AS header,
                   p.ratelimit_headers AS document
            FROM probe_runs r JOIN probe_results p USING (run_id)
            {where}
        )
        SELECT endpoint, header,
               arg_max(json_extract_string(document, '$."' || header || '"'), intended_at) AS value,
               max(intended_at) AS seen_at
        FROM headers
        WHERE header LIKE 'x-ratelimit-limit-%'
        GROUP BY endpoint, header
        ORDER BY endpoint, header
    """
    with open_read(path) as con:
        return query_frame(con, sql, params)
