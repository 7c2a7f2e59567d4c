"""`quotascope report reconcile` as a user runs it: logs and a pulled bill in a real DuckDB file, alerts
stored once and POSTed to a local webhook, outside text kept harmless on the terminal."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from models.billing import CostLine
from quotascope.cli import main
from storage.db import open_write
from storage.pulls import PullRun, store_cost_pull
from storage.store import Store
from tests.quotascope.test_budget_cli import Receiver
from tests.storage.usage_rows import insert_usage

DAY = date(2026, 11, 10)
HOSTILE = "gpt-\x1b[2Jevil\nFAKE LINE"


def bill(db: Path, *lines: tuple[str | None, str]) -> None:
    run = PullRun(
        "openai-costs",
        "https://api.openai.com/v1",
        datetime(2026, 11, 10),
        datetime(2026, 11, 12),
        datetime(2026, 11, 12),
        1,
        0,
    )
    costs = [
        CostLine(
            f"k{i}",
            i,
            DAY,
            "openai",
            "proj_a",
            model,
            f"{model}, input",
            None,
            None,
            None,
            Decimal(amount),
            "USD",
        )
        for i, (model, amount) in enumerate(lines)
    ]
    store_cost_pull(db, run, costs, [], datetime(2026, 11, 12))


@pytest.fixture
def db(store: Store) -> Path:
    """(On each store: the DuckDB file alone, and usage in chdb beside it, named by QUOTASCOPE_STORE.)"""
    path = store.db
    # o1: 15 USD per 1M input, 60 per 1M output: 1,000,000 input + 100,000 output = 21 USD
    insert_usage(
        store,
        [
            {
                "ts": datetime(2026, 11, 10, 12),
                "provider": "openai",
                "model": "o1",
                "project": "proj_a",
                "input_tokens": 1_000_000,
                "output_tokens": 100_000,
            },
            {
                "ts": datetime(2026, 11, 10, 13),
                "provider": "openai",
                "model": HOSTILE,
                "project": "proj_a",
                "input_tokens": 10,
                "output_tokens": 10,
            },
        ],
    )
    return path


def reconcile(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> Any:
    code = main(
        ["report", "reconcile", "--db", str(db), "--since", "2026-11-01", "--until", "2026-12-01", *args]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out) if "--json" in args else out


def test_gap_flag_alert_and_webhook(
    capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bill(db, ("o1", "22.05"))
    with Receiver() as receiver:
        monkeypatch.setenv("QUOTASCOPE_GAP_WEBHOOK", receiver.url)
        first = reconcile(capsys, db, "--json")
        second = reconcile(capsys, db, "--json")
    (row,) = first["rows"]
    assert row["computed"] == {"amount": "21", "currency": "USD"}
    assert row["billed"] == {"amount": "22.05", "currency": "USD"}
    assert row["gap"] == {"amount": "1.05", "currency": "USD"}
    assert Decimal(row["gap_share"]) == (Decimal("1.05") / Decimal("22.05")).quantize(Decimal("0.000001"))
    assert row["flagged"] is True
    assert any("no catalog price" in t for t in row["explanations"])  # the unknown model is named
    (alert,) = first["new_alerts"]
    assert alert["webhook"] == "delivered (HTTP 200)"
    assert second["new_alerts"] == []  # raised once per day and provider
    (posted,) = receiver.received
    assert posted["kind"] == "billing_gap" and posted["day"] == "2026-11-10"
    assert posted["gap"] == {"amount": "1.05", "currency": "USD"}
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT day, webhook_status FROM gap_alerts").fetchall() == [
            (DAY, "delivered (HTTP 200)")
        ]


def test_threshold_by_model_and_no_alerts(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    bill(db, ("o1", "21.20"))  # 0.94 % over
    quiet = reconcile(capsys, db, "--json", "--by", "day,provider,model", "--no-alerts")
    o1 = next(r for r in quiet["rows"] if r["model"] == "o1")
    assert o1["flagged"] is False and o1["gap"] == {"amount": "0.2", "currency": "USD"}
    strict = reconcile(
        capsys, db, "--json", "--by", "day,provider,model", "--threshold", "0.5%", "--no-alerts"
    )
    assert next(r for r in strict["rows"] if r["model"] == "o1")["flagged"] is True
    assert strict["new_alerts"] == []
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM gap_alerts").fetchone() == (0,)


def test_outside_text_cannot_drive_the_terminal(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    bill(db, ("o1", "30"))
    text = reconcile(capsys, db, "--by", "day,provider,model")
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert "\nFAKE LINE" not in text  # the newline in the name is shown, not obeyed


def test_nothing_to_reconcile_says_what_to_run(capsys: pytest.CaptureFixture[str], store: Store) -> None:
    db = store.db
    with open_write(db):
        pass  # a database with every table and nothing in them
    text = reconcile(capsys, db)
    assert "quotascope pull openai-costs" in text


def test_the_period_is_whole_days(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    bill(db, ("o1", "21"))
    # from the middle of the day: the morning's logs still count against the day's bill
    text = reconcile(capsys, db, "--json", "--since", "2026-11-10T12:30", "--no-alerts")
    (row,) = text["rows"]
    assert row["computed"] == {"amount": "21", "currency": "USD"} and row["gap"]["amount"] == "0"


@pytest.mark.parametrize("command", [["report", "reconcile"], ["pull"]])
def test_help_reads(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "--since" in capsys.readouterr().out


def test_a_mistake_is_one_sentence(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["report", "reconcile", "--db", str(db), "--threshold", "lots"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "a gap threshold is a share like 0.02 or 2%" in err and "Traceback" not in err
    assert main(["report", "reconcile", "--db", str(db), "--by", "team"]) == 2
    assert "reconcile groups by some of day, provider, model, project" in capsys.readouterr().err
