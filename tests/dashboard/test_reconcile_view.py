"""The Billing gap page from the entrypoint: its empty state, the figures reconciliation computes, the flag,
and nothing at all for a viewer who does not see every team (the bill cannot be split by team). The logs'
usage is read from the DuckDB file and from chdb (the bill always from the file): the page shows the same
figures, to the cent, as reconciliation computes from the file."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts
from quotascope import settings
from quotascope.context import user_catalogs
from storage.catalog import load_catalog
from storage.reconcile import reconcile_report
from storage.store import Store
from storage.users import save_user
from tests.collectors.pull_support import build_gap_db
from tests.conftest import file_or_chdb, usage_in_chdb

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGE = "views/reconcile.py"


@pytest.fixture(scope="module")
def gap_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("gap")
    db = folder / "gap.duckdb"
    catalog = load_catalog(Path(settings.get("catalog_dir")), [])
    failed, _ = build_gap_db(db, catalog, folder)
    return db, failed


@pytest.fixture(scope="module")
def gap_chdb_url(gap_db: tuple[Path, int], chdb_folder: Path) -> str:
    """The gap database's logged usage copied into chdb (its pulled bills stay in the file beside it)."""
    return usage_in_chdb(gap_db[0], chdb_folder, "gap")


@pytest.fixture(params=["duckdb", "chdb"])
def gap_store(
    request: pytest.FixtureRequest, gap_db: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> Store:
    """The gap database with its logs' usage in the DuckDB file, and in chdb (named by QUOTASCOPE_STORE)."""
    return file_or_chdb(request, gap_db[0], "gap_chdb_url", monkeypatch)


def open_page(monkeypatch: pytest.MonkeyPatch, db: Path) -> AppTest:
    monkeypatch.setenv("QUOTASCOPE_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def text_of(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.info, *at.markdown, *at.caption, *at.error])


def test_empty_database_names_the_command(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    at = open_page(monkeypatch, store.db)
    assert at.header[0].value == "Billing gap"
    assert "quotascope pull openai-costs" in text_of(at)


def test_logs_without_a_bill_say_what_to_pull(
    monkeypatch: pytest.MonkeyPatch, demo_db: tuple[Path, Path], demo_store: Store
) -> None:
    at = open_page(monkeypatch, demo_db[0])
    assert "No bill pulled yet" in text_of(at) and "quotascope pull openai-costs" in text_of(at)
    assert not at.metric


def test_the_page_shows_reconciliations_figures(
    monkeypatch: pytest.MonkeyPatch, gap_db: tuple[Path, int], gap_store: Store
) -> None:
    db, failed = gap_db
    at = open_page(monkeypatch, db)
    catalog = load_catalog(Path(settings.get("catalog_dir")), user_catalogs())
    (row,) = reconcile_report(db, catalog, None, None, ("day", "provider"))  # from the DuckDB file
    where = " ".join(c.value for c in at.sidebar.caption)
    assert ("chdb://" in where) == (gap_store.clickhouse is not None), where
    metrics = {m.label: str(m.value) for m in at.metric}
    assert row.billed is not None and row.computed is not None and row.gap is not None
    assert metrics["Billed"] == f"{row.billed.amount.quantize(Decimal('0.0001'))} USD"
    assert metrics["Computed from logs"] == f"{row.computed.amount.quantize(Decimal('0.0001'))} USD"
    assert metrics["Gap"] == f"{row.gap.amount.quantize(Decimal('0.0001'))} USD"
    assert metrics["Flagged days"] == "1"
    table = at.dataframe[0].value  # the reconciliation table
    assert table["Flagged"].tolist() == ["yes"]
    assert table["Billed (USD)"].tolist() == [float(row.billed.amount.quantize(Decimal("0.0001")))]
    assert f"{failed} requests billed but not logged" in table["What explains it"].iloc[0]
    pulls = at.dataframe[-1].value  # the latest pulls, newest first: how fresh the bill is
    assert pulls["Report"].tolist() == ["openai-costs", "openai-usage"]
    assert pulls["Stored"].tolist() == [3, 1]
    # a looser threshold than the gap clears the flag
    at.number_input(key="reconcile_threshold").set_value(99.0).run()
    assert not at.exception
    assert {m.label: str(m.value) for m in at.metric}["Flagged days"] == "0"


def test_a_viewer_of_some_teams_sees_no_bill(
    monkeypatch: pytest.MonkeyPatch, gap_db: tuple[Path, int], gap_store: Store
) -> None:
    db, _ = gap_db
    now = datetime.now(UTC).replace(tzinfo=None)
    save_user(db, "lead", ("search",), False, "search-lead-password", now)
    try:
        monkeypatch.setenv("QUOTASCOPE_DB", str(db))
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.text_input(key="sign_in_name").input("lead")
        at.text_input(key="sign_in_password").input("search-lead-password")
        at.button[0].click().run()
        at.switch_page(PAGE).run()
        assert not at.exception, at.exception
        assert "shown only to viewers who see every team" in text_of(at)
        assert not at.metric and not at.dataframe
    finally:
        from storage.users import remove_user

        remove_user(db, "lead")


def test_gap_chart_marks_flagged_days() -> None:
    frame = pl.DataFrame(
        {
            "day": [datetime(2026, 12, 1).date(), datetime(2026, 12, 2).date()],
            "provider": ["openai", "openai"],
            "gap": [0.01, 0.5],
            "gap_share": [0.01, 0.2],
            "flagged": [False, True],
        }
    )
    figure = charts.billing_gap(frame, 0.02, "USD")
    (bars,) = figure.data
    assert list(bars.y) == [0.01, 0.5]
    assert list(bars.marker.color) == [charts.PALETTE[0], "#dc2626"]
    assert "2.0%" in figure.layout.title.text
    assert figure.layout.yaxis.title.text == "gap (USD)"
    empty = charts.billing_gap(frame.clear(), 0.02, "USD")
    assert not empty.data
