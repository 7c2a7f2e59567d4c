"""Catalog values the catalog work added (whole-day windows, cache-storage prices) and what
`quotascope catalog` shows and checks (models/catalog_view.py). Pure: catalogs are built from mappings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from models.catalog import UNDATED, Catalog
from models.catalog_parse import parse_catalog
from models.catalog_view import (
    check_catalog,
    offer_document,
    offer_row,
    offer_text,
    summarize,
    version_for,
    version_lines,
    week_intervals,
)
from models.errors import CatalogError
from models.money import FxRate, FxTable
from models.pricing import classify_one


def offer(**version: Any) -> dict[str, Any]:
    base = {
        "effective_from": "2025-01-01",
        "as_of": "2025-01-01",
        "source": "a test",
        "currency": "USD",
        "prices": {"input": 1, "output": 2},
    }
    return {"id": "t/o", "provider": "t", "model": "o", "versions": [{**base, **version}]}


def catalog(*offers: dict[str, Any], fx: list[dict[str, Any]] | None = None) -> Catalog:
    return parse_catalog({"offer": list(offers), "fx": fx or []}, "test.toml")


def _in(found: Catalog, at: datetime, period: str) -> bool:
    """Whether the pricing engine classifies `at` into `period` under the offer's version."""
    return classify_one(found.get("t/o").version_at(), at).period == period


def test_a_whole_day_window_parses_and_round_trips_its_label() -> None:
    version = catalog(
        offer(
            windows=[{"name": "weekend", "hours_utc": ["00:00-24:00"], "weekdays": [5, 6], "multiplier": 0.5}]
        )
    )
    window = version.get("t/o").version_at().windows[0]
    assert [s.label() for s in window.spans] == ["00:00-24:00"]
    saturday = datetime(2026, 11, 28)
    assert all(
        _in(version, saturday.replace(hour=h, minute=m), "weekend") for h in range(24) for m in (0, 59)
    )
    assert not _in(version, datetime(2026, 11, 27, 23, 59), "weekend")  # Friday
    assert not _in(version, datetime(2026, 11, 30, 0, 0), "weekend")  # Monday


def test_a_span_to_midnight_written_24_00_stays_on_its_day() -> None:
    version = catalog(
        offer(windows=[{"name": "late", "hours_utc": ["22:00-24:00"], "weekdays": [0], "multiplier": 0.5}])
    )
    assert _in(version, datetime(2026, 11, 23, 23, 59), "late")
    assert not _in(version, datetime(2026, 11, 24, 0, 0), "late")


@pytest.mark.parametrize("span", ["00:00-00:00", "08:00-08:00"])
def test_an_empty_span_is_still_an_error(span: str) -> None:
    with pytest.raises(CatalogError, match=r"field 'versions\[0\]\.windows\[0\]\.hours_utc'.*00:00-24:00"):
        catalog(offer(windows=[{"name": "x", "hours_utc": [span], "multiplier": 0.5}]))


def test_cache_storage_price_parses_and_must_not_be_negative() -> None:
    prices = {"input": 4, "output": 16, "cached_input": 0.8, "cache_storage_per_hour": 0.017}
    version = catalog(offer(prices=prices)).get("t/o").version_at()
    assert version.prices is not None and version.prices.cache_storage_per_hour == Decimal("0.017")
    with pytest.raises(CatalogError, match=r"prices\.cache_storage_per_hour"):
        catalog(offer(prices={**prices, "cache_storage_per_hour": -1}))


def test_version_for_falls_back_to_the_newest() -> None:
    two = {
        "id": "t/two",
        "provider": "t",
        "model": "two",
        "versions": [
            offer()["versions"][0],
            {**offer()["versions"][0], "effective_from": "2026-01-01", "prices": {"input": 3, "output": 4}},
        ],
    }
    o = catalog(two).get("t/two")
    assert version_for(o, datetime(2025, 6, 1)).effective_from == datetime(2025, 1, 1)
    assert version_for(o, datetime(2027, 1, 1)).effective_from == datetime(2026, 1, 1)
    assert version_for(o, datetime(2020, 1, 1)).effective_from == datetime(
        2026, 1, 1
    )  # none in force: newest
    assert version_for(o, None).effective_from == datetime(2026, 1, 1)
    row = offer_row(o, datetime(2025, 6, 1))
    assert (row["input"], row["output"], row["versions"], row["version_id"]) == (1, 2, 2, "t/two@2025-01-01")


def test_offer_row_applies_the_rpm_per_tpm_rule_and_marks_unpriced() -> None:
    version = offer()["versions"][0]
    del version["prices"]
    c = catalog({**offer(), "versions": [{**version, "limits": {"tpm": 60_000, "rpm_per_tpm": [6, 1000]}}]})
    row = offer_row(c.get("t/o"), None)
    assert (row["priced"], row["input"], row["tpm"], row["rpm"], row["scope"]) == (
        False,
        None,
        60_000,
        360,
        "key",
    )


def test_offer_document_and_text_name_sources_and_fx() -> None:
    c = catalog(
        offer(currency="CNY", fees_per_1k_calls={"web_search": 5}, notes="a caveat"),
        fx=[{"base": "USD", "quote": "CNY", "rate": 7.3, "as_of": "2025-02-01", "source": "somewhere"}],
    )
    o = c.get("t/o")
    document = offer_document(c, o)
    assert document["versions"][0]["source"] == "a test"
    assert document["versions"][0]["fees_per_1k_calls"] == {"web_search": Decimal(5)}
    assert document["fx_rates"][0]["rate"] == Decimal("7.3")
    text = offer_text(c, o, None)
    assert "source:     a test" in text and "fee:        web_search 5 CNY per 1,000 calls" in text
    assert "1 USD = 7.3 CNY (somewhere, 2025-02-01)" in text and "notes:      a caveat" in text


def test_summary_counts() -> None:
    c = catalog(offer(), {**offer(), "id": "u/o", "provider": "u"})
    summary = summarize(c)
    assert (summary.offers, summary.versions, summary.fx_rates, summary.providers) == (2, 2, 0, ("t", "u"))
    assert summary.sentence() == "2 offers from 2 providers, 2 versions, 0 FX rates"


def test_checks_flag_what_parses_but_looks_wrong() -> None:
    c = catalog(
        offer(
            currency="CNY",
            promotions=[{"name": "old", "start": "2024-01-01", "end": "2024-02-01", "multiplier": 0.5}],
            windows=[
                {"name": "night", "hours_utc": ["22:00-02:00"], "multiplier": 0.5},
                {"name": "dawn", "hours_utc": ["01:00-03:00"], "multiplier": 0.25},
            ],
        ),
        {**offer(), "id": "u/o"},
    )
    warnings = check_catalog(c)
    assert "no FX rate converts CNY: its figures cannot be shown in another currency" in warnings
    assert "no FX rate converts USD: its figures cannot be shown in another currency" in warnings
    assert any("promotion 'old' runs outside the version's dates" in w for w in warnings)
    assert any("windows 'night' and 'dawn' overlap" in w for w in warnings)
    with_fx = Catalog(
        dict(c.offers), FxTable((FxRate("USD", "CNY", Decimal(7), datetime(2025, 1, 1).date(), "s"),))
    )
    assert not any("no FX rate" in w for w in check_catalog(with_fx))


def test_week_intervals_cover_wrapping_and_whole_day_spans() -> None:
    c = catalog(
        offer(
            windows=[
                {"name": "a", "hours_utc": ["16:30-00:30"], "weekdays": [6], "multiplier": 0.5},
                {"name": "b", "hours_utc": ["00:00-24:00"], "weekdays": [2], "multiplier": 0.5},
            ]
        )
    )
    a, b = c.get("t/o").version_at().windows
    assert week_intervals(a) == [(6 * 1440 + 990, 7 * 1440), (0, 30)]  # Sunday night into Monday
    assert week_intervals(b) == [(2 * 1440, 3 * 1440)]


def test_a_version_without_a_published_start_reads_as_undated() -> None:
    undated = catalog(offer(effective_from=UNDATED.date().isoformat())).get("t/o")
    dated = catalog(offer()).get("t/o")
    assert (
        version_lines(undated.versions[0], True)[0]
        == "version undated (no start date published) -> open  (in force)"
    )
    assert version_lines(dated.versions[0], False)[0] == "version 2025-01-01 -> open"
