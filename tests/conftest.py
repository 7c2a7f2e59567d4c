"""Sealed tests: no API keys or proxies from the environment, the database in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
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


@pytest.fixture(params=["duckdb", "chdb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, chdb_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Store:
    """The store a test reads and writes, once per engine: the DuckDB file alone, and usage in chdb (the
    session's `tests` database, emptied for each test) beside that file. `QUOTASCOPE_STORE` names it, so the
    CLI and the dashboard a test runs use it too."""
    db = tmp_path / "quotascope.duckdb"
    if request.param == "duckdb":
        return Store(db)
    store = empty_chdb_store(chdb_folder, "tests", db)
    assert store.clickhouse is not None
    monkeypatch.setenv("QUOTASCOPE_STORE", store.clickhouse.display())
    return store


def empty_chdb_store(folder: Path, database: str, db: Path) -> Store:
    """The store with usage in the chdb database `database` of `folder` (its schema made on first use, every
    table emptied: cheaper than making it again) and the DuckDB file `db` beside it."""
    from storage.clickhouse import connect

    store = parse_store(f"chdb://{folder}?database={database}", db)
    assert store.clickhouse is not None
    clickhouse = connect(store.clickhouse)
    tables = clickhouse.arrow(
        f"SELECT name FROM system.tables WHERE database = '{database}' "
        "AND engine != 'MaterializedView' AND name != 'schema_migrations'"
    )
    for name in tables.column("name").to_pylist():
        clickhouse.command(f"TRUNCATE TABLE {database}.{name}")
    return store


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


def usage_in_chdb(db: Path, folder: Path, database: str) -> str:
    """The usage rows of the DuckDB file `db` copied into the chdb database `database` of `folder` (emptied
    first), inserted as ingest inserts them (`ClickHouse.insert`, per source, with its token): the URL of
    the store whose usage is that copy, `db` beside it for the small tables. A test then reads one set of
    rows through either engine and compares the answers."""
    from storage.clickhouse import connect
    from storage.usage_reader import open_usage

    target = empty_chdb_store(folder, database, db).clickhouse
    assert target is not None
    clickhouse = connect(target)
    with open_usage(db) as usage:
        assert usage.duckdb is not None
        rows = usage.duckdb.sql("SELECT * FROM usage ORDER BY source_id, line_no").to_arrow_table()
    columns = [c for c in rows.column_names if c != "key_hash"]
    for source in sorted(set(rows.column("source_id").to_pylist())):
        part = rows.filter(pc.equal(rows.column("source_id"), source)).select(columns)
        tags = part.column("tags")
        part = part.set_column(
            columns.index("tags"), "tags", pc.if_else(pc.is_null(tags), pa.scalar([], tags.type), tags)
        )
        clickhouse.insert("usage", part, token=f"{database}-{source}")
    return target.display()


@pytest.fixture(scope="session")
def demo_chdb_url(demo_db: tuple[Path, Path], chdb_folder: Path) -> str:
    """The demo's usage rows in a chdb database of the session's folder, the demo file beside it."""
    return usage_in_chdb(demo_db[0], chdb_folder, "demo")


def file_or_chdb(
    request: pytest.FixtureRequest, db: Path, chdb_url_fixture: str, monkeypatch: pytest.MonkeyPatch
) -> Store:
    """For a fixture parametrised by engine: the DuckDB file `db` alone, or ("chdb") usage in the chdb copy
    the fixture named `chdb_url_fixture` makes, beside the same file, set as `QUOTASCOPE_STORE` so the CLI
    and the dashboard under test read it."""
    if request.param == "duckdb":
        return Store(db)
    url: str = request.getfixturevalue(chdb_url_fixture)
    monkeypatch.setenv("QUOTASCOPE_STORE", url)
    return parse_store(url, db)


@pytest.fixture(params=["duckdb", "chdb"])
def demo_store(
    request: pytest.FixtureRequest, demo_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Store:
    """The demo, once per engine: its DuckDB file alone, and its usage in chdb beside the same file."""
    return file_or_chdb(request, demo_db[0], "demo_chdb_url", monkeypatch)
