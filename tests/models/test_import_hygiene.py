"""models/ is the pure core: importing all of it must not load any I/O library (harlequin's hygiene test)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import models

FORBIDDEN = ("duckdb", "httpx", "streamlit", "plotly", "apscheduler", "uvicorn", "starlette")


def test_models_never_import_io_libraries() -> None:
    names = [f"models.{m.name}" for m in pkgutil.iter_modules(models.__path__)]
    assert len(names) >= 3, names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(models.__file__).parent.parent,
    )
    assert result.stdout.strip() == "", f"models/ loaded {result.stdout.strip()}"


def test_duckdb_is_imported_only_in_storage() -> None:
    root = Path(models.__file__).parent.parent
    offenders = [
        str(path.relative_to(root))
        for package in ("models", "collectors", "dashboard", "quotascope")
        for path in (root / package).rglob("*.py")
        if "import duckdb" in path.read_text() or "from duckdb" in path.read_text()
    ]
    assert offenders == []
