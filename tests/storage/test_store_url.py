"""`--store URL` parsing: the engines, TLS, the cluster option, and a password that never enters a URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import InputError
from storage.store import ClickHouseTarget, Store, parse_store

DB = Path("q.duckdb")


def test_no_url_is_the_duckdb_file_alone() -> None:
    assert parse_store(None, DB) == Store(DB)
    assert parse_store("", DB) == Store(DB)
    assert parse_store("duckdb", DB) == Store(DB)


def test_a_clickhouse_server_url_names_user_host_port_and_database() -> None:
    store = parse_store("clickhouse://analyst@ch.internal:9123/usage_db", DB)
    assert store.db == DB
    assert store.clickhouse == ClickHouseTarget(
        "server", database="usage_db", host="ch.internal", port=9123, user="analyst", secure=False
    )


def test_defaults_are_clickhouses_own_http_ports_user_and_database() -> None:
    plain = parse_store("clickhouse://ch.internal", DB).clickhouse
    tls = parse_store("clickhouses://ch.internal", DB).clickhouse
    assert plain is not None and tls is not None
    assert (plain.port, plain.secure, plain.user, plain.database) == (8123, False, "default", "default")
    assert (tls.port, tls.secure) == (8443, True)


def test_a_password_in_the_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(InputError, match="QUOTASCOPE_CLICKHOUSE_PASSWORD") as raised:
        parse_store("clickhouse://analyst:hunter2@ch.internal/db", DB)
    assert "hunter2" not in str(raised.value)


def test_the_shown_url_never_holds_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTASCOPE_CLICKHOUSE_PASSWORD", "hunter2")
    store = parse_store("clickhouses://analyst@ch.internal/db?cluster=prod", DB)
    assert store.clickhouse is not None
    assert store.clickhouse.display() == "clickhouses://analyst@ch.internal:8443/db?cluster=prod"
    assert "hunter2" not in repr(store) + store.describe()


def test_chdb_takes_a_folder_and_optionally_a_database() -> None:
    assert parse_store("chdb:///var/lib/qs", DB).clickhouse == ClickHouseTarget(
        "chdb", path=Path("/var/lib/qs")
    )
    relative = parse_store("chdb://data/ch?database=tenant_a", DB).clickhouse
    assert relative == ClickHouseTarget("chdb", database="tenant_a", path=Path("data/ch"))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgres://x/y", "unknown store"),
        ("chdb://", "needs a folder"),
        ("clickhouse://host/db?shard=1", "unknown store URL option"),
        ("clickhouse://host/db?cluster=a;DROP", "not a cluster name"),
        ("clickhouse://host/my-db", "not a ClickHouse database name"),
        ("clickhouse://host:port/db", "port"),
        ("chdb://x?database=a.b", "not a ClickHouse database name"),
    ],
)
def test_a_bad_url_is_one_sentence(url: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_store(url, DB)
