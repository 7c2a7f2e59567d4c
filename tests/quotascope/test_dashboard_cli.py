"""`quotascope dashboard` as a service manager runs it: stopped with SIGTERM, it takes Streamlit with it; the
server runs with the dashboard's allocator settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dashboard.serve import ALLOCATOR_ENV
from storage.db import open_write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_stops_the_dashboard_and_its_server(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    with open_write(db):  # an empty database, its schema applied
        pass
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quotascope.cli",
            "dashboard",
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            assert parent.poll() is None, "the dashboard exited before serving"
            assert time.monotonic() < deadline, "the dashboard did not become healthy in 60 s"
            time.sleep(0.3)
        # the Streamlit server runs with the allocator settings the app's memory figures were measured with
        (server,) = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        environ = dict(
            item.split("=", 1)
            for item in Path(f"/proc/{server}/environ").read_text().split("\0")
            if "=" in item
        )
        assert all(environ.get(k, "").endswith(options) for k, options in ALLOCATOR_ENV.items())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
        assert not _healthy(url), "Streamlit still serves after quotascope dashboard was stopped"
    finally:
        if parent.poll() is None:  # a failed check above: stop it as a service manager would, Streamlit too
            parent.send_signal(signal.SIGTERM)
            try:
                parent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                parent.kill()
