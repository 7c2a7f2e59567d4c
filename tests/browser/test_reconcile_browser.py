"""The Billing gap page in Chromium on a database the whole loop filled (SDK traffic through the emulator,
logs ingested, the emulator's usage and cost reports pulled): the chart draws the flagged day in red, the
figures are reconciliation's, and a viewer of one team gets the notice instead of the bill."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quotascope import settings
from storage.catalog import load_catalog
from storage.reconcile import reconcile_report
from storage.users import save_user
from tests.browser.conftest import RunningApp, screenshot
from tests.collectors.pull_support import build_gap_db

pytestmark = pytest.mark.browser
PASSWORD = "search-lead-password"


# Requested first by every test: it runs asyncio (the pulls), which cannot start once Playwright's loop runs.
@pytest.fixture(scope="module")
def gap_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("gap-browser")
    db = folder / "gap.duckdb"
    failed, _ = build_gap_db(db, load_catalog(Path(settings.get("catalog_dir")), []), folder)
    return db, failed


@pytest.fixture(scope="module")
def app(gap_db: tuple[Path, int]) -> Iterator[RunningApp]:
    running = RunningApp(gap_db[0], {})
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, app: RunningApp) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    yield page
    context.close()


def wait_for_script(page: Any) -> None:
    page.wait_for_selector('[data-testid="stHeading"]', timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000
    )
    page.wait_for_timeout(1000)


def test_the_gap_page_draws_the_flagged_day(gap_db: tuple[Path, int], app: RunningApp, page: Any) -> None:
    db, failed = gap_db
    page.goto(f"{app.url}/reconcile", wait_until="networkidle")
    wait_for_script(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_function("() => document.querySelector('.js-plotly-plot .main-svg')", timeout=30_000)
    bars = page.locator(".js-plotly-plot .bars path")
    assert bars.count() == 1
    assert "220, 38, 38" in (bars.first.get_attribute("style") or "")  # #dc2626: flagged
    (row,) = reconcile_report(
        db, load_catalog(Path(settings.get("catalog_dir")), []), None, None, ("day", "provider")
    )
    assert row.billed is not None and row.gap is not None
    text = page.locator("body").inner_text()
    assert f"{row.billed.amount.quantize(Decimal('0.0001'))} USD" in text
    assert f"{row.gap.amount.quantize(Decimal('0.0001'))} USD" in text
    assert f"{failed} requests billed but not logged" in text
    screenshot(page, "reconcile")


def test_a_viewer_of_one_team_sees_no_bill(gap_db: tuple[Path, int], app: RunningApp, page: Any) -> None:
    save_user(gap_db[0], "lead", ("search",), False, PASSWORD, datetime.now(UTC).replace(tzinfo=None))
    page.goto(f"{app.url}/reconcile", wait_until="networkidle")
    page.get_by_role("textbox", name="Name").fill("lead")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    wait_for_script(page)
    # a password sign-in lives in this browser session: move within it, as a user clicks
    page.get_by_role("link", name="Billing gap").click()
    page.wait_for_selector("text=Billing gap", timeout=30_000)
    wait_for_script(page)
    text = page.locator("body").inner_text()
    assert "shown only to viewers who see every team" in text
    assert "USD" not in text and page.locator(".js-plotly-plot").count() == 0
    screenshot(page, "reconcile-team-lead")
