"""Reads under a viewer's scope on a real DuckDB file: a team's rows only, rows with no team for all-teams
viewers only, and budgets and alerts of the viewer's teams only."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from models.access import EVERYTHING, Scope
from models.budget import Budget, budget_status
from models.forecast import forecast_month
from storage.budgets import read_alerts, record_alerts, save_budget, visible_budget
from storage.explore import usage_dimensions, usage_sample
from storage.replay import ALL_USAGE, UsageFilter, read_usage
from storage.reports import read_usage_buckets, read_usage_profile
from storage.store import Store
from tests.models.factories import d
from tests.storage.usage_rows import insert_usage

NOW = datetime(2026, 11, 23, 12)


def usage_db(store: Store) -> Store:
    db = store
    row = {"input_tokens": 100, "output_tokens": 10}
    insert_usage(
        db,
        [
            {**row, "ts": datetime(2026, 11, 2, 9), "team": "search", "project": "web", "key_id": "k-s"},
            {**row, "ts": datetime(2026, 11, 2, 10), "team": "legal", "project": "review", "key_id": "k-l"},
            {**row, "ts": datetime(2026, 11, 3, 11), "team": None, "project": None, "key_id": "k-none"},
        ],
    )
    return db


def test_a_scope_reads_its_teams_and_never_the_rows_with_no_team(store: Store) -> None:
    db = usage_db(store)
    lead = ALL_USAGE.within(Scope.of(["search"]))
    assert usage_dimensions(db).teams == ("legal", "search") and usage_dimensions(db).requests == 3
    assert usage_dimensions(db, lead).teams == ("search",) and usage_dimensions(db, lead).requests == 1
    assert read_usage(db, lead)["team"].to_list() == ["search"]
    assert read_usage(db, ALL_USAGE.within(EVERYTHING)).height == 3  # finance: the team-less row too
    assert read_usage_profile(db, selection=lead).requests == 1
    assert usage_sample(db, lead).height == 1
    buckets = read_usage_buckets(db, lead, ("day", "project"))
    assert buckets["project"].to_list() == ["web"]
    nobody = ALL_USAGE.within(Scope(()))
    assert usage_dimensions(db, nobody).requests == 0 and read_usage(db, nobody).height == 0
    # a team asked for outside the scope is not a way around it
    assert read_usage(db, UsageFilter(team="legal").within(Scope.of(["search"]))).height == 0


def test_budgets_and_alerts_of_other_teams_stay_hidden(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    nov = date(2026, 11, 1)
    for scope, value in (("total", None), ("team", "search"), ("team", "legal"), ("project", "web")):
        budget = save_budget(db, Budget(scope, value, d(10), "USD"), NOW)  # type: ignore[arg-type]
        status = budget_status(budget, forecast_month({nov: d(20)}, nov, datetime(2026, 11, 2), "USD"))
        record_alerts(db, status, NOW)
    lead = ALL_USAGE.within(Scope.of(["search"]))
    assert set(read_alerts(db, nov)["scope"]) == {"total", "team=search", "team=legal", "project=web"}
    assert set(read_alerts(db, nov, lead)["scope"]) == {"team=search"}
    assert read_alerts(db, nov, ALL_USAGE.within(Scope(()))).height == 0
    assert visible_budget(Budget("team", "search", d(1), "USD"), lead)
    assert not visible_budget(Budget("total", None, d(1), "USD"), lead)
    assert not visible_budget(Budget("project", "web", d(1), "USD"), lead)  # projects may span teams
    assert visible_budget(Budget("project", "web", d(1), "USD"), ALL_USAGE)
