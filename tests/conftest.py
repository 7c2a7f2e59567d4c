"""Sealed tests: no API keys or proxies from the environment, the database in tmp_path."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.store import Store, parse_store

_LEAKY = (
    "OPENAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "ANTHROPIC_API_KEY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "QUOTASCOPE_USER_CATALOG",
    "QUOTASCOPE_CURRENCY",
    "QUOTASCOPE_STORE",
    "QUOTASCOPE_CLICKHOUSE_PASSWORD",
)


@pytest.fixture(scope="session")
def price_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per test session for the converted genai-prices base layer (converted on first use)."""
    return tmp_path_factory.mktemp("prices")


@pytest.fixture(autouse=True)
def sealed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, price_data_dir: Path
) -> Iterator[None]:
    for name in list(os.environ):
        if name in _LEAKY or name.endswith("_API_KEY"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUOTASCOPE_DB", str(tmp_path / "quotascope.duckdb"))
    monkeypatch.setenv("QUOTASCOPE_SALT_FILE", str(tmp_path / "salt"))
    monkeypatch.setenv("QUOTASCOPE_ENDPOINTS", str(tmp_path / "endpoints.toml"))
    monkeypatch.setenv("QUOTASCOPE_PRICE_DATA_DIR", str(price_data_dir))
    yield


@pytest.fixture(scope="session")
def chdb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chdb data folder for the session: chdb's engine starts once per process and serves one folder."""
    return tmp_path_factory.mktemp("chdb")


_chdb_databases = itertools.count(1)


@pytest.fixture(params=["duckdb", "chdb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, chdb_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """The store a test reads and writes, once per engine: the DuckDB file alone, and usage in chdb (a
    database of its own in the session's chdb folder) beside that file. `QUOTASCOPE_STORE` names it, so the
    CLI and the dashboard a test runs use it too."""
    db = tmp_path / "quotascope.duckdb"
    if request.param == "duckdb":
        yield Store(db)
        return
    url = f"chdb://{chdb_folder}?database=t{next(_chdb_databases)}"
    monkeypatch.setenv("QUOTASCOPE_STORE", url)
    store = parse_store(url, db)
    yield store
    from storage.clickhouse import connect

    assert store.clickhouse is not None
    connect(store.clickhouse).command(f"DROP DATABASE IF EXISTS {store.clickhouse.database}")


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small demo database built by the real command (a week of traffic, one probe round): (db, catalog)."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("demo")
    db = folder / "demo.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"QUOTASCOPE_SALT_FILE": str(folder / "salt"), "QUOTASCOPE_DB": str(db)}
    subprocess.run(
        [sys.executable, "-m", "quotascope.cli", "demo", "--no-serve", "--days", "7", "--probe-rounds", "1"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    catalogs = sorted(folder.glob("demo/*/catalog.toml"))
    assert catalogs, "the demo wrote no catalog of its own"
    return db, catalogs[-1]
