"""The call behind `quotascope simulate` and the Switch view: a real DuckDB file, the shipped catalog."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from models.errors import InputError
from models.replay import ReplayOptions
from quotascope import settings
from storage.catalog import load_catalog
from storage.replay import UsageFilter
from storage.reports import spend_report
from storage.simulation import default_period, simulate_offers
from storage.store import Store
from tests.storage.usage_rows import insert_usage

NINE = datetime(2026, 11, 2, 9)
CATALOG = load_catalog(Path(settings.BY_NAME["catalog_dir"].default))


@pytest.fixture
def db(store: Store) -> Store:
    path = store
    # 20 requests of 600 tokens in one minute on deepseek-reasoner: 12,000 tokens against a 10,000 TPM cloud
    insert_usage(
        path,
        [
            {"ts": NINE + timedelta(seconds=3 * i), "input_tokens": 500, "output_tokens": 100}
            for i in range(20)
        ],
    )
    return path


def test_side_by_side_rows_and_per_minute_demand_for_the_switch_view(db: Path) -> None:
    simulation = simulate_offers(
        db, CATALOG, ["cloud/deepseek-r1-10k", "volcengine/deepseek-r1"], ReplayOptions(), UsageFilter()
    )
    table = simulation.comparison()
    assert table["offer"].to_list() == ["cloud/deepseek-r1-10k", "volcengine/deepseek-r1"]
    # 12,000 tokens in the minute, 10,000 allowed: the last 2,000 (1/6 of the requests) refused
    assert table["throttled_share"].to_list() == pytest.approx([2000 / 12000, 0.0])
    assert table["keys_needed"].to_list() == [2, 1]
    # money in the first target's currency, and what was served priced by the spend report in the same one
    assert set(table["currency"]) == {"USD"}
    served = spend_report(db, CATALOG, simulation.selection, (), "USD")[0].cost
    assert served is not None and table["cost_actual"].to_list() == [served.amount] * 2
    cloud = simulation.replays[0]
    demand = cloud.demand.filter(pl.col("limit") == "tpm")
    assert demand.select("minute", "demand_per_minute", "limit_per_minute").rows() == [
        (NINE, 12000.0, 10000.0)
    ]
    assert cloud.minutes.select("minute", "requests").rows() == [(NINE, 20.0)]


def test_the_default_period_ends_after_the_last_request(db: Path) -> None:
    period = default_period(db, UsageFilter())
    assert period.since == NINE and period.until == NINE + timedelta(seconds=57, microseconds=1)
    assert default_period(db, UsageFilter(since=NINE - timedelta(days=400))).since == NINE - timedelta(
        days=400
    )
    with pytest.raises(InputError, match="no stored usage"):
        default_period(db, UsageFilter(team="nobody"))
