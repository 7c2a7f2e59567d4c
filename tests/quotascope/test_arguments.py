"""One arguments module for every command: the same date, number, share and list rules everywhere, each
mistake one sentence with exit code 2."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from quotascope import arguments
from quotascope.cli import main
from storage.store import Store
from tests.storage.usage_rows import insert_usage


def test_moments_days_and_months() -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs(arguments.when("now") - now) < timedelta(seconds=5)
    assert abs(arguments.when("7d") - (now - timedelta(days=7))) < timedelta(seconds=5)
    assert abs(arguments.when("12h") - (now - timedelta(hours=12))) < timedelta(seconds=5)
    assert abs(arguments.when("30m") - (now - timedelta(minutes=30))) < timedelta(seconds=5)
    assert arguments.when("2026-11-23") == datetime(2026, 11, 23)
    assert arguments.when("2026-11-23T17:00+08:00") == datetime(2026, 11, 23, 9)  # stored as UTC
    assert arguments.day("2026-11-23T17:00") == datetime(2026, 11, 23).date()
    assert arguments.month("2026-11") == datetime(2026, 11, 1).date()
    for wrong in ("yesterday", "7 weeks", "2026-13-01", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="7d, 12h or 30m"):
            arguments.when(wrong)


def test_numbers_shares_and_lists() -> None:
    assert arguments.positive_whole("1,000") == 1000 and arguments.whole("0") == 0
    assert arguments.non_negative("0") == 0 and arguments.positive("0.5") == Decimal("0.5")
    assert arguments.share("1") == 1 and arguments.open_share("0.9") == Decimal("0.9")
    assert arguments.whole_list("1, 8,32") == [1, 8, 32]
    assert arguments.number_list("3,1") == [3, 1]
    assert arguments.names("search, legal") == ["search", "legal"]
    cases = [
        (arguments.positive_whole, "0", "positive whole number"),
        (arguments.whole, "1.5", "whole number"),
        (arguments.positive, "0", "positive"),
        (arguments.non_negative, "-1", "zero or more"),
        (arguments.share, "1.5", "between 0 and 1"),
        (arguments.open_share, "1", "between 0 and 1"),
        (arguments.whole_list, "1,0", "positive whole number"),
        (arguments.whole_list, ",", "separated by commas"),
        (arguments.positive, "nan", "positive"),
    ]
    for parse, text, message in cases:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


@pytest.fixture
def db(store: Store, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Usage of the last 30 hours, in the DuckDB file and in chdb (`store` names it in QUOTASCOPE_STORE)."""
    path = store.db
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    insert_usage(
        store,
        [
            {
                "ts": now - timedelta(hours=h),
                "provider": "volcengine",
                "model": "deepseek-r1",
                "input_tokens": 2000,
                "output_tokens": 2000,
                "reasoning_tokens": 1500,
                "team": "search",
            }
            for h in range(1, 30)
        ],
    )
    monkeypatch.setenv("QUOTASCOPE_DB", str(path))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_every_command_takes_the_same_dates(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--since 7d` worked for `report` only; `simulate` and `plan --from-usage` refused it."""
    [row] = run_json(capsys, "report", "spend", "--by", "team", "--since", "7d")  # type: ignore[misc]
    assert row["requests"] == 29
    simulated = run_json(
        capsys, "simulate", "--offer", "volcengine/deepseek-r1", "--since", "7d", "--until", "now"
    )
    assert simulated["targets"][0]["requests"] == 29  # type: ignore[index]
    planned = run_json(capsys, "plan", "--offer", "volcengine/deepseek-r1", "--from-usage", "--since", "2d")
    assert planned["tokens_per_question"]["input"] == 2000  # type: ignore[index]
    with pytest.raises(SystemExit) as refused:
        main(["simulate", "--offer", "volcengine/deepseek-r1", "--since", "last week"])
    assert refused.value.code == 2
    assert "argument --since: must be a date or date-time" in capsys.readouterr().err


def test_a_zero_ttft_is_zero_not_the_seed(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`simulate --ttft-ms 0` silently became 390 ms (0 was taken for "not given")."""
    plan = run_json(capsys, "plan", "--offer", "volcengine/deepseek-r1", "--ttft-ms", "0")
    assert plan["latency"] == {"ttft_ms": 0, "tokens_per_s": 35.4, "assumed": True}  # type: ignore[index]
    # a target with a concurrency limit: requests' durations matter, and the replay says what it assumed
    fast = run_json(capsys, "simulate", "--offer", "deepseek/deepseek-v4-pro", "--ttft-ms", "0")
    seed = run_json(capsys, "simulate", "--offer", "deepseek/deepseek-v4-pro")
    said = " ".join(fast["targets"][0]["assumptions"])  # type: ignore[index]
    assert "TTFT 0 ms" in said, said
    assert "TTFT 390 ms" in " ".join(seed["targets"][0]["assumptions"])  # type: ignore[index]
    with pytest.raises(SystemExit) as refused:
        main(["simulate", "--offer", "volcengine/deepseek-r1", "--ttft-ms", "-1"])
    assert refused.value.code == 2
    assert "argument --ttft-ms: must be zero or more" in capsys.readouterr().err
