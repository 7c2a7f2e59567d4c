"""Probe runs in a real DuckDB file: one transaction per run, and the dashboard's named queries."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from models.money import Money
from models.probe import LagStats, LoadPlan, ProbeRun, RequestResult, percentiles
from storage.db import DatabaseMissingError, StorageError, open_read
from storage.probes import probe_percentiles, probe_rate_limits, probe_results, probe_runs, write_probe_run

START = datetime(2026, 11, 20, 9, 0, 0)


def result(
    seq: int, ttft: float, *, phase: str = "c=1", error: str | None = None, **extra: object
) -> RequestResult:
    ok = error is None
    values: dict[str, object] = {
        "seq": seq,
        "phase": phase,
        "kind": "load",
        "intended_at": START + timedelta(seconds=seq),
        "concurrency": 1,
        "input_tokens_target": 100,
        "http_status": 200 if ok else 429,
        "error_class": error,
        "error": "" if ok else "HTTP 429: slow down",
        "ttft_ms": ttft if ok else None,
        "ttfo_ms": ttft + 50 if ok else None,
        "itl_ms": 10.0 if ok else None,
        "output_tokens_per_s": 100.0 + seq if ok else None,
        "e2e_ms": ttft + 300,
        "input_tokens": 100 if ok else None,
        "output_tokens": 30 if ok else None,
        "reasoning_tokens": 5 if ok else None,
        "cached_input_tokens": 0 if ok else None,
        "cost": Money(Decimal("0.000880"), "CNY") if ok else None,
        "ratelimit": {"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": str(9000 - seq)},
    }
    values.update(extra)
    return RequestResult(**values)  # type: ignore[arg-type]


def run(run_id: str, endpoint: str, results: list[RequestResult], started: datetime = START) -> ProbeRun:
    return ProbeRun(
        run_id=run_id,
        endpoint=endpoint,
        base_url="https://api.example/v1",
        model="deepseek-r1",
        offer_id="deepseek/deepseek-v4-pro",
        plan=LoadPlan(requests=len(results)),
        started_at=started,
        finished_at=started + timedelta(seconds=30),
        results=tuple(results),
        loop_lag=LagStats(0.4, 2.5, 7.0, 100),
    )


TTFTS = [310.0, 290.0, 450.0, 380.0, 1200.0, 330.0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "q.duckdb"
    first = [result(i, t) for i, t in enumerate(TTFTS)] + [result(6, 0, error="quota_429")]
    canary = result(7, 500, phase="canary", kind="canary", canary_id="potassium", canary_verdict="fail")
    write_probe_run(path, run("r1", "ark", [*first, canary]))
    write_probe_run(path, run("r2", "ark", [result(0, 400.0)], START + timedelta(hours=1)))
    write_probe_run(path, run("r3", "deepseek", [result(0, 900.0, phase="c=8")], START + timedelta(hours=2)))
    return path


def test_runs_over_time_carry_the_same_percentiles_as_the_summary(db: Path) -> None:
    runs = probe_runs(db)
    assert runs["run_id"].to_list() == ["r1", "r2", "r3"]
    first = runs.row(0, named=True)
    expected = percentiles(TTFTS, (50, 95, 99))
    assert first["ttft_p50_ms"] == pytest.approx(expected["p50"])
    assert first["ttft_p95_ms"] == pytest.approx(expected["p95"])
    assert first["ttft_p99_ms"] == pytest.approx(expected["p99"])
    assert (first["requests"], first["ok"], first["errors_quota_429"]) == (7, 6, 1)
    assert first["canary_pass_rate"] == 0.0
    assert first["cost"] == Decimal("0.0061600000")  # 6 load requests and the canary, 0.00088 CNY each
    assert first["cost_currency"] == "CNY" and first["loop_lag_p99_ms"] == 2.5
    assert probe_runs(db, endpoints=["deepseek"])["run_id"].to_list() == ["r3"]
    assert probe_runs(db, since=START + timedelta(minutes=30))["run_id"].to_list() == ["r2", "r3"]
    assert probe_runs(db, until=START + timedelta(minutes=30))["run_id"].to_list() == ["r1"]


def test_percentiles_per_endpoint_and_per_phase(db: Path) -> None:
    table = {row["endpoint"]: row for row in probe_percentiles(db).iter_rows(named=True)}
    assert table["ark"]["runs"] == 2 and table["ark"]["requests"] == 8
    assert table["ark"]["ttft_p50_ms"] == pytest.approx(percentiles([*TTFTS, 400.0], (50,))["p50"])
    assert table["deepseek"]["ttft_p50_ms"] == 900.0
    assert table["ark"]["cost"] == Decimal("0.0070400000")
    phases = probe_percentiles(db, endpoints=["ark"], by_phase=True)
    assert phases.select("phase").to_series().to_list() == ["c=1", "canary"]


def test_results_rows_in_send_order_with_headers_as_json(db: Path) -> None:
    rows = probe_results(db, run_id="r1")
    assert rows["seq"].to_list() == list(range(8))
    assert rows["error_class"].to_list()[6] == "quota_429"
    assert (
        rows["ratelimit_headers"][0]
        == '{"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "9000"}'
    )
    assert len(probe_results(db)) == 10


def test_rate_limits_announced_latest_per_endpoint(db: Path) -> None:
    limits = probe_rate_limits(db)
    assert limits.select("endpoint", "header", "value").rows() == [
        ("ark", "x-ratelimit-limit-tokens", "10000"),
        ("deepseek", "x-ratelimit-limit-tokens", "10000"),
    ]


def test_a_failed_write_leaves_the_database_as_it_was(db: Path) -> None:
    clash = run("r1", "ark", [result(0, 1.0), result(1, 2.0)])  # the run id exists
    with pytest.raises(StorageError):
        write_probe_run(db, clash)
    with open_read(db) as con:
        assert con.execute("SELECT count(*) FROM probe_results").fetchone() == (10,)
    bad = run("r9", "ark", [result(0, 1.0), replace(result(0, 2.0))])  # the same seq twice
    with pytest.raises(StorageError):
        write_probe_run(db, bad)
    assert "r9" not in probe_runs(db)["run_id"].to_list()


def test_reading_before_any_probe_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissingError, match="quotascope probe"):
        probe_runs(tmp_path / "none.duckdb")
