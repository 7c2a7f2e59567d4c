"""`quotascope pull` as a user runs it, as a separate process: killed with SIGKILL at arbitrary moments and
run again, the database holds each pulled result exactly once and every recorded pull adds up."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from collectors.emulator import Billing, EmulatorConfig, EmulatorServer
from quotascope import settings
from storage.catalog import load_catalog
from tests.collectors.pull_support import ADMIN_KEY, send_traffic


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    catalog = load_catalog(Path(settings.get("catalog_dir")), [])
    config = EmulatorConfig(model="o1", ttft_ms=0, tokens_per_s=20_000, output_tokens=8)
    with EmulatorServer(config, billing=Billing(catalog)) as emulator:
        send_traffic(emulator, tmp_path_factory.mktemp("traffic") / "app.jsonl", 6, "openai")
        yield emulator


def pull_process(db: Path, kind: str, base_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "QUOTASCOPE_DB": str(db), "PULL_TEST_KEY": ADMIN_KEY}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quotascope.cli",
            "pull",
            kind,
            "--base-url",
            base_url,
            "--admin-key-env",
            "PULL_TEST_KEY",
            "--since",
            "2026-01-01",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_killed_pulls_leave_nothing_half_done(server: EmulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    rng = random.Random(7)
    for _ in range(6):
        for kind in ("openai-usage", "openai-costs"):
            process = pull_process(db, kind, server.base_url)
            time.sleep(rng.uniform(0.3, 2.5))  # start-up, fetching, normalising or storing
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)  # reaps it and closes its pipes
    for kind in ("openai-usage", "openai-costs"):
        process = pull_process(db, kind, server.base_url)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert ADMIN_KEY not in out + err
    with duckdb.connect(str(db), read_only=True) as con:
        usage = con.execute("SELECT count(*), sum(n_requests) FROM provider_usage").fetchone()
        costs = con.execute("SELECT count(*) FROM provider_costs").fetchone()
        runs = con.execute(
            "SELECT rows_read, rows_stored, rows_duplicate, rows_rejected FROM pull_runs"
        ).fetchall()
    assert usage == (1, 6) and costs == (3,)  # one day, one model: once, whatever was killed before
    assert all(read == stored + dup + rejected for read, stored, dup, rejected in runs)
    assert ADMIN_KEY.encode() not in db.read_bytes()
