"""The real app on the demo database in Chromium: every view renders without an exception box, the charts
draw, a planner change updates the figures; a screenshot per view lands in tests/browser/screenshots/. Once
with the demo's usage in the DuckDB file and once in chdb (the server reads a copy in a folder of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, screenshot

pytestmark = pytest.mark.browser

VIEWS = {
    "overview": "",
    "planner": "planner",
    "spend": "spend",
    "usage": "usage",
    "endpoints": "endpoints",
    "catalog": "catalog",
    "switch": "switch",
}
CHARTS = {"overview": 1, "planner": 2, "spend": 2, "usage": 4, "endpoints": 3, "catalog": 0, "switch": 2}


@pytest.fixture(scope="module", params=["duckdb", "chdb"])
def app(request: pytest.FixtureRequest, demo_db: tuple[Path, Path]) -> Iterator[RunningApp]:
    db, catalog = demo_db
    env = {"QUOTASCOPE_USER_CATALOG": str(catalog), "QUOTASCOPE_CURRENCY": "CNY"}
    if request.param == "chdb":
        env["QUOTASCOPE_STORE"] = request.getfixturevalue("demo_chdb_apart")
    running = RunningApp(db, env)
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, app: RunningApp) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 2400})
    page = context.new_page()
    yield page
    context.close()


def open_view(page: Any, app: RunningApp, path: str) -> None:
    page.goto(f"{app.url}/{path}", wait_until="networkidle")
    page.wait_for_selector('[data-testid="stHeading"]', timeout=60_000)
    # wait until the script has finished running (the status widget leaves) and the deltas have landed
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000
    )
    page.wait_for_timeout(1000)


def assert_no_exception(page: Any) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


@pytest.mark.parametrize("view", list(VIEWS))
def test_view_renders_with_charts(page: Any, app: RunningApp, view: str) -> None:
    open_view(page, app, VIEWS[view])
    assert_no_exception(page)
    if CHARTS[view]:
        # charts mount one by one after the script ends: wait for all of them, not for a fixed time
        page.wait_for_function(
            "n => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.main-svg'))"
            " .length >= n",
            arg=CHARTS[view],
            timeout=30_000,
        )
        assert page.locator(".js-plotly-plot").count() >= CHARTS[view]
    # the sidebar names where usage is read from: the chdb copy when the server was given it
    assert ("chdb://" in page.locator('[data-testid="stSidebar"]').inner_text()) == bool(app.store)
    screenshot(page, f"{view}-chdb" if app.store else view)


def test_planner_change_updates_the_figures(page: Any, app: RunningApp) -> None:
    open_view(page, app, "planner")
    tokens = page.locator('[data-testid="stMetricValue"]').first
    assert tokens.inner_text() == "4,000"
    field = page.get_by_label("Input tokens per question")
    field.fill("8000")
    field.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMetricValue\"]').innerText === '10,000'",
        timeout=30_000,
    )
    assert_no_exception(page)
    screenshot(page, "planner-10k-tokens")
