"""FOCUS 1.0 rows from usage groups, worked by hand: list vs contracted vs effective cost, one row per token
type, tags, unpriced usage left out, CSV cells sanitised."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal

import polars as pl

from models.catalog import Catalog, Offer, Prices, Promotion
from models.focus import FOCUS_COLUMNS, focus_csv, focus_rows, publisher
from models.money import FxTable
from tests.models.factories import d, version
from tests.models.test_spend import groups as spend_groups

DAY = datetime(2025, 3, 1)


def offer(offer_id: str, provider: str, model: str, prices: Prices, **extra: object) -> Offer:
    v = version(offer_id=offer_id, prices=prices, **extra)
    return Offer(offer_id, provider, model, model, (v,))


# the public list: 4 in / 1 cached / 16 out per 1M (USD); the user's contract: 3 / 0.75 / 12, and a promotion
# at half price from 12:00 on the day
PUBLIC = Catalog({"p/m": offer("p/m", "p", "m", Prices(d(4), d(16), cached_input=d(1)))})
PROMO = Promotion("launch", datetime(2025, 3, 1, 12), datetime(2025, 3, 2), d("0.5"))
USER = Catalog(
    {
        "p/m": offer("p/m", "p", "m", Prices(d(3), d(12), cached_input=d("0.75")), promotions=(PROMO,)),
        "own/x": offer("own/x", "own", "x", Prices(d(2), d(2))),
    },
    FxTable(),
)


def groups(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Usage groups (`tests.models.test_spend.groups`) of team search, project faq, key key-1 at 09:00."""
    attribution = {"provider": "p", "model": "m", "team": "search", "project": "faq", "key": "key-1"}
    return spend_groups([{**attribution, "bucket": DAY.replace(hour=9), **r} for r in rows])


def test_one_row_per_token_type_with_list_contracted_and_effective_cost() -> None:
    usage = groups(
        [
            # morning, before the promotion: 3M input of which 1M cached, 2M output of which 0.5M reasoning
            {
                "input_tokens": 3_000_000,
                "cached_input_tokens": 1_000_000,
                "output_tokens": 2_000_000,
                "reasoning_tokens": 500_000,
                "requests": 10,
            },
            # afternoon, at half price: 1M output
            {"bucket": DAY.replace(hour=15), "output_tokens": 1_000_000, "requests": 2},
        ]
    )
    export = focus_rows(usage, USER, PUBLIC)
    rows = export.rows
    assert rows.columns[: len(FOCUS_COLUMNS)] == list(FOCUS_COLUMNS)
    assert all(c.startswith("x_") for c in rows.columns[len(FOCUS_COLUMNS) :])
    morning = {r["x_TokenType"]: r for r in rows.filter(pl.col("x_PricePeriod") == "standard").to_dicts()}
    assert set(morning) == {"input", "cached_input", "output", "reasoning"}  # no zero-token rows
    miss = morning["input"]
    assert (miss["ConsumedQuantity"], miss["PricingQuantity"], miss["PricingUnit"]) == (
        2_000_000,
        2,
        "1M Tokens",
    )
    assert (miss["ListUnitPrice"], miss["ContractedUnitPrice"]) == (4, 3)
    assert (miss["ListCost"], miss["ContractedCost"], miss["EffectiveCost"], miss["BilledCost"]) == (
        8,
        6,
        6,
        6,
    )
    assert morning["cached_input"]["ListCost"] == 1 and morning["cached_input"]["EffectiveCost"] == d("0.75")
    assert morning["output"]["ConsumedQuantity"] == 1_500_000 and morning["reasoning"]["EffectiveCost"] == 6
    afternoon = rows.filter(pl.col("x_PricePeriod") == "standard + launch").to_dicts()
    assert len(afternoon) == 1
    # list 16, contract 12, effective after the half-price promotion 6
    assert (afternoon[0]["ListCost"], afternoon[0]["ContractedCost"], afternoon[0]["EffectiveCost"]) == (
        16,
        12,
        6,
    )
    # the token types of a class add up to the engine's cost of it: 6 + 0.75 + 18 + 6 (+ 6 after noon)
    assert sum(rows["BilledCost"].to_list()) == d("36.75")
    assert export.billed_per_currency() == {"USD": d("36.75")}
    first = rows.row(0, named=True)
    assert first["ChargePeriodStart"].isoformat() == "2025-03-01T00:00:00+00:00"
    assert first["ChargePeriodEnd"].isoformat() == "2025-03-02T00:00:00+00:00"
    assert first["BillingPeriodStart"].isoformat() == "2025-03-01T00:00:00+00:00"
    assert first["BillingPeriodEnd"].isoformat() == "2025-04-01T00:00:00+00:00"
    assert json.loads(first["Tags"]) == {"team": "search", "project": "faq", "key": "key-1"}
    assert (first["ChargeCategory"], first["ServiceCategory"], first["BillingCurrency"]) == (
        "Usage",
        "AI and Machine Learning",
        "USD",
    )
    assert first["SkuPriceId"].startswith("p/m@2025-01-01:")


def test_hourly_charge_periods_and_a_users_own_offer_priced_at_its_own_list() -> None:
    usage = groups([{"provider": "own", "model": "x", "input_tokens": 1_000_000, "team": None, "key": None}])
    rows = focus_rows(usage, USER, PUBLIC, grain="hour").rows
    [row] = rows.to_dicts()
    assert row["ListCost"] == row["ContractedCost"] == row["EffectiveCost"] == 2  # no public list: its own
    assert row["ChargePeriodEnd"].isoformat() == "2025-03-01T10:00:00+00:00"
    assert json.loads(row["Tags"]) == {"project": "faq"} and row["ResourceId"] is None


def test_unpriced_usage_is_left_out_and_counted_never_exported_as_free() -> None:
    usage = groups([{"model": "mystery", "input_tokens": 5, "requests": 7}, {"input_tokens": 1_000_000}])
    export = focus_rows(usage, USER, PUBLIC)
    assert export.unpriced_requests == 7 and export.unpriced_models == (
        "p/mystery (no catalog offer sells this model)",
    )
    assert set(export.rows["ServiceName"]) == {"p m"}
    assert focus_rows(groups([]).clear(), USER, PUBLIC).rows.columns == export.rows.columns


def test_csv_times_are_iso_utc_and_hostile_names_never_run_as_formulas() -> None:
    usage = groups([{"team": '=HYPERLINK("http://evil.example")', "input_tokens": 1000}])
    text = focus_csv(focus_rows(usage, USER, PUBLIC).rows)
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["ChargePeriodStart"] == "2025-03-01T00:00:00Z"
    assert row["SubAccountId"].startswith("'=HYPERLINK")
    assert Decimal(row["BilledCost"]) == d("0.003")


def test_publisher_is_the_models_maker() -> None:
    assert publisher("DeepSeek-R1-250120", "volcengine") == "DeepSeek"
    assert publisher("o1-2024-12-17", "azure") == "OpenAI"
    assert publisher("claude-sonnet-4-5", "bedrock") == "Anthropic"
    assert publisher("house-model", "mine") == "mine"
