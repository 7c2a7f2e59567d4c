"""The whole loop on the wire: the official `openai` SDK sends traffic to the emulator (a real uvicorn
server), the client logs what it got, the emulator bills what it served, `quotascope pull` reads the four
admin reports and `quotascope report reconcile` finds the known gap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from collectors.emulator import Billing, EmulatorConfig, EmulatorServer
from quotascope import settings
from quotascope.cli import main
from quotascope.context import user_catalogs
from storage.catalog import load_catalog
from tests.collectors.pull_support import ADMIN_KEY, send_traffic


@pytest.fixture
def catalog() -> Any:
    return load_catalog(Path(settings.get("catalog_dir")), user_catalogs())


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert ADMIN_KEY not in out and ADMIN_KEY not in err
    return json.loads(out) if "--json" in argv else out


@pytest.fixture
def admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRE_ADMIN_KEY", ADMIN_KEY)


@pytest.fixture
def openai_emulator(catalog: Any) -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        model="o1", ttft_ms=0, tokens_per_s=20_000, output_tokens=12, fault_drop_rate=0.3, seed=11
    )
    with EmulatorServer(config, billing=Billing(catalog, provider="openai", busy_answers=2)) as server:
        yield server


def test_sdk_traffic_pull_and_reconcile_find_the_unlogged_requests(
    openai_emulator: EmulatorServer, admin_key: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "app.jsonl"
    failed, logged_cost = send_traffic(openai_emulator, log, 30, "openai")
    billed_requests = openai_emulator.billing.snapshot()
    assert failed > 0 and len(billed_requests) == 30  # every dropped answer was billed
    billed_total = sum((amount for r in billed_requests for _, _, amount in r.lines), Decimal(0))

    cli(capsys, "ingest", str(log))
    base = ["--base-url", openai_emulator.base_url, "--admin-key-env", "WIRE_ADMIN_KEY", "--json"]
    usage = cli(capsys, "pull", "openai-usage", *base)
    costs = cli(capsys, "pull", "openai-costs", *base)
    assert usage["retries"] + costs["retries"] == 2  # the emulator's first two admin answers were 429
    assert usage["read"] == usage["stored"] + usage["duplicates"] + usage["rejected"]
    assert costs["stored"] == 3 and costs["rejected"] == 0  # input, cached input, output line items

    report = cli(capsys, "report", "reconcile", "--by", "day,provider,model,project", "--json")
    (row,) = report["rows"]
    assert (row["provider"], row["model"], row["project"]) == ("openai", "o1", "proj_a")
    billed, computed, gap = (Decimal(row[k]["amount"]) for k in ("billed", "computed", "gap"))
    assert billed == billed_total.quantize(Decimal("0.000001"))
    assert computed == logged_cost.quantize(Decimal("0.000001"))
    assert gap == billed - computed and gap > 0
    assert Decimal(row["gap_share"]) == (gap / billed).quantize(Decimal("0.000001"))
    assert row["flagged"] is True
    assert row["unlogged_requests"] == failed
    assert Decimal(row["unlogged_cost"]["amount"]) == gap  # unlogged requests explain all of it
    assert Decimal(row["price_gap"]["amount"]) == 0
    assert any(f"{failed} requests billed but not logged" in text for text in row["explanations"])
    assert report["new_alerts"] and report["new_alerts"][0]["kind"] == "billing_gap"

    # pulled again: the same day is replaced, not doubled, and the gap is the same
    again = cli(capsys, "pull", "openai-costs", *base)
    assert again["replaced"] == 3
    second = cli(capsys, "report", "reconcile", "--json")
    assert Decimal(second["rows"][0]["gap"]["amount"]) == gap
    assert second["new_alerts"] == []  # the day was alerted once

    text = cli(capsys, "report", "reconcile")
    assert "FLAG" in text and "billed but not logged" in text
    database = Path(settings.get("db")).read_bytes()
    assert ADMIN_KEY.encode() not in database and b"sk-app-key" not in database


def test_anthropic_reports_on_the_wire_with_a_price_discrepancy(
    catalog: Any, admin_key: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = EmulatorConfig(model="claude-sonnet-4-5", ttft_ms=0, tokens_per_s=20_000, output_tokens=10)
    billing = Billing(catalog, provider="anthropic", price_factor=Decimal("1.05"))
    with EmulatorServer(config, billing=billing) as server:
        log = tmp_path / "app.jsonl"
        failed, _ = send_traffic(server, log, 8, "anthropic")
        assert failed == 0
        cli(capsys, "ingest", str(log))
        base = ["--base-url", server.base_url, "--admin-key-env", "WIRE_ADMIN_KEY", "--json"]
        usage = cli(capsys, "pull", "anthropic-usage", *base)
        costs = cli(capsys, "pull", "anthropic-costs", *base)
    assert usage["stored"] == 1 and costs["stored"] == 3
    report = cli(capsys, "report", "reconcile", "--json")
    (row,) = report["rows"]
    assert row["provider"] == "anthropic"
    billed, computed = Decimal(row["billed"]["amount"]), Decimal(row["computed"]["amount"])
    # billed 5 % over list price: the gap is 0.05 / 1.05 of the bill (to the micro-dollar shown)
    assert abs(billed - computed * Decimal("1.05")) <= Decimal("0.000002")
    assert Decimal(row["gap_share"]) == pytest.approx(Decimal(1) - 1 / Decimal("1.05"), abs=Decimal("0.0001"))
    assert row["unlogged_requests"] is None  # Anthropic's usage report has no request counts
    assert row["provider_usage"]["requests"] is None
    # the token totals agree, so no token explanation; nothing priced by request count either
    assert not any("token totals differ" in text for text in row["explanations"])
