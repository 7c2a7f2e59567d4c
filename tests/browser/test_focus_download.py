"""The Spend page's FOCUS download in Chromium: the file finance gets is the one `quotascope export focus`
writes, and a signed-in team lead's holds their team only. Finance's download comes from a server reading the
demo's usage in the DuckDB file and in chdb; either is the CLI's export of the DuckDB file."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quotascope.cli import main
from storage.users import save_user
from tests.browser.conftest import RunningApp, screenshot

pytestmark = pytest.mark.browser
LEAD_PASSWORD = "search-lead-password"


@pytest.fixture(scope="module")
def shared_db(demo_db: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("focus") / "shared.duckdb"
    shutil.copy(demo_db[0], db)
    return db


def run_app(db: Path, catalog: Path, store: str = "") -> RunningApp:
    """The dashboard on `db`, with usage in the store of the URL `store` when one is given."""
    env = {"QUOTASCOPE_USER_CATALOG": str(catalog), "QUOTASCOPE_CURRENCY": "USD"}
    return RunningApp(db, env | ({"QUOTASCOPE_STORE": store} if store else {}))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 2400}, accept_downloads=True)
    yield context.new_page()
    context.close()


def download_focus(page: Any, app: RunningApp, name: str, *, signed_in: bool = False) -> list[dict[str, str]]:
    if signed_in:  # a new page load is a new session, signed out: go there through the sidebar
        page.get_by_role("link", name="Spend").click()
    else:
        page.goto(f"{app.url}/spend", wait_until="networkidle")
    button = page.get_by_role("button", name="Download FOCUS 1.0 (CSV)")
    button.wait_for(timeout=120_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000
    )
    screenshot(page, name)
    with page.expect_download(timeout=120_000) as event:
        button.click()
    download = event.value
    assert download.suggested_filename.startswith("quotascope-focus-")
    text = Path(download.path()).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def billed(rows: list[dict[str, str]]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = {}
    for row in rows:
        sums[row["BillingCurrency"]] = sums.get(row["BillingCurrency"], Decimal(0)) + Decimal(
            row["BilledCost"]
        )
    return sums


@pytest.mark.parametrize("engine", ["duckdb", "chdb"])
def test_finance_downloads_what_the_cli_exports(
    browser: Any,
    page: Any,
    demo_db: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    engine: str,
) -> None:
    db, catalog = demo_db
    store = request.getfixturevalue("demo_chdb_apart") if engine == "chdb" else ""
    app = run_app(db, catalog, store)
    try:
        rows = download_focus(page, app, "spend-focus-download")
    finally:
        app.stop()
    assert rows and {"BilledCost", "ListCost", "ContractedCost", "ProviderName", "Tags"} <= set(rows[0])
    monkeypatch.setenv("QUOTASCOPE_USER_CATALOG", str(catalog))
    # the page's period is every stored day, whole UTC days; the CLI's the same span
    days = sorted({r["ChargePeriodStart"][:10] for r in rows})
    out = tmp_path / "cli.csv"
    argv = [
        "export",
        "focus",
        "--db",
        str(db),
        "--store",
        "duckdb",
        "--out",
        str(out),
        "--since",
        days[0],
        "--json",
    ]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(rows) == document["rows"]
    assert {c: f"{a.quantize(Decimal('0.000001'))}" for c, a in billed(rows).items()} == document["billed"]


def test_a_team_lead_downloads_their_team_only(
    browser: Any, page: Any, shared_db: Path, demo_db: tuple[Path, Path]
) -> None:
    save_user(shared_db, "lead", ("search",), False, LEAD_PASSWORD, datetime.now(UTC).replace(tzinfo=None))
    app = run_app(shared_db, demo_db[1])
    try:
        page.goto(app.url, wait_until="networkidle")
        page.get_by_role("textbox", name="Name").fill("lead")
        page.get_by_role("textbox", name="Password").fill(LEAD_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Overview").wait_for(timeout=120_000)
        rows = download_focus(page, app, "spend-focus-download-team-lead", signed_in=True)
    finally:
        app.stop()
    assert rows
    assert {json.loads(r["Tags"]).get("team") for r in rows} == {"search"}
    assert {r["SubAccountId"] for r in rows} == {"search"}
