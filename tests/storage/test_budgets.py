"""Budgets, alerts and daily spend on a real DuckDB file."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from models.budget import Budget, budget_status
from models.catalog import Catalog, ContextTier, Offer, Prices
from models.forecast import forecast_month
from models.money import FxRate, FxTable
from storage.budgets import (
    budgets_frame,
    read_alerts,
    read_budgets,
    read_daily_spend,
    record_alerts,
    remove_budget,
    save_budget,
)
from storage.replay import UsageFilter
from tests.models.factories import d, version
from tests.storage.usage_rows import insert_usage

NOW = datetime(2026, 11, 23, 12)
NOV = date(2026, 11, 1)


def test_budgets_are_saved_replaced_listed_and_removed(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    assert read_budgets(db) == []  # no file yet: no budgets, no error
    total = save_budget(db, Budget("total", None, d(1000), "USD"), NOW)
    team = save_budget(db, Budget("team", "search", d(50), "CNY", NOV, "http://127.0.0.1/h"), NOW)
    assert (total.budget_id, team.budget_id) == (1, 2)
    again = save_budget(db, Budget("total", None, d("1200.5"), "EUR"), NOW)  # same scope, every month
    assert again.budget_id == 1
    assert [(b.label, b.amount, b.currency, b.month) for b in read_budgets(db)] == [
        ("total", Decimal("1200.5"), "EUR", None),
        ("team=search", Decimal(50), "CNY", NOV),
    ]
    assert budgets_frame(db)["scope_value"].to_list() == [None, "search"]
    assert remove_budget(db, 2) and not remove_budget(db, 2)
    assert len(read_budgets(db)) == 1


def test_alerts_are_raised_once(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    budget = save_budget(db, Budget("total", None, d(120), "USD"), NOW)
    spend = {date(2026, 11, day): Decimal(10) for day in range(1, 11)}
    status = budget_status(budget, forecast_month(spend, NOV, datetime(2026, 11, 11), "USD"))
    first = record_alerts(db, status, NOW)
    assert [(a.threshold, a.kind) for a in first] == [
        (d("0.8"), "spent"),
        (d("0.95"), "forecast"),
        (1, "forecast"),
    ]
    assert first[0].payload()["spent"] == "100.00" and first[0].payload()["scope"] == "total"
    assert record_alerts(db, status, NOW) == []  # already raised
    alerts = read_alerts(db, NOV)
    assert alerts.height == 3 and set(alerts["kind"]) == {"spent", "forecast"}
    assert read_alerts(db, date(2026, 12, 1)).height == 0
    assert read_alerts(tmp_path / "none.duckdb").height == 0


@pytest.fixture
def spend_db(tmp_path: Path) -> Path:
    db = tmp_path / "q.duckdb"
    insert_usage(
        db,
        [
            {
                "ts": datetime(2026, 11, 2, 9, 0, 5),
                "input_tokens": 1000,
                "output_tokens": 100,
                "team": "a",
                "provider": "test",
                "model": "m",
            },
            {
                "ts": datetime(2026, 11, 2, 9, 0, 40),
                "input_tokens": 3000,
                "output_tokens": 300,
                "team": "a",
                "provider": "test",
                "model": "m",
            },
            # a long-context request: its own tier, so it stays apart from the minute's sums
            {
                "ts": datetime(2026, 11, 2, 9, 0, 50),
                "input_tokens": 300_000,
                "output_tokens": 0,
                "team": "b",
                "provider": "test",
                "model": "m",
            },
            {
                "ts": datetime(2026, 11, 3, 9),
                "input_tokens": 1000,
                "output_tokens": 0,
                "team": "b",
                "provider": "nobody",
                "model": "mystery",
            },
        ],
    )
    return db


CATALOG = Catalog(
    {
        "test/m": Offer(
            "test/m",
            "test",
            "m",
            "m",
            (
                version(
                    offer_id="test/m",
                    prices=Prices(input=d(1), output=d(10)),
                    tiers=(ContextTier(200_000, Prices(input=d(2), output=d(20))),),
                    currency="CNY",
                ),
            ),
        )
    },
    FxTable((FxRate("USD", "CNY", d(8), date(2026, 1, 1), "test"),)),
)


def test_daily_spend_is_priced_as_served(spend_db: Path) -> None:
    spend = read_daily_spend(spend_db, CATALOG, "USD", UsageFilter())
    # Nov 2: (4,000 × ¥1 + 400 × ¥10) / 1M + 300,000 × ¥2 / 1M (the long-context tier) = ¥0.608 = $0.076
    assert spend.daily["day"].to_list() == [date(2026, 11, 2)]
    assert spend.daily["amount"].to_list() == [Decimal("0.076")]
    # the unknown model on Nov 3 is unpriced, never free
    assert spend.unpriced_since(NOV) == 1 and spend.unpriced_since(date(2026, 11, 4)) == 0
    team_a = read_daily_spend(spend_db, CATALOG, "CNY", UsageFilter(team="a"))
    assert team_a.daily["amount"].to_list() == [Decimal("0.008")]
