"""`quotascope probe` and `quotascope emulate` as a user runs them; the API key never leaks anywhere."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from quotascope.cli import main
from storage.probes import probe_results, probe_runs

MODEL = EmulatorConfig().model
FAKE_KEY = "qs-fake-KEY-7f3a9c1e2b5d"  # recognisable, and not shaped like any real provider's key
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(ttft_ms=10, tokens_per_s=2000, output_tokens=6, require_api_key=True, rpm=600)
    with EmulatorServer(config) as server:
        yield server


def test_probe_json_summary_is_stored_and_never_shows_the_key(
    emulator: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("QS_TEST_KEY", FAKE_KEY)
    db = tmp_path / "probe.duckdb"
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every request at DEBUG
    code = main(
        [
            "probe",
            "--base-url",
            emulator.base_url,
            "--model",
            MODEL,
            "--api-key-env",
            "QS_TEST_KEY",
            "--concurrency",
            "1,2",
            "--ramp-s",
            "0.05",
            "--requests",
            "3",
            "--canary",
            "--db",
            str(db),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    for key in (
        "requests",
        "ok",
        "errors",
        "ttft_ms",
        "ttfo_ms",
        "output_tokens_per_s",
        "e2e_ms",
        "rate_limit",
    ):
        assert key in summary
    assert summary["requests"] == 6 + 6 and summary["ok"] == 12
    assert summary["warmup_requests"] == 1 and summary["ramp_s"] == 0.05 and not summary["burst"]
    assert summary["canary_pass_rate"] == 1.0
    assert summary["rate_limit"]["limits"]["requests"] == 600
    assert set(summary["ttft_ms"]) >= {"p50", "p95", "p99"}
    runs = probe_runs(db)
    assert runs["run_id"].to_list() == [summary["run_id"]]
    assert len(probe_results(db)) == 12 + 1  # the warm-up is stored (and priced), not in the figures
    assert caplog.records, "the check below needs httpx's debug logging to have run"
    for text in (out, err, caplog.text, *(str(r.__dict__) for r in caplog.records)):
        assert FAKE_KEY not in text
    for path in tmp_path.iterdir():
        assert FAKE_KEY.encode() not in path.read_bytes()


def test_a_burst_is_asked_for_and_says_so_and_the_default_ramp_is_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=10, tokens_per_s=2000, output_tokens=6)) as server:
        base = ["probe", "--base-url", server.base_url, "--model", MODEL, "--concurrency", "4"]
        assert main([*base, "--requests", "4", "--ramp-s", "0", "--no-store"]) == 0
        burst = capsys.readouterr().out
        assert main([*base, "--requests", "4", "--no-store"]) == 0
        ramped = capsys.readouterr().out
    assert "concurrency (burst), 4 requests" in burst and "burst: every concurrent worker started" in burst
    assert "burst" not in ramped and "workers started spread over" in ramped
    assert "1 warm-up request(s) first, not in the figures" in ramped


def test_a_key_the_server_echoes_back_is_redacted_before_storing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that quotes the key in its error message: the sentence is stored, the key is not."""
    import asyncio

    import httpx

    from collectors.probe import Endpoint, run_probe
    from models.probe import LoadPlan
    from storage.probes import write_probe_run

    def echo(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {key}"}})

    async def go() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
            return await run_probe(
                client, Endpoint("echo", "http://x/v1", "m"), LoadPlan(requests=2), api_key=FAKE_KEY
            )

    run = asyncio.run(go())
    db = tmp_path / "echo.duckdb"
    write_probe_run(db, run)  # type: ignore[arg-type]
    errors = probe_results(db)["error"].to_list()
    assert errors == ["HTTP 401: Incorrect API key provided: [redacted]"] * 2
    assert FAKE_KEY.encode() not in db.read_bytes()


def test_an_unset_key_variable_is_one_sentence_naming_it(
    emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["probe", "--base-url", emulator.base_url, "--model", MODEL, "--api-key-env", "QS_NOT_SET"])
    _out, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == (
        f"quotascope: environment variable QS_NOT_SET is not set; endpoint '{MODEL}@127.0.0.1:"
        f"{emulator.port}' reads its API key from it"
    )
    assert "Traceback" not in err


def test_probe_an_endpoint_named_in_the_endpoints_file(
    emulator: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoints = Path(os.environ["QUOTASCOPE_ENDPOINTS"])  # the sealed environment points it at tmp_path
    endpoints.write_text(
        f"""
[[endpoint]]
name = "local"
base_url = "{emulator.base_url}"
model = "{MODEL}"
api_key_env = "QS_TEST_KEY"
offer = "deepseek/deepseek-v4-pro"
read_timeout_s = 5
"""
    )
    monkeypatch.setenv("QS_TEST_KEY", FAKE_KEY)
    code = main(["probe", "--endpoint", "local", "--requests", "2", "--input-tokens", "100,1000"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "probe " in out and "of local" in out and "stored in" in out
    assert "probe cost:" in out and "CNY" in out  # priced under the shipped DeepSeek offer
    assert FAKE_KEY not in out + err
    runs = probe_runs(Path(os.environ["QUOTASCOPE_DB"]))
    assert runs["endpoint"].to_list() == ["local"] and runs["offer_id"].to_list() == [
        "deepseek/deepseek-v4-pro"
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--endpoint", "x", "--base-url", "http://x/v1"], "not both"),
        ([], "say what to probe"),
        (["--endpoint", "nope"], "no endpoint 'nope'"),
        (["--base-url", "http://x/v1", "--model", "m", "--poisson"], "--poisson needs --rate"),
        (["--base-url", "http://x/v1", "--model", "m", "--offer", "no/such"], "unknown offer"),
    ],
)
def test_probe_mistakes_are_one_sentence_with_exit_2(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(os.environ["QUOTASCOPE_ENDPOINTS"]).write_text("")
    code = main(["probe", *args])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.startswith("quotascope: ") and "Traceback" not in err


def test_a_probe_where_nothing_succeeds_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["probe", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--requests", "2", "--no-store"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "errors: connection 2" in out and "not stored" in out


def test_emulate_serves_until_stopped_and_the_probe_reaches_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "quotascope.cli", "emulate", "--port", "0", "--json", "--ttft-ms", "20",
         "--tokens-per-s", "500", "--output-tokens", "5", "--tpm", "100000", "--distilled", "--access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        started = json.loads(line)
        assert started["config"]["ttft_ms"] == 20 and started["config"]["distilled"] is True
        code = main(
            ["probe", "--base-url", started["base_url"], "--model", MODEL, "--requests", "2", "--canary",
             "--db", str(tmp_path / "e.duckdb"), "--json"]
        )  # fmt: skip
        summary = json.loads(capsys.readouterr().out)
    finally:
        emulator.terminate()
        access, log = emulator.communicate(timeout=10)
    assert code == 0
    assert summary["canary_pass_rate"] == 0.0  # the distilled emulator fails every canary
    assert summary["rate_limit"]["limits"]["tokens"] == 100_000
    assert "Finished server process" in log  # a graceful shutdown (uvicorn then re-raises the SIGTERM)
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in access  # uvicorn writes its access log to stdout


def test_ctrl_c_stops_the_probe_and_keeps_what_it_measured(tmp_path: Path) -> None:
    """A first Ctrl-C: nothing more is sent, the requests in flight finish, the run is stored, exit 130."""
    config = EmulatorConfig(ttft_ms=100, tokens_per_s=40, output_tokens=20)  # ~0.6 s a request
    db = tmp_path / "probe.duckdb"
    with EmulatorServer(config) as server:
        argv = ["probe", "--base-url", server.base_url, "--model", MODEL, "--concurrency", "2"]
        process = subprocess.Popen(
            [sys.executable, "-m", "quotascope.cli", *argv, "--requests", "60", "--db", str(db)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while (
                server.emulator.stats.requests < 4 and process.poll() is None and time.monotonic() < deadline
            ):
                time.sleep(0.05)  # the first requests (a signal before then finds no handler yet)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            process.kill()
        received = server.emulator.stats.requests - 1  # the first was the warm-up
    assert process.returncode == 130, err
    assert "stopping the probe" in err
    assert "interrupted" in out
    (run,) = probe_runs(db).to_dicts()
    assert run["stopped_early"] and run["stop_reason"].startswith("interrupted")
    assert 3 <= run["requests"] == run["ok"] == received < 60  # every request sent was finished and kept
    assert run["not_sent"] == 60 - received
