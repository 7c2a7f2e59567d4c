"""ClickHouse's DDL: one server, and a cluster (which cannot run here: its statements are parsed by
ClickHouse's own parser in chdb, `EXPLAIN AST`, and checked for what they must say)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.clickhouse import ClickHouse, connect
from storage.clickhouse_schema import MIGRATIONS, Layout, migrations_table, usage_tables
from storage.store import ClickHouseTarget


@pytest.fixture
def chdb(chdb_folder: Path) -> ClickHouse:
    return connect(ClickHouseTarget("chdb", path=chdb_folder))


def _parses(chdb: ClickHouse, statement: str) -> list[str]:
    return [row["explain"] for row in chdb.arrow(f"EXPLAIN AST {statement}").to_pylist()]


def test_one_server_has_a_replacing_merge_tree_by_month_ordered_by_filters_then_time() -> None:
    (usage,) = usage_tables(Layout("qs"))
    assert usage.startswith("CREATE TABLE IF NOT EXISTS qs.usage\n")
    assert "ENGINE = ReplacingMergeTree\n" in usage
    assert "PARTITION BY toYYYYMM(ts)" in usage
    assert "ORDER BY (provider, model, team, toStartOfHour(ts), record_key, ts)" in usage
    assert "ON CLUSTER" not in usage and "Distributed" not in usage


def test_on_a_cluster_replicated_local_tables_and_a_distributed_one_over_them(chdb: ClickHouse) -> None:
    local, distributed = usage_tables(Layout("qs", "prod"))
    assert local.startswith("CREATE TABLE IF NOT EXISTS qs.usage_local ON CLUSTER prod\n")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/qs/usage_local', '{replica}')" in local
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS qs.usage ON CLUSTER prod AS qs.usage_local\n"
        "ENGINE = Distributed(prod, qs, usage_local, cityHash64(record_key))"
    )
    assert _parses(chdb, local)[0] == "CreateQuery qs usage_local (children 4)"
    assert _parses(chdb, distributed)[0] == "CreateQuery qs usage (children 3)"
    for statement in migrations_table(Layout("qs", "prod")):
        assert " ON CLUSTER prod" in statement
        assert _parses(chdb, statement)[0].startswith("CreateQuery qs schema_migrations")


def test_every_migration_parses_on_a_cluster_and_runs_on_one_server(chdb: ClickHouse) -> None:
    chdb.command("DROP DATABASE IF EXISTS qs_schema_check")
    chdb.command("CREATE DATABASE qs_schema_check")
    checked = connect(ClickHouseTarget("chdb", database="qs_schema_check", path=chdb.target.path))

    def render(sql: str) -> str:
        return checked.render(sql, final=False)

    for migration in MIGRATIONS:  # on one server: connect() ran them; on a cluster: ClickHouse parses them
        for statement in migration.statements(Layout("qs", "prod"), checked.describe, render):
            if not statement.startswith("INSERT"):
                assert " ON CLUSTER prod" in statement
            _parses(chdb, statement)
    tables = checked.arrow("SELECT name FROM system.tables WHERE database = 'qs_schema_check'")
    assert {"usage", "usage_surplus", "rollup_spend", "rollup_spend_mv"} <= set(
        tables.column("name").to_pylist()
    )
    chdb.command("DROP DATABASE qs_schema_check")


def test_migrations_run_once_and_are_recorded(chdb_folder: Path) -> None:
    store = connect(ClickHouseTarget("chdb", database="qs_migrated", path=chdb_folder))
    assert store.migrate() == []  # connect() applied them already
    recorded = store.arrow("SELECT number, name FROM qs_migrated.schema_migrations FINAL ORDER BY number")
    assert recorded.to_pylist() == [{"number": m.number, "name": m.name} for m in MIGRATIONS]


def test_a_settled_copy_is_deleted_on_its_shard_by_identity(chdb: ClickHouse) -> None:
    """`storage.settle` deletes a surplus copy from the local table ON CLUSTER (a Distributed table takes
    no delete), by its key, time, source and insert time."""
    from datetime import datetime

    from storage.settle import deletion_sql

    copy = {
        "record_key": "k'1",
        "ts": datetime(2025, 3, 3, 12),
        "source_id": 2,
        "inserted_at": datetime(2025, 3, 4),
    }
    statement = deletion_sql(Layout("qs", "prod"), chdb.render, [copy, copy | {"source_id": 3}])
    assert statement.startswith("DELETE FROM qs.usage_local ON CLUSTER prod WHERE ")
    assert statement.count("record_key = 'k''1'") == 2 and "source_id = 3" in statement
    assert _parses(chdb, statement)[0].startswith("DeleteQuery")
