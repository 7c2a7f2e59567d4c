"""The profile's bins: bounded in number, every value within the stated error of its bin's value, and the
SQL the stores run is the same rule as the Python."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from models.profile_bins import EXACT_BELOW, RELATIVE_ERROR, bin_of, bin_sql, value_of


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_a_value_is_within_the_error_of_its_bins_value(value: float) -> None:
    stands_for = value_of(bin_of(value))
    if value < EXACT_BELOW:
        assert abs(stands_for - value) <= 0.5
    else:
        assert abs(stands_for - value) <= RELATIVE_ERROR * value * (1 + 1e-12)


def test_whole_numbers_below_100_are_exact_and_bins_are_few_and_ordered() -> None:
    assert [value_of(bin_of(n)) for n in range(EXACT_BELOW)] == [float(n) for n in range(EXACT_BELOW)]
    assert bin_of(10_000_000) - bin_of(0) < 1_300  # a request of 10M tokens: at most 1,300 bins per group
    bins = [bin_of(v) for v in range(0, 200_000, 7)]
    assert bins == sorted(bins)  # monotone: a percentile's bin is the bin of the exact percentile


@settings(deadline=None)  # a DuckDB connection per example
@given(st.lists(st.floats(min_value=0, max_value=1e8, allow_nan=False), min_size=1, max_size=50))
def test_the_sql_is_the_same_rule(values: list[float]) -> None:
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT {bin_sql('v')} FROM unnest($v) AS t(v)", {"v": values}).fetchall()
    assert [r[0] for r in rows] == [bin_of(v) for v in values]
