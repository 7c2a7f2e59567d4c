"""`quotascope dashboard`: serve the Streamlit dashboard over an existing database."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import signal
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from dashboard.serve import server_env
from models.access import oidc_providers
from models.errors import InputError
from quotascope import settings
from quotascope.arguments import whole
from quotascope.context import store_from
from storage.store import ClickHouseTarget
from storage.users import sign_in_configured

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
    p.add_argument(
        "--port", type=whole, default=None, help=f"port (default {settings.get('dashboard_port')})"
    )
    p.set_defaults(run=run)


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dashboard.serve",  # streamlit, with the pages' modules imported before the first visit
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


def serve(db: Path, host: str, port: int, catalog: list[str], usage: ClickHouseTarget | None = None) -> int:
    """Run the dashboard in the foreground until interrupted (refused beyond loopback without sign-in);
    `usage`: the ClickHouse holding usage, if any (its password stays in the environment, never a URL)."""
    check_exposure(db, host)
    env = server_env() | {"QUOTASCOPE_DB": str(db.resolve())}
    if usage is not None:
        if usage.path is not None:  # Streamlit runs in another folder's terms: an absolute chdb folder
            usage = replace(usage, path=usage.path.resolve())
        env["QUOTASCOPE_STORE"] = usage.display()
    if catalog:
        env["QUOTASCOPE_USER_CATALOG"] = os.pathsep.join(str(Path(c).resolve()) for c in catalog)
    print(f"quotascope dashboard on http://{host}:{port}  (database {db}; Ctrl-C stops it)", flush=True)
    server = subprocess.Popen(streamlit_command(host, port), env=env)
    stopped = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True
        server.terminate()

    # A service manager stops us with SIGTERM: pass it on, or Streamlit outlives us holding the port.
    previous = signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        code = server.wait()
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too (same process group); let it finish
        stopped = True
        server.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0 if stopped else code


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name resolving elsewhere, or 0.0.0.0 spelled otherwise: not loopback


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Where Streamlit reads `secrets.toml` for this app: the user's, the working folder's, the app's."""
    cwd = cwd or Path.cwd()
    return [
        Path.home() / ".streamlit" / "secrets.toml",
        cwd / ".streamlit" / "secrets.toml",
        APP.parent / ".streamlit" / "secrets.toml",
    ]


def oidc_configured(files: list[Path]) -> bool:
    """Whether a `secrets.toml` configures an identity provider for `st.login` (later files win, as in
    Streamlit)."""
    auth: dict[str, Any] = {}
    for path in files:
        try:
            auth |= tomllib.loads(path.read_text()).get("auth", {})
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise InputError(f"cannot read {path}: {e}") from e
    return bool(oidc_providers(auth))


def check_exposure(db: Path, host: str) -> None:
    """Refuse to serve beyond this machine unless sign-in is on: a user exists, or OIDC is configured (and
    Authlib, which `st.login` needs, is installed)."""
    oidc = oidc_configured(secrets_files())
    if oidc and importlib.util.find_spec("authlib") is None:
        raise InputError(
            "sign-in with an identity provider is configured in secrets.toml but Authlib is not installed: "
            "pip install 'quotascope[oidc]'"
        )
    if is_loopback(host) or oidc or sign_in_configured(db):
        return
    raise InputError(
        f"refusing to serve on {host} without sign-in: add a user first "
        "(`quotascope users add NAME --teams A,B --password-env VAR`) or configure OIDC in "
        ".streamlit/secrets.toml, or keep the default 127.0.0.1"
    )


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    if store.clickhouse is None and not store.db.exists():
        raise InputError(
            f"no database at {store.db}; build one with `quotascope demo --no-serve` or `quotascope ingest`"
        )
    host = args.host or settings.get("dashboard_host")
    port = args.port or int(settings.get("dashboard_port"))
    return serve(store.db, host, port, args.catalog, store.clickhouse)
