"""Sharing the dashboard, in Chromium on a copy of the demo database (six teams) with users: a wrong password
is refused; a team lead visits every page and finds no other team's name or figure, on the page or in any CSV
download; finance (all teams) sees all; the sidebar's team filter offers only the user's teams."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from storage.catalog import load_catalog
from storage.replay import UsageFilter
from storage.reports import spend_report
from storage.users import save_user
from tests.browser.conftest import RunningApp, screenshot

pytestmark = pytest.mark.browser

TEAMS = ("batch-eval", "docs-qa", "legal", "research", "search", "support")
LEAD, LEAD_PASSWORD = "lead", "search-lead-password"
FINANCE, FINANCE_PASSWORD = "finance", "finance-sees-everything"
PAGES = ("Overview", "Planner", "Spend", "Usage profile", "Endpoints", "Switch", "Catalog", "Billing gap")
SPEND_BREAKDOWNS = ("team", "provider", "model", "project", "key")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, demo_db: tuple[Path, Path]) -> Iterator[RunningApp]:
    db = tmp_path_factory.mktemp("shared") / "shared.duckdb"
    shutil.copy(demo_db[0], db)
    now = datetime.now(UTC).replace(tzinfo=None)
    save_user(db, LEAD, ("search",), False, LEAD_PASSWORD, now)
    save_user(db, FINANCE, (), True, FINANCE_PASSWORD, now)
    running = RunningApp(db, {"QUOTASCOPE_USER_CATALOG": str(demo_db[1]), "QUOTASCOPE_CURRENCY": "CNY"})
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 2400}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def settled(page: Any) -> None:
    """Wait until the script run (started by the last click, if it has not started yet) has finished and its
    deltas have landed."""
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_selector('[data-testid="stStatusWidget"]', timeout=1500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000
    )
    page.wait_for_timeout(800)


def signed_out(page: Any, app: RunningApp) -> None:
    """A new session: the sign-in form, once the script has run."""
    page.goto(app.url, wait_until="networkidle")
    page.wait_for_selector('input[type="password"]', timeout=90_000)
    settled(page)


def sign_in(page: Any, app: RunningApp, name: str, password: str) -> None:
    signed_out(page, app)
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    # signed in (the pages' navigation) or refused (an alert): the password hash takes a moment
    page.wait_for_selector('[data-testid="stSidebarNav"], [data-testid="stAlert"]', timeout=90_000)
    settled(page)


# every text node of the page, one per line: table cells too (a data grid draws on a canvas and keeps its
# cells in a hidden table), chart labels, and anything hidden; not the page's scripts and styles
PAGE_TEXT = """() => {
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const out = [];
    while (walk.nextNode()) {
        const tag = walk.currentNode.parentElement && walk.currentNode.parentElement.tagName;
        if (tag !== 'SCRIPT' && tag !== 'STYLE') out.push(walk.currentNode.nodeValue);
    }
    return out.join('\\n');
}"""
CHARTS_DRAWN = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .every(c => c.querySelector('.main-svg'))"""


def visit(page: Any, title: str) -> str:
    """Open a page from the sidebar (same session: still signed in), wait for its charts, and return all
    its text (`PAGE_TEXT`)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.wait_for_selector('[data-testid="stHeading"]', timeout=90_000)
    settled(page)
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0, title
    text: str = page.evaluate(PAGE_TEXT)
    return text


def others(team: str) -> re.Pattern[str]:
    """Another team's name as a word (not inside a longer name), or its key ids and budget label."""
    names = "|".join(re.escape(t) for t in TEAMS if t != team)
    return re.compile(rf"(?<![\w-])({names})(?![\w-])|key-({names})|team=({names})")


def figures_of_others(app_db: Path, catalog_file: Path, team: str) -> set[str]:
    """Request counts of the other teams and of all teams together, as the pages and CSVs write them."""
    catalog = load_catalog(Path("data/catalog"), [catalog_file])
    rows = spend_report(app_db, catalog, UsageFilter(), ("team",), "CNY")
    counts = [r.requests for r in rows if r.keys["team"] != team] + [sum(r.requests for r in rows)]
    return {f"{n:,}" for n in counts if n >= 1000} | {str(n) for n in counts if n >= 1000}


def test_a_wrong_password_is_refused(page: Any, shared: RunningApp) -> None:
    signed_out(page, shared)
    text = page.locator("body").inner_text()
    assert "Sign in" in text and not any(t in text for t in TEAMS)  # nothing before sign-in
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    page.goto(f"{shared.url}/spend", wait_until="networkidle")  # a page's own address: the same form
    page.wait_for_selector('input[type="password"]', timeout=90_000)
    settled(page)
    assert "Spend" not in page.locator("body").inner_text()
    sign_in(page, shared, LEAD, "not-the-password")
    assert "Wrong name or password." in page.locator("body").inner_text()
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    screenshot(page, "sharing-wrong-password")
    assert "not-the-password" not in shared.log.read_text()  # nor is any password in the server's log


def test_a_team_lead_finds_no_other_team_anywhere(
    page: Any, shared: RunningApp, demo_db: tuple[Path, Path], tmp_path: Path
) -> None:
    sign_in(page, shared, LEAD, LEAD_PASSWORD)
    leak, figures = others("search"), figures_of_others(demo_db[0], demo_db[1], "search")
    for title in PAGES:
        text = visit(page, title)
        assert "search" in text or title in ("Planner", "Catalog", "Endpoints", "Billing gap"), title
        found = leak.search(text)
        assert found is None, f"{title} shows {found.group(0)!r}"
        assert not [f for f in figures if re.search(rf"(?<![\d,.]){re.escape(f)}(?![\d,])", text)], title
        screenshot(page, f"sharing-lead-{title.lower().replace(' ', '-')}")
    visit(page, "Spend")
    # the FOCUS file first: after a rerun of the page its button points at a dropped file (reported)
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="Download FOCUS 1.0 (CSV)").click()
    focus = tmp_path / "focus.csv"
    info.value.save_as(focus)
    text = focus.read_text()
    assert "search" in text and text.count("\n") > 10
    found = leak.search(text)
    assert found is None, f"the FOCUS download holds {found.group(0)!r}"
    for by in SPEND_BREAKDOWNS:
        csv = download_spend_csv(page, by, tmp_path)
        assert csv.count("\n") >= 2, by  # a header and the team's rows
        found = leak.search(csv)
        assert found is None, f"the spend CSV by {by} holds {found.group(0)!r}"
        assert not [f for f in figures if re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", csv)], by


def download_spend_csv(page: Any, by: str, folder: Path) -> str:
    page.locator('[data-testid="stButtonGroup"] button', has_text=re.compile(rf"^{by}$")).first.click()
    settled(page)
    with page.expect_download() as info:
        # the table's own download (the Spend page's other one is the FOCUS file)
        page.locator('[data-testid="stDownloadButton"] button').filter(has_not_text="FOCUS").first.click()
    path = folder / f"spend-by-{by}.csv"
    info.value.save_as(path)
    return path.read_text()


def test_finance_sees_every_team(page: Any, shared: RunningApp, tmp_path: Path) -> None:
    sign_in(page, shared, FINANCE, FINANCE_PASSWORD)
    text = visit(page, "Spend")
    csv = download_spend_csv(page, "team", tmp_path)
    assert {line.split(",")[0] for line in csv.splitlines()[1:]} == set(TEAMS)
    # the lead's checks can fail: the same searches find the other teams on finance's page and download
    assert others("search").search(text) and others("search").search(csv)
    screenshot(page, "sharing-finance-spend")


@pytest.mark.parametrize(
    ("name", "password", "offered"),
    [(LEAD, LEAD_PASSWORD, ["all", "search"]), (FINANCE, FINANCE_PASSWORD, ["all", *TEAMS])],
)
def test_the_team_filter_offers_the_users_teams(
    page: Any, shared: RunningApp, name: str, password: str, offered: list[str]
) -> None:
    sign_in(page, shared, name, password)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]', has_text="Team").click()
    options = page.locator('[role="listbox"] [role="option"]')
    options.first.wait_for(timeout=30_000)
    assert [o.strip() for o in options.all_inner_texts()] == offered
    screenshot(page, f"sharing-team-filter-{name}")
