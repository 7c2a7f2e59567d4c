"""Every quantity in the frames the public replay, pricing and traffic functions return names its unit
(the scheme in `models/__init__.py`): a bare `input`, `cached`, `demand` or `in_t` coming back fails here."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest

from models.catalog import CacheRules, CountingRules, Limits, Prices
from models.enforcement import enforce_limits
from models.plan import cost_curve
from models.pricing import price_units, version_index
from models.replay import ReplayOptions, comparison_rows, replay
from models.sweep import LIMIT_COLUMNS, sweep
from models.target import COUNTED_COLUMNS, TARGET_COLUMNS, counted_columns, target_tokens
from models.traffic import TOKEN_COLUMNS, demand_series, traffic_from_usage
from tests.models.factories import d
from tests.models.test_plans import plan as make_test_plan
from tests.models.test_replay import FX, NINE, rows, target

UNIT_SUFFIXES = (
    "_tokens",
    "_requests",
    "_s",
    "_ms",
    "_per_minute",
    "_per_s",
    "_per_mtok",
    "_share",
    "_percent",
    "_per_1k_questions",
)
# quantities whose name says what they count; indices and points in time (`minute`: the minute since the
# origin in `Enforced`, a timestamp in `Replay`)
COUNTS = {"requests", "keys", "keys_needed", "minutes_over_limit", "calls", "vidx", "tier", "minute"}
# the old bare names (and their spellings with a short suffix): none may come back
BARE = {
    "input",
    "cached",
    "write",
    "output",
    "reasoning",
    "tokens",
    "demand",
    "peak_rate",
    "limit_value",
    "throttled",
    "in_flight",
    "max_queue",
    "in_t",
    "cached_t",
    "write_t",
    "out_t",
    "reason_t",
    "c_in",
    "c_out",
    "c_total",
}


def unitless(frame: pl.DataFrame, inputs: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """The columns of `frame` that are quantities without a unit in their name (columns passed in are
    the caller's own and not judged)."""
    found = [name for name in frame.columns if name in BARE]
    money_beside_currency = "currency" in frame.columns
    for name, dtype in frame.schema.items():
        if name in inputs or name in COUNTS or name in BARE or not dtype.is_numeric():
            continue
        if isinstance(dtype, pl.Decimal) and money_beside_currency:
            continue  # money, in the row's currency
        if not name.endswith(UNIT_SUFFIXES):
            found.append(name)
    return found


LIMITED = target(
    limits=Limits(tpm=6000, itpm=5000, otpm=2000, rpm=20, tpd=1_000_000, max_concurrency=3),
    counting=CountingRules(window="second"),
    cache=CacheRules(enabled=True, min_tokens=64, step_tokens=64),
    prices=Prices(input=d(2), cached_input=d("0.5"), cache_write=d(3), output=d(8)),
)


def usage() -> pl.DataFrame:
    one = {"input_tokens": 800, "cached_input_tokens": 640, "cache_write_tokens": 64, "output_tokens": 200}
    single = [{"ts": NINE + timedelta(seconds=s), "reasoning_tokens": 50, **one} for s in range(0, 90, 3)]
    spread = {"ts": NINE, "n_requests": 30, "input_tokens": 9000, "output_tokens": 3000, "source_id": 7}
    return rows(*single, spread)


def test_traffic_and_demand_series_name_their_units() -> None:
    traffic = traffic_from_usage(usage())
    assert set(TOKEN_COLUMNS) <= set(traffic.units.columns)
    assert unitless(traffic.units) == []
    assert unitless(traffic_from_usage(usage().clear()).units) == []
    for step in (1, 60):
        series = demand_series(traffic, step)
        assert unitless(series) == [] and "total_tokens" in series.columns


def test_target_counted_and_priced_frames_name_their_units() -> None:
    traffic = traffic_from_usage(usage())
    units = traffic.units.with_columns(
        version_index(pl.col("ts"), LIMITED.versions, "earliest").alias("vidx")
    )
    own = set(units.columns)
    for reestimate in (True, False):
        tokens = target_tokens(units, LIMITED, Decimal("1.1"), reestimate=reestimate)
        assert set(TARGET_COLUMNS) <= set(tokens.columns) and unitless(tokens) == []
    counting = CountingRules(reserve_max_tokens=True, cached_counted=False)
    counted = tokens.with_columns(**counted_columns(counting, 512))
    assert set(COUNTED_COLUMNS) <= set(counted.columns) and unitless(counted, own) == []
    groups = price_units(tokens, LIMITED, fx=FX, currency="CNY").groups
    assert groups.height and set(TARGET_COLUMNS) <= set(groups.columns)
    assert unitless(groups) == []


@pytest.mark.parametrize("policy", ["reject", "queue"])
def test_enforced_and_replayed_frames_name_their_units(policy: str) -> None:
    traffic = traffic_from_usage(usage())
    units = traffic.units.with_columns(pl.lit(0, dtype=pl.Int32).alias("vidx"))
    units = target_tokens(units, LIMITED, Decimal(1), reestimate=True)
    enforced, _ = enforce_limits(units, LIMITED.versions[0], policy=policy, multiplier=1)
    for frame in (enforced.units, enforced.demand, enforced.concurrency):
        assert frame.height and unitless(frame) == []
    assert set(enforced.demand["measure"]) == {*COUNTED_COLUMNS, "requests"}
    result = replay(traffic, LIMITED, ReplayOptions(policy=policy), fx=FX)  # type: ignore[arg-type]
    assert result.throttled_requests > 0  # the frames below hold throttled minutes, not only empty ones
    for frame in (result.minutes, result.demand, result.concurrency, result.cost.groups):
        assert frame.height and unitless(frame) == []
    assert unitless(comparison_rows([result], None)) == []


def test_empty_demand_frames_name_their_units() -> None:
    unlimited = target(limits=Limits())
    result = replay(traffic_from_usage(usage()), unlimited, ReplayOptions(), fx=FX)
    assert result.demand.is_empty() and result.concurrency.is_empty()
    assert unitless(result.demand) == [] and unitless(result.concurrency) == []


def test_sweep_and_cost_curve_name_their_units() -> None:
    scenarios = pl.DataFrame({"input_tokens": [4000.0], "output_tokens": [1000.0], "tpm": [10_000.0]})
    swept = sweep(scenarios)
    # limits keep the catalog's names, the burn-down is a multiplier; the cost is in the prices' currency
    judged = swept.drop(*LIMIT_COLUMNS, "output_burndown", "cost_per_question")
    assert {"input_price_per_mtok", "call_s", "concurrent_requests"} <= set(judged.columns)
    assert unitless(judged) == []
    curve = cost_curve(
        [make_test_plan(Limits(tpm=10_000), Prices(input=d(2), output=d(8)))], [d(0), d("0.5")]
    )
    assert curve.height and unitless(curve, {"cache_hit_rate"}) == []


def test_the_check_catches_a_bare_name() -> None:
    assert unitless(pl.DataFrame({"input": [1], "delay": [0.5], "requests": [1.0]})) == ["input", "delay"]
