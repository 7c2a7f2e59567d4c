"""Hostile names in a real browser (issue #14): model and team names that are Markdown links, HTML, terminal
escapes and spreadsheet formulas, all of it unpriced usage, shown inert on the Spend page and in its CSV
download; read from the DuckDB file and from chdb (a copy of its usage in a folder of the server's own)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.ingest import ingest_paths
from tests.browser.conftest import RunningApp, chdb_copy_apart, screenshot

pytestmark = pytest.mark.browser

HOSTILE_MODELS = (
    "[x](http://evil.example)",
    '<a href="http://evil.example/html">html</a>',
    "\x1b[2J\x1b]0;pwned\x07evil",
    '=HYPERLINK("http://evil.example","click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    ":red[coloured] $x^2$",
)


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    log = folder / "hostile.jsonl"
    now = int(time.time()) - 3600
    lines = [
        json.dumps(
            {
                "id": f"h{i}",
                "object": "chat.completion",
                "created": now,
                "model": model,
                "usage": {"prompt_tokens": 10 + i, "completion_tokens": 5},
            }
        )
        for i, model in enumerate(HOSTILE_MODELS)
    ]
    log.write_text("\n".join(lines) + "\n")
    db = folder / "q.duckdb"
    (result,) = ingest_paths(db, [log], salt="s", tags={"team": "=cmd|' /C calc'!A0"})
    assert result.counts.stored == len(HOSTILE_MODELS)
    return db


@pytest.fixture(scope="module", params=["duckdb", "chdb"])
def app(
    request: pytest.FixtureRequest, hostile_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    env = {"QUOTASCOPE_CURRENCY": "USD"}
    if request.param == "chdb":
        env["QUOTASCOPE_STORE"] = chdb_copy_apart(hostile_db, tmp_path_factory.mktemp("hostile-chdb"))
    running = RunningApp(hostile_db, env)
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, app: RunningApp) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 2400}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def open_spend(page: Any, app: RunningApp) -> None:
    page.goto(f"{app.url}/spend", wait_until="networkidle")
    page.wait_for_selector('[data-testid="stHeading"]', timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000
    )
    page.wait_for_timeout(1500)


def test_the_spend_page_of_unpriced_hostile_names_renders_them_as_text(page: Any, app: RunningApp) -> None:
    open_spend(page, app)
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()
    # no name became a link, anywhere on the page (Markdown, HTML in Markdown, or a Plotly label)
    links = page.locator('a[href*="evil.example"]')
    where = "a => a.closest('[data-testid]').outerHTML.slice(0, 600)"
    assert links.count() == 0, [links.nth(i).evaluate(where) for i in range(links.count())]
    info = page.locator('[data-testid="stAlertContentInfo"]').first.inner_text()
    assert "[x](http://evil.example)" in info  # shown exactly as typed
    assert '<a href="http://evil.example/html">html</a>' in info
    assert "\\x1b[2J" in info  # the escape shown, not obeyed
    assert ":red[coloured] $x^2$" in info
    screenshot(page, "spend-hostile-names" + ("-chdb" if app.store else ""))


def by_model_download(page: Any) -> list[dict[str, str]]:
    """The Spend table's own CSV download (not the FOCUS file) once the page has rerun by model: on a busy
    machine the rerun the click started may not have replaced the by-team table yet."""
    deadline = time.monotonic() + 60
    while True:
        with page.expect_download(timeout=30_000) as download:
            page.locator('[data-testid="stDownloadButton"] button').filter(has_not_text="FOCUS").first.click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        if any(name.lower() == "model" for name in rows[0]) or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(1000)


def test_the_csv_download_neutralises_formulas(page: Any, app: RunningApp) -> None:
    open_spend(page, app)
    page.get_by_text("model", exact=True).first.click()  # break down by model
    rows = by_model_download(page)
    header = next(name for name in rows[0] if name.lower() == "model")
    models = {row[header] for row in rows}
    assert len(rows) == len(HOSTILE_MODELS)
    for model in HOSTILE_MODELS:
        if model.startswith(("=", "+", "-", "@")):
            assert "'" + model in models, models
            assert model not in models
        else:
            assert model in models
    for row in rows:  # no cell a spreadsheet would run
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values() if cell)
