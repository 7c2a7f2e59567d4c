"""Budgets, alerts and daily spend on a real DuckDB file; the spend they are measured against from either
store (usage in the DuckDB file or in chdb: the same figures to the cent). Budgets and alerts themselves
always live in the DuckDB file, so those tests run on it alone."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from models.budget import Budget, BudgetStatus, budget_status
from models.catalog import Catalog, ContextTier, Offer, Prices
from models.forecast import forecast_month
from models.money import FxRate, FxTable
from storage.budgets import (
    budget_statuses,
    budgets_frame,
    read_alerts,
    read_budgets,
    read_daily_spend,
    record_alerts,
    remove_budget,
    save_budget,
)
from storage.replay import UsageFilter
from storage.store import Store
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


def test_one_alert_per_budget_and_month_raised_again_only_when_graver(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    budget = save_budget(db, Budget("total", None, d(120), "USD"), NOW)

    def status_at(day: int) -> BudgetStatus:
        spend = {date(2026, 11, n): Decimal(10) for n in range(1, day)}
        return budget_status(budget, forecast_month(spend, NOV, datetime(2026, 11, day), "USD"))

    early = status_at(5)  # 40 spent, forecast 300: 100 % forecast (and 80 % of nothing spent yet)
    first = record_alerts(db, early, NOW)
    assert [(a.threshold, a.kind) for a in first] == [(1, "forecast")]
    assert first[0].payload()["spent"] == "40.00" and first[0].payload()["scope"] == "total"
    assert record_alerts(db, early, NOW) == []  # already raised
    assert record_alerts(db, status_at(11), NOW) == []  # 83 % spent: still 100 % forecast at most
    late = record_alerts(db, status_at(14), NOW)  # 130 spent: the 100 % line is spent now
    assert [(a.threshold, a.kind) for a in late] == [(1, "spent")]
    alerts = read_alerts(db, NOV)
    assert alerts["kind"].to_list() == ["spent", "forecast"]
    assert read_alerts(db, date(2026, 12, 1)).height == 0
    assert read_alerts(tmp_path / "none.duckdb").height == 0


@pytest.fixture
def spend_db(store: Store) -> Store:
    db = store
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


def test_daily_spend_is_priced_as_served(spend_db: Store) -> None:
    spend = read_daily_spend(spend_db, CATALOG, "USD", UsageFilter())
    # Nov 2: (4,000 × ¥1 + 400 × ¥10) / 1M + 300,000 × ¥2 / 1M (the long-context tier) = ¥0.608 = $0.076
    assert spend.daily["day"].to_list() == [date(2026, 11, 2)]
    assert spend.daily["amount"].to_list() == [Decimal("0.076")]
    # the unknown model on Nov 3 is unpriced, never free
    assert spend.unpriced_since(NOV) == 1 and spend.unpriced_since(date(2026, 11, 4)) == 0
    team_a = read_daily_spend(spend_db, CATALOG, "CNY", UsageFilter(team="a"))
    assert team_a.daily["amount"].to_list() == [Decimal("0.008")]


def test_statuses_in_a_display_currency_convert_the_budget_with_the_dated_rate(spend_db: Store) -> None:
    save_budget(spend_db.db, Budget("total", None, d(8), "CNY"), NOW)
    own = budget_statuses(spend_db, CATALOG, NOV, NOW)[0]
    shown = budget_statuses(spend_db, CATALOG, NOV, NOW, currency="USD")[0]
    assert (own.budget.amount, own.budget.currency, own.rate) == (d(8), "CNY", None)
    assert own.forecast.spent == Decimal("0.608")
    # the budget at the catalog's rate (1 USD = 8 CNY), the spend priced in USD as the spend report prices it
    assert (shown.budget.amount, shown.budget.currency, shown.forecast.spent) == (1, "USD", Decimal("0.076"))
    assert shown.share_spent == own.share_spent
    assert shown.describe_amount() == "1.00 USD (8.00 CNY at 1 USD = 8 CNY of 2026-01-01)"
