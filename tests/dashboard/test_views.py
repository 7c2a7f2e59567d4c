"""Every view from the entrypoint, on the demo database and on an empty one: the numbers shown are the
numbers storage and the model compute."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from models.forecast import month_start
from storage.catalog import load_catalog
from storage.probes import probe_percentiles
from storage.replay import UsageFilter
from storage.reports import read_usage_profile, spend_report
from storage.store import Store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
VIEWS = (
    "views/switch.py",
    "views/overview.py",
    "views/planner.py",
    "views/spend.py",
    "views/usage.py",
    "views/endpoints.py",
    "views/catalog.py",
)


def start(monkeypatch: pytest.MonkeyPatch, db: Path, catalog: Path | None = None) -> AppTest:
    monkeypatch.setenv("QUOTASCOPE_DB", str(db))
    monkeypatch.setenv("QUOTASCOPE_CURRENCY", "CNY")
    if catalog is not None:
        monkeypatch.setenv("QUOTASCOPE_USER_CATALOG", str(catalog))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch, demo_db: tuple[Path, Path], demo_store: Store) -> AppTest:
    """The dashboard on the demo, once with usage in the DuckDB file and once in chdb: every figure a test
    compares with a read of the DuckDB file must come out the same from ClickHouse."""
    return start(monkeypatch, *demo_db)


def metric(at: AppTest, label: str) -> str:
    return next(str(m.value) for m in at.metric if m.label == label)


def number(cell: object) -> float:
    """A table cell as a number, whether the column is numeric or text (a column with a word in it)."""
    return float(str(cell).replace(",", ""))


def amount(text: str) -> Decimal:
    return Decimal(text.split()[0].replace(",", ""))


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_on_the_demo(demo: AppTest, demo_store: Store, view: str) -> None:
    demo.switch_page(view).run()
    assert not demo.exception, demo.exception
    assert demo.header[0].value
    where = " ".join(c.value for c in demo.sidebar.caption)
    assert ("chdb://" in where) == (demo_store.clickhouse is not None), where


@pytest.mark.parametrize(
    "view", ["views/overview.py", "views/spend.py", "views/usage.py", "views/endpoints.py", "views/switch.py"]
)
def test_empty_database_says_which_command_fills_it(
    monkeypatch: pytest.MonkeyPatch, store: Store, view: str
) -> None:
    """No DuckDB file yet, and (on chdb) an empty usage table: each view names the command to run."""
    at = start(monkeypatch, store.db)
    at.switch_page(view).run()
    assert not at.exception
    assert any("quotascope" in i.value for i in at.info), [i.value for i in at.info]


def test_overview_spend_equals_the_spend_report(
    demo: AppTest, demo_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, user = demo_db
    catalog = load_catalog(Path("data/catalog"), [user])
    # the page's "now" pinned to a moment after the demo's last request: the demo writes traffic up to the
    # instant it ran, and the page's own clock (whole minutes) would leave out that last minute
    now = datetime.now() + timedelta(minutes=5)
    monkeypatch.setenv("QUOTASCOPE_NOW", now.isoformat())
    demo.run()
    since = datetime.combine(month_start(now.date()), datetime.min.time())
    rows = spend_report(db, catalog, UsageFilter(since, now), ("team",), "CNY")
    expected = sum((r.cost.amount for r in rows if r.cost is not None), Decimal(0))
    assert amount(metric(demo, "Spent this month")) == pytest.approx(expected, abs=Decimal("0.01"))
    assert amount(metric(demo, "Requests")) > 0
    assert any("unpriced" in i.value for i in demo.info) or all(r.unpriced_requests == 0 for r in rows)


def test_spend_view_totals_and_breakdown(demo: AppTest, demo_db: tuple[Path, Path]) -> None:
    db, user = demo_db
    demo.switch_page("views/spend.py").run()
    catalog = load_catalog(Path("data/catalog"), [user])
    table = demo.dataframe[1].value
    rows = spend_report(db, catalog, UsageFilter(), ("team",), "CNY")
    assert set(table["Team"]) == {r.keys["team"] for r in rows}
    by_team = {r.keys["team"]: r for r in rows}
    for record in table.to_dict("records"):
        row = by_team[record["Team"]]
        assert record["Requests"] == row.requests
        if row.cost is not None:
            assert number(record["Cost (CNY)"]) == pytest.approx(float(row.cost.amount), abs=0.005)
    priced = [r for r in rows if r.cost is not None]
    cheap = sum(r.discounted_cost.amount for r in priced if r.discounted_cost is not None)
    share = cheap / sum(r.cost.amount for r in priced if r.cost is not None)
    assert metric(demo, "Spend in discounted hours") == f"{share:.0%}"
    demo.segmented_control(key="spend_by").set_value("model").run()
    assert not demo.exception
    assert "Model" in demo.dataframe[1].value.columns


def test_usage_profile_equals_storage_and_opens_in_planner(demo: AppTest, demo_db: tuple[Path, Path]) -> None:
    demo.switch_page("views/usage.py").run()
    profile = read_usage_profile(demo_db[0])
    table = demo.dataframe[0].value
    first = table.iloc[0]
    assert first["mean"] == pytest.approx(round(profile.input_tokens.mean, 1))
    # each percentile is its bin's value (within 0.5 %), shown whole, and the page says how close it is
    assert first["p90"] == round(profile.input_tokens.p90)
    assert "percentiles within 0.5%" in " ".join(c.value for c in demo.caption)
    demo.button(key="usage_to_planner").click().run()
    assert not demo.exception
    assert demo.number_input(key="planner_input_tokens").value == round(profile.input_tokens.mean)


def test_endpoints_flag_the_distilled_and_the_throttled(demo: AppTest, demo_db: tuple[Path, Path]) -> None:
    demo.switch_page("views/endpoints.py").run()
    table = demo.dataframe[0].value
    expected = probe_percentiles(demo_db[0])
    assert set(table["Endpoint"]) == set(expected["endpoint"].to_list())
    warnings = " ".join(w.value for w in demo.warning)
    assert "distilled" in warnings and "canary failed" in warnings
    assert "429s" in warnings
    demo.number_input(key="endpoints_ttft_alert").set_value(10.0).run()
    assert "P99 TTFT high" in " ".join(w.value for w in demo.warning)


def test_imported_peer_runs_show_beside_the_probe_never_pooled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from collectors.probe.peers import Identity, import_peer_file

    db = tmp_path / "q.duckdb"
    peers = Path(__file__).resolve().parents[1] / "data" / "peers"
    for name in ("aiperf_profile_export.jsonl", "guidellm_benchmarks.json", "vllm_save_detailed.json"):
        import_peer_file(db, peers / name, identity=Identity(endpoint="gpu-box"))
    at = start(monkeypatch, db)
    at.switch_page("views/endpoints.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["Endpoint"]) == ["gpu-box"] * 3
    assert sorted(table["Measured by"]) == ["aiperf", "guidellm", "vllm"]  # one row per tool
    runs = {row["tool"]: row for row in probe_percentiles(db).iter_rows(named=True)}
    for row in table.to_dict("records"):
        assert number(row["Time to first token, median (ms)"]) == round(
            runs[row["Measured by"]]["ttft_p50_ms"]
        )
    definitions = " ".join(m.value for m in at.markdown)
    assert "role" in definitions and "choices" in definitions  # vLLM's rule, stated beside its figures
    assert "(measured by `guidellm`)" in " ".join(w.value for w in at.warning)


def test_switch_view_equals_the_simulation(demo: AppTest, demo_db: tuple[Path, Path]) -> None:
    from models.replay import ReplayOptions
    from storage.simulation import simulate_offers

    db, user = demo_db
    demo.switch_page("views/switch.py").run()
    table = demo.dataframe[0].value
    catalog = load_catalog(Path("data/catalog"), [user])
    targets = tuple(table["Target offer"])
    dims_first = table.iloc[0]
    assert dims_first["Over the limit"] == "reject"
    assert dims_first["Added delay, median (s)"] == "not queued: refused with a 429"
    expected = simulate_offers(
        db,
        catalog,
        targets,
        ReplayOptions(tokenizer_ratio=(Decimal("0.9"), Decimal("1.1")), currency="CNY"),
        UsageFilter(),
    ).comparison()
    for record, row in zip(table.to_dict("records"), expected.iter_rows(named=True), strict=True):
        assert record["Requests throttled (%)"] == pytest.approx(round(row["throttled_share"] * 100, 2))
        assert number(record["Keys needed for no throttling"]) == row["keys_needed"]
    tight = table[table["Target offer"] == "cloud/deepseek-r1-10k"].iloc[0]
    assert tight["Requests throttled (%)"] > 0  # 10,000 TPM cannot carry the demo's traffic
    demo.number_input(key="switch_keys").set_value(int(number(tight["Keys needed for no throttling"]))).run()
    assert not demo.exception


# every page there is, so a new one is held to the rule from its first day
ALL_VIEWS = sorted(f"views/{p.name}" for p in (Path(APP).parent / "views").glob("*.py"))


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_every_table_is_in_words_with_no_empty_cell(demo: AppTest, view: str) -> None:
    demo.switch_page(view).run()
    assert not demo.exception, demo.exception
    for shown in demo.dataframe:
        table = shown.value
        assert not [c for c in table.columns if "_" in str(c)], f"{view}: a header in code, not words"
        empty = [c for c in table.columns if table[c].isna().any()]
        assert not empty, f"{view}: empty (None) cells in {empty}"


def test_overview_shows_every_figure_in_the_display_currency(demo: AppTest) -> None:
    """The demo's budgets are in CNY; shown in USD, the budget is converted at the dated rate and said so,
    and each budget raises one alert at most."""
    demo.selectbox(key="display_currency").set_value("USD").run()
    assert not demo.exception
    money = ("Spent this month", "Forecast month end", "Cache savings")
    assert all(metric(demo, label).endswith(" USD") for label in money)
    used = next(m for m in demo.metric if m.label == "Budget used")
    assert "USD" in str(used.delta) and "CNY" not in str(used.delta)
    note = next(c.value for c in demo.caption if c.value.startswith("Budgets converted"))
    assert "15,000.00 CNY at 1 USD = " in note and " CNY of 20" in note
    alerts = [w.value for w in demo.warning]
    scopes = [a.split(" ")[0] for a in alerts]
    assert len(scopes) == len(set(scopes)), alerts  # one alert per budget
    assert all("USD" in a and "CNY" not in a for a in alerts)


def _values(array: Any) -> list[Any]:
    """A chart's data array as sent to the browser: a list, or a typed array (plotly sends numpy arrays as
    base64 with their dtype)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def test_usage_histograms_count_requests_not_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An aggregated export bucket stands for its `n_requests` requests in every distribution, not for one."""
    from tests.storage.usage_rows import insert_usage

    db = tmp_path / "buckets.duckdb"
    at_ = datetime(2026, 11, 20, 10)
    insert_usage(
        db,
        [
            {"ts": at_, "n_requests": 1, "input_tokens": 100, "output_tokens": 10, "reasoning_tokens": 5},
            {"ts": at_, "n_requests": 40, "input_tokens": 40_000, "output_tokens": 800},  # a usage-API bucket
        ],
    )
    at = start(monkeypatch, db)
    at.switch_page("views/usage.py").run()
    assert not at.exception
    charts = {
        c["layout"]["title"]["text"]: c["data"][0]
        for c in (json.loads(e.proto.spec) for e in at.get("plotly_chart"))
    }
    per_request = charts["Input tokens per request"]
    assert per_request["histfunc"] == "sum"
    assert sorted(zip(_values(per_request["x"]), _values(per_request["y"]), strict=True)) == [
        (100, 1),
        (1000, 40),
    ]
    output = charts["Output tokens per request"]
    assert sorted(zip(_values(output["x"]), _values(output["y"]), strict=True)) == [(10, 1), (20, 40)]
    assert _values(charts["Reasoning tokens (requests that reasoned)"]["y"]) == [1]
    assert "41 requests" in " ".join(str(c.value) for c in at.caption)
