"""A ClickHouse server store (`clickhouse://`, `clickhouses://`) through clickhouse-connect: no server runs
here, so the client's construction is observed (what it is told) and a refused connection is real."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from quotascope.cli import main
from storage import clickhouse
from storage.db import StorageError
from storage.store import parse_store

PASSWORD = "s3cret-pw"


class _Client:
    """What `clickhouse_connect.get_client` would return, recording what quotascope asks of it."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.commands: list[str] = []

    def command(self, sql: str) -> None:
        self.commands.append(sql)

    def query_arrow(self, sql: str, **kwargs: Any) -> Any:
        import pyarrow as pa

        return pa.table({"number": pa.array([], pa.int64())})

    def close(self) -> None:
        pass


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[_Client]:
    import clickhouse_connect

    clients: list[_Client] = []

    def get_client(**kwargs: Any) -> _Client:
        clients.append(_Client(**kwargs))
        return clients[-1]

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    monkeypatch.setattr(clickhouse, "_connections", {})
    return clients


def test_the_client_gets_the_url_and_the_password_from_the_environment(
    made: list[_Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUOTASCOPE_CLICKHOUSE_PASSWORD", PASSWORD)
    store = parse_store("clickhouses://analyst@ch.example:9443/llm?cluster=prod", Path("q.duckdb"))
    assert store.clickhouse is not None
    clickhouse.connect(store.clickhouse)
    (client,) = made
    assert {k: client.kwargs[k] for k in ("host", "port", "username", "password", "database", "secure")} == {
        "host": "ch.example",
        "port": 9443,
        "username": "analyst",
        "password": PASSWORD,
        "database": "llm",
        "secure": True,
    }
    assert client.kwargs["settings"]["prefer_column_name_to_alias"] == 1
    # the schema is created on the cluster: replicated local tables and the Distributed one
    ddl = "\n".join(client.commands)
    assert "CREATE DATABASE IF NOT EXISTS llm ON CLUSTER prod" in ddl
    assert "ENGINE = Distributed(prod, llm, usage_local, cityHash64(record_key))" in ddl
    assert PASSWORD not in ddl


def test_plain_http_without_a_password_sends_an_empty_one(made: list[_Client]) -> None:
    store = parse_store("clickhouse://ch.example/llm", Path("q.duckdb"))
    assert store.clickhouse is not None
    clickhouse.connect(store.clickhouse)
    assert (made[0].kwargs["secure"], made[0].kwargs["port"], made[0].kwargs["password"]) == (False, 8123, "")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_one_sentence_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUOTASCOPE_CLICKHOUSE_PASSWORD", PASSWORD)
    monkeypatch.setattr(clickhouse, "_connections", {})
    url = f"clickhouse://analyst@127.0.0.1:{_closed_port()}/llm"
    store = parse_store(url, Path("q.duckdb"))
    assert store.clickhouse is not None
    with pytest.raises(
        StorageError, match=r"cannot connect to ClickHouse clickhouse://analyst@127\.0\.0\.1"
    ) as e:
        clickhouse.connect(store.clickhouse)
    assert PASSWORD not in str(e.value)
    assert main(["report", "spend", "--store", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quotascope: cannot connect to ClickHouse") and err.count("\n") == 1
    assert PASSWORD not in err and "Traceback" not in err
