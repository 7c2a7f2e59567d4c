"""Every view in Chromium: renders without an exception box, charts draw, the planner reacts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    db = tmp_path_factory.mktemp("browser") / "empty.duckdb"
    running = RunningApp(db, {"QUOTASCOPE_NOW": "2026-11-23T12:00:00"})
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, app: RunningApp) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 2200})
    page = context.new_page()
    yield page
    context.close()


def open_view(page: Any, app: RunningApp, path: str) -> None:
    page.goto(f"{app.url}/{path}", wait_until="networkidle")
    page.wait_for_selector('[data-testid="stHeading"]', timeout=30_000)
    page.wait_for_timeout(800)  # let the last deltas land


def assert_no_exception(page: Any) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def test_planner_renders_and_reacts(page: Any, app: RunningApp) -> None:
    open_view(page, app, "")
    assert_no_exception(page)
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    assert page.locator(".js-plotly-plot").count() >= 2
    tokens = page.locator('[data-testid="stMetricValue"]').first
    assert tokens.inner_text() == "4,000"
    screenshot(page, "planner")
    field = page.get_by_label("Input tokens per question")
    field.fill("8000")
    field.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMetricValue\"]').innerText === '10,000'",
        timeout=20_000,
    )
    assert_no_exception(page)


def test_catalog_renders(page: Any, app: RunningApp) -> None:
    open_view(page, app, "catalog")
    assert_no_exception(page)
    assert "Catalog" in page.locator('[data-testid="stHeading"]').first.inner_text()
    page.wait_for_selector('[data-testid="stDataFrame"]')
    screenshot(page, "catalog")
