"""`quotascope schedule` as a user runs it: one-sentence config errors, --once, signals to a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from quotascope.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = EmulatorConfig().model


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(ttft_ms=20, tokens_per_s=400, output_tokens=8)) as server:
        yield server


def setup(tmp_path: Path, endpoints: dict[str, str], schedule: str, key_env: str | None = None) -> Path:
    key = f'api_key_env = "{key_env}"\n' if key_env else ""
    (tmp_path / "endpoints.toml").write_text(
        "\n".join(
            f'[[endpoint]]\nname = "{n}"\nbase_url = "{u}"\nmodel = "{MODEL}"\nconnect_timeout_s = 2\n{key}'
            for n, u in endpoints.items()
        )
    )
    path = tmp_path / "schedule.toml"
    path.write_text('[scheduler]\nendpoints = "endpoints.toml"\nshutdown_grace_s = 2\n' + schedule)
    return path


def table_text(db: Path) -> str:
    """Every row of every table as text: what a leak check searches."""
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return "\n".join(str(con.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names)


def test_a_malformed_config_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = setup(tmp_path, {"emu": "http://127.0.0.1:1/v1"}, "[[probe]]\nendpoint = 'emu'\nevery = 5\n")
    assert main(["schedule", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"quotascope: in {path}, job 'probe:emu', field 'every': unknown field (allowed: id, interval, "
        "cron, run_on_start, endpoint, requests, concurrency, rate_per_s, poisson, input_tokens, max_tokens, "
        "canary, max_duration_s, max_429_strikes, max_retry_wait_s, seed, ramp_s, warmup)\n"
    )
    assert main(["schedule", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml: no such file" in capsys.readouterr().err
    assert not (tmp_path / "quotascope.duckdb").exists()  # nothing was started


def test_an_unset_key_variable_stops_the_start_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emulator: EmulatorServer
) -> None:
    path = setup(
        tmp_path,
        {"emu": emulator.base_url},
        "[[probe]]\nendpoint = 'emu'\ninterval = { seconds = 5 }\n",
        key_env="EMU_API_KEY",
    )
    assert main(["schedule", "--config", str(path), "--once"]) == 2
    assert capsys.readouterr().err == (
        "quotascope: environment variable EMU_API_KEY is not set; endpoint 'emu' reads its API key from it\n"
    )


def test_once_runs_every_job_and_exits_1_when_one_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emulator: EmulatorServer
) -> None:
    (tmp_path / "incoming").mkdir()
    schedule = """
[[probe]]
endpoint = "emu"
interval = { minutes = 1 }
requests = 2

[[watch]]
folder = "incoming"

[catalog]
"""
    path = setup(tmp_path, {"emu": emulator.base_url}, schedule)
    assert main(["schedule", "--config", str(path), "--once", "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["runs"] == 3
    jobs = {j["job_id"]: (j["runs"], j["ok"], j["error"], j["skipped"]) for j in document["jobs"]}
    assert jobs == {"probe:emu": (1, 1, 0, 0), "watch:incoming": (1, 1, 0, 0), "catalog": (1, 1, 0, 0)}
    assert "probe:emu  ok" in captured.err and "2 requests, 2 ok" in captured.err  # progress on stderr

    path = setup(
        tmp_path, {"emu": emulator.base_url, "down": "http://127.0.0.1:1/v1"}, schedule.replace("emu", "down")
    )
    assert main(["schedule", "--config", str(path), "--once"]) == 1
    out = capsys.readouterr().out
    assert "probe:down  error" in out and "no request succeeded: 2 connection" in out
    assert "catalog  ok" in out and "watch:incoming  ok" in out  # the others ran all the same
    assert "\nstopped: 3 run(s) recorded in job_runs of " in out


def test_the_key_is_used_but_never_stored_or_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-4f9a1c0ffee5ecret"
    monkeypatch.setenv("EMU_API_KEY", secret)
    with EmulatorServer(EmulatorConfig(ttft_ms=5, output_tokens=4, require_api_key=True)) as guarded:
        path = setup(
            tmp_path,
            {"guarded": guarded.base_url, "down": "http://127.0.0.1:1/v1"},
            "[[probe]]\nendpoint = 'guarded'\ninterval = { minutes = 1 }\nrequests = 2\n"
            "[[probe]]\nendpoint = 'down'\ninterval = { minutes = 1 }\nrequests = 1\n",
            key_env="EMU_API_KEY",
        )
        assert main(["schedule", "--config", str(path), "--once"]) == 1
    captured = capsys.readouterr()
    assert "probe:guarded  ok" in captured.out  # the key was sent: the guarded emulator answered
    db = tmp_path / "quotascope.duckdb"
    for text in (captured.out, captured.err, table_text(db)):
        assert secret not in text and secret[-8:] not in text


@contextmanager
def scheduler_process(path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`quotascope schedule` in a child process; its output lines collect as they come."""
    process = subprocess.Popen(
        [sys.executable, "-m", "quotascope.cli", "schedule", "--config", str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        reader.join(timeout=5)
        stdout.close()


def _wait_for(lines: list[str], text: str, count: int = 1, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(text in line for line in list(lines)) < count:
        assert time.monotonic() < deadline, f"no {text!r} in {lines}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_stops_a_running_scheduler_cleanly(tmp_path: Path, emulator: EmulatorServer) -> None:
    (tmp_path / "incoming").mkdir()
    path = setup(
        tmp_path,
        {"emu": emulator.base_url, "down": "http://127.0.0.1:1/v1"},
        """
[[probe]]
endpoint = "emu"
interval = { seconds = 0.5 }
requests = 3

[[probe]]
endpoint = "down"
interval = { seconds = 0.5 }
requests = 1

[[watch]]
folder = "incoming"
interval = { seconds = 0.5 }
""",
    )
    with scheduler_process(path) as (process, lines):
        _wait_for(lines, "probe:emu  ok", count=2)
        _wait_for(lines, "probe:down  error", count=2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    output = "".join(lines)
    assert "quotascope: SIGTERM: stopping; running jobs get up to 2 s" in output
    assert "Traceback" not in output
    db = tmp_path / "quotascope.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        recorded = con.execute("SELECT job_id, outcome FROM job_runs").fetchall()
        probe_runs = con.execute("SELECT count(*) FROM probe_runs").fetchone()
    reported = [line for line in lines if "Z  " in line]
    assert len(recorded) == len(reported)  # every run printed is a row, and back
    assert f"stopped: {len(recorded)} run(s) recorded" in output
    ran = [r for r in recorded if r[1] != "skipped" and r[0].startswith("probe")]
    assert probe_runs == (len(ran),)  # each probe job run stored its whole probe run, none half


@pytest.mark.slow
def test_a_second_ctrl_c_cancels_a_stalled_probe_at_once(tmp_path: Path) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=60_000)) as stalled:
        path = setup(
            tmp_path,
            {"stalled": stalled.base_url},
            "[[probe]]\nendpoint = 'stalled'\ninterval = { minutes = 10 }\n[catalog]\n",
        )
        path.write_text(path.read_text().replace("shutdown_grace_s = 2", "shutdown_grace_s = 300"))
        with scheduler_process(path) as (process, lines):
            _wait_for(lines, "catalog  ok")
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            _wait_for(lines, "SIGINT: stopping; running jobs get up to 300 s")
            began = time.monotonic()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
            assert time.monotonic() - began < 10
    output = "".join(lines)
    assert "cancelling running jobs now" in output
    assert "probe:stalled  error" in output and "cancelled because the scheduler was stopping" in output
    with duckdb.connect(str(tmp_path / "quotascope.duckdb"), read_only=True) as con:
        assert con.execute("SELECT job_id, outcome FROM job_runs ORDER BY job_id").fetchall() == [
            ("catalog", "ok"),
            ("probe:stalled", "error"),
        ]
