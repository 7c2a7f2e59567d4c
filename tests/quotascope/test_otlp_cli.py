"""`quotascope otlp` and `quotascope schedule` with [otlp], as a user runs them: real processes, real
signals, a real exporter's requests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from collectors.scheduler import ScheduleConfigError, parse_schedule
from quotascope.cli import main
from tests.collectors.otlp_support import llm_attributes, request_of

ROOT = Path(__file__).resolve().parents[2]
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def start(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "QUOTASCOPE_SALT_FILE": str(tmp_path / "salt"),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "quotascope.cli", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def endpoint_from(stream: object, pattern: str = r"(http://127\.0\.0\.1:\d+)/v1/traces") -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        found = re.search(pattern, line)
        if found:
            return found.group(1)
    raise AssertionError("the receiver never said where it listens")


def test_otlp_receives_and_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "otlp.duckdb"
    process = start(
        [
            "otlp",
            "--db",
            str(db),
            "--port",
            "0",
            "--attribute",
            "team=service.name",
            "--token-env",
            "QS_TOKEN",
        ],
        tmp_path,
        {"QS_TOKEN": "tok-123"},
    )
    try:
        endpoint = endpoint_from(process.stdout)
        headers = {**PROTOBUF, "Authorization": "Bearer tok-123"}
        body = request_of([llm_attributes(n) for n in range(4)]).SerializeToString()
        assert httpx.post(endpoint + "/v1/traces", content=body, headers=headers).status_code == 200
        assert httpx.post(endpoint + "/v1/traces", content=body, headers=PROTOBUF).status_code == 401
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stored 4 + duplicates 0 + rejected 0" in out
    assert "tok-123" not in out + err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), min(team) FROM usage").fetchone() == (4, "checkout")


def test_a_request_in_flight_at_sigterm_is_committed_before_exit(tmp_path: Path) -> None:
    db = tmp_path / "otlp.duckdb"
    process = start(["otlp", "--db", str(db), "--port", "0"], tmp_path)
    try:
        endpoint = endpoint_from(process.stdout)
        body = request_of([llm_attributes(n) for n in range(3000)]).SerializeToString()
        with httpx.Client(timeout=60) as client:
            request = client.build_request("POST", endpoint + "/v1/traces", content=body, headers=PROTOBUF)
            import threading

            answers: list[int] = []
            sender = threading.Thread(target=lambda: answers.append(client.send(request).status_code))
            sender.start()
            time.sleep(0.3)  # the request is being decoded or waits for its commit
            process.send_signal(signal.SIGTERM)
            sender.join(timeout=60)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT count(*) FROM usage").fetchone()
    assert answers == [200]  # answered after its commit, although the stop came while it was handled
    assert stored == (3000,)


def test_mistakes_are_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["otlp", "--db", str(tmp_path / "x.duckdb"), "--token-env", "QS_UNSET_TOKEN"]) == 2
    assert "QS_UNSET_TOKEN" in capsys.readouterr().err
    assert main(["otlp", "--db", str(tmp_path / "x.duckdb"), "--attribute", "team=input.value"]) == 2
    assert "never stores" in capsys.readouterr().err


def test_schedule_runs_the_receiver_beside_its_jobs(tmp_path: Path) -> None:
    db = tmp_path / "sched.duckdb"
    config = tmp_path / "schedule.toml"
    config.write_text('[otlp]\nport = 0\nattributes = { project = "service.name" }\n\n[catalog]\n')
    process = start(["schedule", "--config", str(config), "--db", str(db)], tmp_path)
    try:
        endpoint = endpoint_from(process.stderr)
        body = request_of([llm_attributes(n) for n in range(2)]).SerializeToString()
        assert httpx.post(endpoint + "/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stored 2 + duplicates 0 + rejected 0" in err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), min(project) FROM usage").fetchone() == (2, "checkout")


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ({"otlp": {"port": 70000}}, "port number"),
        ({"otlp": {"attributes": {"team": "gen_ai.prompt.0.content"}}}, "never stores"),
        ({"otlp": {"attributes": {"colour": "service.name"}}}, "not a column"),
        ({"otlp": {"verbose": True}}, "unknown field"),
        ({"otlp": [{}]}, "not an array"),
    ],
)
def test_schedule_otlp_mistakes_name_the_field(toml: dict[str, object], complaint: str) -> None:
    with pytest.raises(ScheduleConfigError, match=complaint):
        parse_schedule(toml, "s.toml", Path(), None)


def test_an_otlp_only_schedule_is_a_schedule() -> None:
    config = parse_schedule({"otlp": {"attributes": {"team": "service.name"}}}, "s.toml", Path(), None)
    assert config.jobs == () and config.otlp is not None
    assert dict(config.otlp.attributes) == {"team": "service.name"}
