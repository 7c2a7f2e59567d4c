"""The real dashboard in a real browser: `streamlit run` as a subprocess, Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard.serve import server_env
from quotascope.commands.dashboard import streamlit_command

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningApp:
    def __init__(
        self, db: Path, env: dict[str, str], cwd: Path | None = None, port: int | None = None
    ) -> None:
        """`cwd`: the folder Streamlit starts in (its `.streamlit/secrets.toml` is read from there)."""
        self.port = port or free_port()
        self.store = env.get("QUOTASCOPE_STORE", "")  # where usage is read: the DuckDB file unless named
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = db.with_suffix(".streamlit.log")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                streamlit_command("127.0.0.1", self.port),
                env=server_env({**os.environ, **env, "QUOTASCOPE_DB": str(db)}),  # as `quotascope dashboard`
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError("streamlit did not become healthy in 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, and
    tests that call asyncio.run() after it must not find one running."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def chdb_copy_apart(db: Path, folder: Path) -> str:
    """The store URL of `db`'s usage copied into the chdb folder `folder` by another process: chdb serves one
    folder per process (this one serves the session's), so a dashboard server started as a subprocess can
    open `folder` once the copying process has exited."""
    copy = (
        "import sys; from pathlib import Path; from tests.conftest import usage_in_chdb; "
        "print(usage_in_chdb(Path(sys.argv[1]), Path(sys.argv[2]), 'apart'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", copy, str(db), str(folder)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.fixture(scope="session")
def demo_chdb_apart(demo_db: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo's usage in a chdb folder of its own, for a dashboard server to read (`chdb_copy_apart`)."""
    return chdb_copy_apart(demo_db[0], tmp_path_factory.mktemp("chdb-apart"))
