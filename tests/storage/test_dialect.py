"""The ClickHouse rendering of DuckDB-dialect queries (storage.dialect), each transform checked on chdb."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from storage.clickhouse import connect
from storage.dialect import clickhouse_sql
from storage.store import ClickHouseTarget


@pytest.fixture
def chdb(chdb_folder: Path):  # type: ignore[no-untyped-def]
    return connect(ClickHouseTarget("chdb", path=chdb_folder))


def test_parameters_become_quoted_literals_in_order() -> None:
    sql = clickhouse_sql(
        "SELECT 1 FROM t WHERE a = ? AND b IN (?, ?) AND c >= ? AND d = ?",
        ["x", "it's", None, datetime(2025, 3, 1, 12), Decimal("1.50")],
    )
    assert "a = 'x'" in sql
    assert "'it''s'" in sql and "NULL" in sql
    assert "toDateTime64('2025-03-01 12:00:00.000000', 6, 'UTC')" in sql
    assert "d = 1.50" in sql


def test_a_parameter_count_that_does_not_match_is_an_error() -> None:
    with pytest.raises(ValueError, match="1 parameters, 2 given"):
        clickhouse_sql("SELECT ?", [1, 2])


def test_a_hostile_value_stays_a_value(chdb) -> None:  # type: ignore[no-untyped-def]
    hostile = "x'); DROP TABLE usage; --"
    rows = chdb.arrow(clickhouse_sql("SELECT ? AS v", [hostile])).to_pylist()
    assert rows == [{"v": hostile}]


def test_usage_is_read_final_and_tables_in_the_store_database() -> None:
    sql = clickhouse_sql(
        "WITH s AS (SELECT * FROM usage u WHERE x = 1) SELECT count(*) FROM s JOIN keys k USING (a)",
        final={"usage"},
        database="qs",
        unqualified={"keys"},
    )
    assert "FROM qs.usage AS u FINAL" in sql
    assert "FROM s JOIN keys AS k" in sql  # a CTE and an attached table stay as they are


def test_epoch_us_and_integer_division_stay_exact_past_two_to_the_53(chdb) -> None:  # type: ignore[no-untyped-def]
    sql = clickhouse_sql("SELECT epoch_us(?) // 7 AS q", [datetime(2262, 4, 11, 23, 47, 16, 854775)])
    assert "intDiv(toUnixTimestamp64Micro(" in sql
    (row,) = chdb.arrow(sql).to_pylist()
    assert row["q"] == 9223372036854775 // 7


@pytest.mark.parametrize("value", [0.5, 1.5, 2.5, -2.5, 1234.25])
def test_round_breaks_ties_away_from_zero_as_duckdb_does(chdb, value: float) -> None:  # type: ignore[no-untyped-def]
    import duckdb

    for digits in ("", ", 1"):
        query = f"SELECT round(CAST({value!r} AS DOUBLE){digits}) AS r"
        expected = duckdb.sql(query).fetchall()[0][0]
        (row,) = chdb.arrow(clickhouse_sql(query)).to_pylist()
        assert row["r"] == expected
