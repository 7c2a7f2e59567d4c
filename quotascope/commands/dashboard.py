"""`quotascope dashboard`: serve the Streamlit dashboard over an existing database."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from models.errors import InputError
from quotascope import settings
from quotascope.context import db_path

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "dashboard",
        parents=[parent],
        help="serve the dashboard (127.0.0.1:8501 by default)",
        description="Serve the Streamlit dashboard over a database (--db).",
    )
    p.add_argument(
        "--host", default=None, help=f"address to listen on (default {settings.get('dashboard_host')})"
    )
    p.add_argument("--port", type=int, default=None, help=f"port (default {settings.get('dashboard_port')})")
    p.set_defaults(run=run)


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def serve(db: Path, host: str, port: int, catalog: list[str]) -> int:
    """Run the dashboard in the foreground until interrupted."""
    env = dict(os.environ, QUOTASCOPE_DB=str(db.resolve()))
    if catalog:
        env["QUOTASCOPE_USER_CATALOG"] = os.pathsep.join(str(Path(c).resolve()) for c in catalog)
    print(f"quotascope dashboard on http://{host}:{port}  (database {db}; Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(streamlit_command(host, port), env=env)
    except KeyboardInterrupt:
        return 0


def run(args: argparse.Namespace) -> int:
    db = db_path(args)
    if not db.exists():
        raise InputError(
            f"no database at {db}; build one with `quotascope demo --no-serve` or `quotascope ingest`"
        )
    host = args.host or settings.get("dashboard_host")
    port = args.port or int(settings.get("dashboard_port"))
    return serve(db, host, port, args.catalog)
