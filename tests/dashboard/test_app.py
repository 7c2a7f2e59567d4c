"""The app from its entrypoint with AppTest: every view, widgets by key, numbers equal the model's."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from models.capacity import Latency
from models.cost import Demand
from models.plan import plan_offers
from models.profile import TokenProfile
from quotascope import settings
from storage.catalog import load_catalog

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
NOW = "2026-11-23T12:00:00"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("QUOTASCOPE_NOW", NOW)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/planner.py").run()
    assert not at.exception
    return at


def test_planner_numbers_equal_the_model(app: AppTest) -> None:
    table = app.dataframe[0].value
    offers = list(table["offer"])
    catalog = load_catalog(Path(settings.get("catalog_dir")))
    plans = plan_offers(
        catalog,
        offers,
        TokenProfile.direct(2000, 2000, reasoning_tokens=1500),
        Latency(Decimal("390"), Decimal("35.4")),
        datetime.fromisoformat(NOW),
        demand=Demand.from_peak(Decimal("1000"), Decimal("3")),
        display_currency="USD",
    )
    for row, plan in zip(table.to_dict("records"), plans, strict=True):
        assert row["questions / min"] == pytest.approx(float(plan.capacity.questions_per_minute or 0))
        assert row["binding limit"] == (plan.capacity.binding_limit or "").upper()
        assert plan.cost is not None and row["cost / 1,000 questions"] == str(
            plan.cost.per_1k_questions.quantize(4)
        )


def test_planner_reacts_to_the_profile(app: AppTest) -> None:
    app.number_input(key="planner_input_tokens").set_value(8000).run()
    assert not app.exception
    assert app.metric[0].value == "10,000"
    table = app.dataframe[0].value
    ark = table[table["offer"] == "volcengine/deepseek-r1"].iloc[0]
    assert ark["questions / min"] == 500  # the seed's 10,000-token anchor


def test_planner_preset_and_currency(app: AppTest) -> None:
    app.selectbox(key="planner_preset").set_value("web-search").run()
    assert app.number_input(key="planner_input_tokens").value == 8300
    app.selectbox(key="display_currency").set_value("USD").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert all(str(v).endswith("USD") for v in table["cost / 1,000 questions"] if v is not None)


def test_planner_without_offers_says_what_to_do(app: AppTest) -> None:
    app.multiselect(key="planner_offers").set_value([]).run()
    assert "Choose at least one offer" in app.info[0].value


def test_catalog_view(app: AppTest) -> None:
    app.switch_page("views/catalog.py").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert "volcengine/deepseek-r1" in set(table["Offer"])
    app.multiselect(key="catalog_providers").set_value(["deepseek"]).run()
    table = app.dataframe[0].value
    assert set(table["Provider"]) == {"deepseek"}
    # prices in the display currency beside the offer's own
    app.selectbox(key="display_currency").set_value("CNY").run()
    table = app.dataframe[0].value
    reasoner = table[table["Offer"] == "deepseek/deepseek-reasoner"].iloc[0]
    own = reasoner["Input / cached / output per 1M tokens, own currency"]
    assert own.endswith(" USD")
    assert reasoner["Input per 1M tokens (CNY)"] > float(own.split(" / ")[0]) * 6
    app.selectbox(key="catalog_offer").set_value("deepseek/deepseek-reasoner").run()
    assert any("off-peak" in c.value for c in app.caption)
    # the version's prices in words with their unit, not a bare {"input": ..., "output": ...}
    prices = [m.value for m in app.markdown if "Prices per 1M tokens" in m.value]
    assert prices and all("input" in p and "output" in p for p in prices), prices
    assert not app.json
