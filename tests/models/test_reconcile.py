"""The reconciliation rule (models.reconcile): gap, share, flag, and what explains a gap."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from models.errors import InputError
from models.money import Money
from models.reconcile import (
    Billed,
    flagged_days,
    gap_alert_text,
    parse_reconcile_by,
    parse_threshold,
    reconcile,
    rows_frame,
)
from models.spend import SpendRow

DAY = date(2026, 12, 1)
BY = ("day", "provider")


def spend(
    cost: str | None,
    requests: int = 10,
    input_tokens: int = 1000,
    output_tokens: int = 100,
    unpriced: tuple[str, ...] = (),
    unpriced_requests: int = 0,
    **keys: Any,
) -> SpendRow:
    return SpendRow(
        keys={"day": DAY, "provider": "openai", **keys},
        requests=requests,
        input_tokens=input_tokens,
        cached_input_tokens=0,
        cache_write_tokens=0,
        output_tokens=output_tokens,
        reasoning_tokens=0,
        cost=Money(Decimal(cost), "USD") if cost is not None else None,
        cache_savings=None,
        discounted_cost=None,
        billed_cost=None,
        price_versions=(),
        periods=(),
        unpriced_models=unpriced,
        unpriced_requests=unpriced_requests,
        fx=(),
    )


def bill(amount: str, **keys: Any) -> Billed:
    return Billed({"day": DAY, "provider": "openai", **keys}, Money(Decimal(amount), "USD"))


def test_gap_and_share_are_exact_decimals() -> None:
    (row,) = reconcile(BY, [spend("9.70")], [bill("10.00")], [], [])
    assert row.gap == Money(Decimal("0.30"), "USD")
    assert row.gap_share == Decimal("0.03")
    assert row.flagged  # 3 % > 2 %
    json = row.to_json()
    assert json["day"] == "2026-12-01" and json["provider"] == "openai"
    assert json["computed"] == {"amount": "9.7", "currency": "USD"}
    assert json["billed"] == {"amount": "10", "currency": "USD"}
    assert json["gap"] == {"amount": "0.3", "currency": "USD"}
    assert json["gap_share"] == "0.030000"


def test_threshold_decides_the_flag_both_ways() -> None:
    (under,) = reconcile(BY, [spend("9.81")], [bill("10")], [], [])
    assert not under.flagged
    (over_logged,) = reconcile(BY, [spend("10.50")], [bill("10")], [], [])
    assert over_logged.flagged and over_logged.gap_share == Decimal("-0.05")
    (loose,) = reconcile(BY, [spend("9.70")], [bill("10")], [], [], threshold=Decimal("0.05"))
    assert not loose.flagged


def test_unlogged_requests_and_their_cost_come_from_the_providers_counts() -> None:
    logs = spend("8.00", requests=80, input_tokens=8000, output_tokens=800)
    provider = spend("10.00", requests=100, input_tokens=10000, output_tokens=1000)
    (row,) = reconcile(BY, [logs], [bill("10.00")], [provider], [provider])
    assert row.unlogged_requests == 20
    assert row.unlogged_cost == Money(Decimal("2.00"), "USD")
    assert row.price_gap == Money(Decimal("0.00"), "USD")
    texts = " | ".join(row.explanations)
    assert "20 requests billed but not logged: the provider counted 100, the logs hold 80" in texts
    assert "token totals differ (provider vs logs): input 10,000 vs 8,000; output 1,000 vs 800" in texts
    assert "list price by" not in texts  # nothing left once the unlogged requests are priced


def test_a_price_gap_remains_when_the_counts_agree() -> None:
    same = spend("10.00")
    (row,) = reconcile(BY, [same], [bill("10.50")], [same], [same])
    assert row.unlogged_requests == 0 and row.unlogged_cost == Money(Decimal(0), "USD")
    assert row.price_gap == Money(Decimal("0.50"), "USD")
    assert any("own usage at list price by 0.5000 USD" in t for t in row.explanations)
    assert not any("token totals" in t for t in row.explanations)


def test_more_logged_than_counted_is_said() -> None:
    logs = spend("10.00", requests=12)
    provider = spend("10.00", requests=10)
    (row,) = reconcile(BY, [logs], [bill("10")], [provider], [provider])
    assert row.unlogged_requests == -2
    assert any("the logs hold 2 more requests than the provider counted" in t for t in row.explanations)


def test_unpriced_models_are_named() -> None:
    logs = spend("5.00", unpriced=("openai/gpt-future",), unpriced_requests=7)
    (row,) = reconcile(BY, [logs], [bill("9")], [], [])
    assert any("7 logged requests have no catalog price" in t and "gpt-future" in t for t in row.explanations)
    assert any("no provider usage pulled" in t for t in row.explanations)


def test_requests_unknown_to_the_provider_report_explain_by_tokens_only() -> None:
    logs = spend("5.00", input_tokens=900)
    provider = spend("5.00", input_tokens=1000)
    (row,) = reconcile(BY, [logs], [bill("5.2")], [provider], [])
    assert row.unlogged_requests is None and row.provider is not None and row.provider.requests is None
    assert row.to_json()["provider_usage"]["requests"] is None
    assert any("input 1,000 vs 900" in t for t in row.explanations)


def test_groups_on_one_side_only() -> None:
    other_day = {"day": date(2026, 12, 2)}
    rows = reconcile(BY, [spend("3")], [bill("4", **other_day)], [], [])
    logged_only, billed_only = rows
    assert logged_only.billed is None and logged_only.gap is None and not logged_only.flagged
    assert "no bill pulled" in logged_only.explanations[0]
    assert billed_only.computed is None and billed_only.gap == Money(Decimal(4), "USD")
    assert billed_only.gap_share == 1 and billed_only.flagged
    assert "nothing logged for this group" in billed_only.explanations


def test_groups_by_model_and_project() -> None:
    keys = ("day", "provider", "model", "project")
    a = spend("1", model="o1", project="p1")
    b = spend("2", model="o1", project="p2")
    rows = reconcile(
        keys, [a, b], [bill("1", model="o1", project="p1"), bill("3", model="o1", project="p2")], [], []
    )
    assert [(r.keys["project"], r.flagged) for r in rows] == [("p1", False), ("p2", True)]
    assert [r.keys["project"] for r in flagged_days(rows)] == ["p2"]
    assert gap_alert_text(rows[1], Decimal("0.02")).startswith("day 2026-12-01, provider openai, model o1")


def test_currencies_must_agree() -> None:
    logs = SpendRow(**{**spend("1").__dict__, "cost": Money(Decimal(1), "CNY")})
    with pytest.raises(InputError, match="--display-currency USD"):
        reconcile(BY, [logs], [bill("1")], [], [])


def test_options() -> None:
    assert parse_reconcile_by("") == ("day", "provider")
    assert parse_reconcile_by("day, model") == ("day", "model")
    with pytest.raises(InputError):
        parse_reconcile_by("team")
    assert parse_threshold("2%") == Decimal("0.02") == parse_threshold("0.02") == parse_threshold("2 %")
    with pytest.raises(InputError):
        parse_threshold("-1")
    with pytest.raises(InputError):
        parse_threshold("lots")


def test_rows_frame_keeps_money_exact() -> None:
    rows = reconcile(BY, [spend("9.70")], [bill("10.00")], [], [])
    frame = rows_frame(rows)
    assert frame.columns == [
        "day",
        "provider",
        "computed",
        "billed",
        "gap",
        "gap_share",
        "flagged",
        "explanations",
    ]
    assert frame.row(0) == (
        DAY,
        "openai",
        Decimal("9.70"),
        Decimal("10.00"),
        Decimal("0.30"),
        Decimal("0.03"),
        True,
        "no provider usage pulled to explain it (`quotascope pull openai-usage|anthropic-usage`)",
    )
    assert rows_frame([]).is_empty()
