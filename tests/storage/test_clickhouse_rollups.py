"""The rollups of `storage.rollups` as ClickHouse materialized views, generated from the same definitions:
after ingests into chdb they hold what the definition gives over the stored rows, and the spend rollup
what the DuckDB file's rollup holds for the same rows, to the cent."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from typing import Any

import pytest

from storage import clickhouse as clickhouse_module
from storage import clickhouse_schema, rollups
from storage.clickhouse import connect
from storage.clickhouse_schema import Layout, profile_bins, rollup_tables
from storage.store import ClickHouseTarget, Store
from storage.usage_reader import open_usage
from tests.storage.test_rollup_reads import usage_rows
from tests.storage.usage_rows import insert_usage


def _merged(store: Store, rollup: rollups.Rollup, parts: str) -> list[tuple[Any, ...]]:
    with open_usage(store) as usage:
        rows = usage.rows(rollup.merged(parts))
    return sorted(rows, key=repr)


@pytest.fixture(scope="module")
def both(chdb_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Store]:
    folder = tmp_path_factory.mktemp("rollups-both")
    duck = Store(folder / "duck.duckdb")
    chdb = Store(folder / "beside.duckdb", ClickHouseTarget("chdb", database="rollups_mv", path=chdb_folder))
    assert chdb.clickhouse is not None
    connect(chdb.clickhouse).command("TRUNCATE TABLE rollups_mv.usage")
    rows = usage_rows(11, 1500)
    for store in (duck, chdb):
        for part in range(3):  # three ingests: the views add a part each
            insert_usage(store, rows[part::3])
    return duck, chdb


@pytest.mark.parametrize("rollup", rollups.ROLLUPS, ids=lambda r: r.name)
def test_every_rollup_view_holds_its_definition_over_the_rows(
    both: tuple[Store, Store], rollup: rollups.Rollup
) -> None:
    _, chdb = both
    defined = f"({rollup.select('usage', rollups.SEED_BANDS)})"
    assert _merged(chdb, rollup, rollup.name) == _merged(chdb, rollup, defined)


def test_the_spend_rollup_is_the_duckdb_files_to_the_cent(both: tuple[Store, Store]) -> None:
    duck, chdb = both
    spend = rollups.SPEND
    assert _merged(chdb, spend, spend.name) == _merged(duck, spend, spend.name)


@pytest.mark.parametrize("rollup", rollups.PROFILES.values(), ids=lambda r: r.name)
def test_the_profile_bins_are_the_duckdb_files(both: tuple[Store, Store], rollup: rollups.Rollup) -> None:
    """ClickHouse bins every value as DuckDB does (`models.profile_bins`, rendered for each), with the same
    requests and sums."""
    duck, chdb = both

    def month_as_time(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # a Date32 in ClickHouse
        return sorted(((datetime.combine(r[0], time()), *r[1:]) for r in rows), key=repr)

    assert month_as_time(_merged(chdb, rollup, rollup.name)) == month_as_time(
        _merged(duck, rollup, rollup.name)
    )
    assert len(_merged(duck, rollup, rollup.name)) > 10


def test_migration_10_replaces_the_exact_profile_views_by_bins_with_the_rows_stored_before(
    chdb_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = ClickHouseTarget("chdb", database="profile_bins_migration", path=chdb_folder)
    store = Store(tmp_path / "beside.duckdb", target)
    rows = usage_rows(5, 600)
    before = [m for m in clickhouse_schema.MIGRATIONS if m.number < 10]
    monkeypatch.setattr(clickhouse_module, "MIGRATIONS", tuple(before))
    clickhouse = connect(target)

    def tables() -> set[str]:
        listed = "SELECT name FROM system.tables WHERE database = 'profile_bins_migration'"
        return set(clickhouse.arrow(listed).column("name").to_pylist())

    try:
        insert_usage(store, rows[:400])  # into migration 2's views, a row per exact value
        assert "rollup_profile_all_input_tokens_mv" in tables()
        assert "rollup_profile_bins_input_tokens" not in tables()
        monkeypatch.setattr(clickhouse_module, "MIGRATIONS", clickhouse_schema.MIGRATIONS)
        assert 10 in clickhouse.migrate()
        exact = (*rollups.EXACT_PROFILES.values(), *rollups.EXACT_PROFILES_ALL_TEAMS.values())
        assert not tables() & {name for r in exact for name in (r.name, r.name + "_mv")}
        insert_usage(store, rows[400:])  # into the new views
        for rollup in rollups.PROFILES.values():
            defined = f"({rollup.select('usage', rollups.SEED_BANDS)})"
            assert _merged(store, rollup, rollup.name) == _merged(store, rollup, defined), rollup.name
    finally:
        clickhouse_module._connections.pop(target).command("DROP DATABASE IF EXISTS profile_bins_migration")


def test_on_a_cluster_views_read_the_local_rows_into_local_rollups(chdb_folder: Path) -> None:
    clickhouse = connect(ClickHouseTarget("chdb", database="rollups_mv", path=chdb_folder))
    statements = rollup_tables(
        Layout("qs", "prod"), clickhouse.describe, lambda sql: clickhouse.render(sql, final=False)
    )
    statements += profile_bins(
        Layout("qs", "prod"), clickhouse.describe, lambda sql: clickhouse.render(sql, final=False)
    )
    views = [s for s in statements if "MATERIALIZED VIEW" in s]
    assert len(views) == len(rollups.FIRST_CLICKHOUSE_ROLLUPS) + len(rollups.PROFILES)
    assert any(
        s.startswith("DROP VIEW IF EXISTS qs.rollup_profile_all_ttft_ms_mv ON CLUSTER prod")
        for s in statements
    )
    spend = next(s for s in views if "qs.rollup_spend_mv " in s)
    assert spend.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS qs.rollup_spend_mv ON CLUSTER prod")
    assert "TO qs.rollup_spend_local AS" in spend and "FROM rollups_mv.usage_local" in spend
    tables = [s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS qs.rollup_spend_local")]
    assert "ReplicatedAggregatingMergeTree" in tables[0]
    assert "requests SimpleAggregateFunction(sum, Nullable(Int64))" in tables[0]
    for statement in statements:
        if not statement.startswith("INSERT"):
            clickhouse.arrow(f"EXPLAIN AST {statement}")
