"""The bins a per-request profile value is counted in: the one home of the rule, for Python and SQL.

A token profile's percentiles (`quotascope report profile`, `plan --from-usage`) are read from counts of
requests per value. Counted per exact value, those counts grow with the data (a month of 100M requests held
2.6M distinct input sizes against 1.2M at 10M); counted per bin they are bounded whatever the data's size:

- a value below `EXACT_BELOW` (100 tokens, ms or tokens/s) is counted at its nearest whole number (exact for
  the whole numbers tokens and milliseconds are; within 0.5 for an average of an aggregated row);
- from `EXACT_BELOW` up, a value is counted in a logarithmic bin `[100·γ^i, 100·γ^(i+1))` with
  γ = (1 + α) / (1 − α), and a bin's value is `100·γ^i · 2γ / (γ + 1)`, within `RELATIVE_ERROR` (α, 0.5 %) of
  every value in it (DDSketch's rule: Masson, Rim and Lee, VLDB 2019). 100 to 10 million is 1,152 bins.

So every percentile is within 0.5 % of the exact one (0.5 below 100). Means are not read from bins: the stores
keep each bin's exact sum beside its count. `bin_sql` renders the rule for a SQL store (DuckDB's SQL, which
the ClickHouse store renders through SQLGlot), `bin_of` is the same rule in Python; a store answers bins, and
`value_of` (Python only, so two stores' answers agree to the last bit) says what each stands for.
"""

from __future__ import annotations

import math

__all__ = ["EXACT_BELOW", "PRECISION", "RELATIVE_ERROR", "bin_of", "bin_sql", "value_of"]

RELATIVE_ERROR = 0.005
EXACT_BELOW = 100
# what a profile read from the bins promises, as the report and the Usage page say it
PRECISION = f"means exact; percentiles within {RELATIVE_ERROR:.1%} (within 0.5 below {EXACT_BELOW})"
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LN_GAMMA = math.log(_GAMMA)
_FIRST_LOG_BIN = EXACT_BELOW + 1  # bins up to EXACT_BELOW are whole numbers (99.6 rounds to 100)
_SCALE = EXACT_BELOW * 2 * _GAMMA / (_GAMMA + 1)  # the first logarithmic bin's value


def bin_of(value: float) -> int:
    """The bin `value` is counted in (`bin_sql` in Python)."""
    if value < EXACT_BELOW:
        return math.floor(value + 0.5)
    return _FIRST_LOG_BIN + math.floor(math.log(value / EXACT_BELOW) / _LN_GAMMA)


def value_of(bin_: int) -> float:
    """The value a bin stands for (computed in Python only, so two stores' bins give the same value)."""
    if bin_ < _FIRST_LOG_BIN:
        return float(bin_)
    return _SCALE * math.exp((bin_ - _FIRST_LOG_BIN) * _LN_GAMMA)


def bin_sql(value_sql_: str) -> str:
    """The bin of the SQL value `value_sql_` (NULL stays NULL), as an INTEGER."""
    v = f"({value_sql_})"
    return (
        f"CAST(CASE WHEN {v} < {EXACT_BELOW} THEN floor({v} + 0.5) "
        f"ELSE {_FIRST_LOG_BIN} + floor(ln({v} / {EXACT_BELOW}) / {_LN_GAMMA!r}) END AS INTEGER)"
    )
