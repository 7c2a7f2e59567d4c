"""`quotascope plan` as a user runs it, on the shipped catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quotascope.cli import main


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main(["plan", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        code = main(["plan", *args])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


def test_seed_anchor_typical_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(capsys, "--tpm", "10000", "--input-tokens", "2000", "--output-tokens", "2000")
    assert doc["questions_per_minute"] == 2.5 and doc["binding_limit"] == "tpm"


def test_seed_anchors_on_the_shipped_ark_offer(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(capsys, "--offer", "volcengine/deepseek-r1")  # default profile: R1, 4,000 tokens
    assert doc["questions_per_minute"] == 1250
    assert doc["limits"]["tpm"] == 1250 and doc["limits"]["rpm"] == 30000
    doc = plan_json(
        capsys, "--offer", "volcengine/deepseek-r1", "--input-tokens", "8000", "--output-tokens", "2000"
    )
    assert doc["questions_per_minute"] == 500
    assert doc["tokens_per_question"]["counted"] == 10000
    doc = plan_json(capsys, "--offer", "cloud/deepseek-r1-10k")
    assert doc["questions_per_minute"] == 2.5


def test_contract_fields_with_a_demand(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys,
        "--offer",
        "volcengine/deepseek-r1",
        "--users",
        "50000",
        "--questions-per-user-day",
        "40",
        "--peak-factor",
        "3",
        "--at",
        "2025-12-01",
        "--ttft-ms",
        "390",
        "--tokens-per-s",
        "35.4",
    )
    for key in (
        "questions_per_minute",
        "binding_limit",
        "limits",
        "tokens_per_question",
        "concurrency",
        "cost_per_question",
        "cost_per_1k_questions",
        "monthly_cost",
        "keys_needed",
    ):
        assert key in doc, key
    assert set(doc["tokens_per_question"]) >= {"input", "cached_input", "output", "counted"}
    # 50,000 × 40 / 1,440 × 3 = 4,166.7 q/min at peak over 1,250 a key → 4 keys
    assert doc["keys_needed"] == 4
    assert doc["latency"]["assumed"] is False
    assert doc["cost_per_question"]["currency"] == "CNY"
    per_question = Decimal(doc["cost_per_question"]["amount"])
    monthly = Decimal(doc["monthly_cost"]["amount"])
    assert monthly == (per_question * 2_000_000 * 30).quantize(Decimal("0.01"))


def test_price_version_follows_at_and_promotion(capsys: pytest.CaptureFixture[str]) -> None:
    # the Feb 2025 version publishes no list price; give Ark's later list price and the promotion halves it
    feb = plan_json(
        capsys,
        "--offer",
        "volcengine/deepseek-r1",
        "--at",
        "2025-02-10",
        "--price-input",
        "4",
        "--price-output",
        "16",
    )
    later = plan_json(capsys, "--offer", "volcengine/deepseek-r1", "--at", "2025-12-10")
    assert feb["promotion"] is not None
    assert Decimal(feb["cost_per_question"]["amount"]) * 2 == Decimal(later["cost_per_question"]["amount"])


def test_off_peak_hours_weight_the_cost(capsys: pytest.CaptureFixture[str]) -> None:
    night = ",".join("1" if h == 20 else "0" for h in range(24))
    day = ",".join("1" if h == 9 else "0" for h in range(24))
    args = ("--offer", "deepseek/deepseek-reasoner", "--at", "2025-03-03")
    off = plan_json(capsys, *args, "--hourly-shape", night)
    on = plan_json(capsys, *args, "--hourly-shape", day)
    assert off["time_of_day_multiplier"] == 0.25 and on["time_of_day_multiplier"] == 1
    assert Decimal(off["cost_per_question"]["amount"]) * 4 == Decimal(on["cost_per_question"]["amount"])


def test_display_currency_states_its_rate(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys, "--offer", "deepseek/deepseek-v4-pro", "--display-currency", "USD", "--at", "2026-11-23"
    )
    assert doc["cost_per_question"]["currency"] == "USD"
    assert doc["fx"]["source"] and doc["fx"]["pair"] in ("USD/CNY", "CNY/USD")


def test_concurrency_bound_deepseek_account(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys,
        "--offer",
        "deepseek/deepseek-v4-pro",
        "--ttft-ms",
        "1000",
        "--tokens-per-s",
        "50",
        "--at",
        "2026-11-23",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "1450",
    )
    # each call holds a stream 1 s + 1,450/50 s = 30 s; 500 streams → 1,000 q/min
    assert doc["binding_limit"] == "concurrency" and doc["questions_per_minute"] == 1000
    assert doc["scope"] == "account"


def test_overrides_and_custom_prices(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys,
        "--tpm",
        "60000",
        "--rpm",
        "10",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "500",
        "--price-input",
        "2",
        "--price-output",
        "8",
        "--currency",
        "usd",
    )
    assert doc["binding_limit"] == "rpm" and doc["questions_per_minute"] == 10
    assert doc["cost_per_question"] == {"amount": "0.006", "currency": "USD"}


def test_several_offers_and_a_mix(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys,
        "--offer",
        "volcengine/deepseek-r1",
        "--offer",
        "cloud/deepseek-r1-10k",
        "--peak-qpm",
        "1300",
        "--mix",
        "overflow",
        "--at",
        "2025-12-01",
    )
    assert [p["offer"] for p in doc["plans"]] == ["volcengine/deepseek-r1", "cloud/deepseek-r1-10k"]
    shares = doc["mix"]["shares"]
    assert shares[0]["peak_per_minute"] == 1250 and shares[1]["peak_per_minute"] == 2.5
    assert doc["mix"]["unserved_per_minute"] == 47.5


def test_ptu_offer(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys,
        "--offer",
        "azure/deepseek-r1-ptu",
        "--ptus",
        "100",
        "--input-tokens",
        "2000",
        "--output-tokens",
        "2000",
    )
    assert doc["questions_per_minute"] == 40  # 400,000 / (2,000 + 4 × 2,000)


def test_selfhost_break_even(capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(
        capsys,
        "--tpm",
        "100000",
        "--input-tokens",
        "500",
        "--output-tokens",
        "500",
        "--price-input",
        "7",
        "--price-output",
        "7",
        "--selfhost-node-cost-per-hour",
        "36",
        "--selfhost-tokens-per-s",
        "5000",
        "--peak-qpm",
        "100",
    )
    host = doc["selfhost"]
    assert host["api_cost_per_mtok"] == {"amount": "7", "currency": "USD"}
    assert host["selfhost_cost_per_mtok"] == {"amount": "2", "currency": "USD"}
    assert host["cheaper"] == "self-host"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--tpm", "-5"), "positive whole number"),
        (("--tpm", "0"), "positive whole number"),
        (("--offer", "nope/nothing"), "unknown offer"),
        (("--tpm", "10", "--input-tokens", "-3", "--output-tokens", "1"), "zero or more"),
        (("--tpm", "10", "--input-tokens", "0", "--output-tokens", "0"), "input and output are both zero"),
        (("--tpm", "10", "--cache-hit-rate", "1.5"), "between 0 and 1"),
        (("--tpm", "10", "--input-tokens", "5"), "go together"),
        (
            ("--tpm", "10", "--preset", "chat", "--input-tokens", "1", "--output-tokens", "1"),
            "one token profile",
        ),
        ((), "give an --offer"),
        (("--offer", "volcengine/deepseek-r1", "--at", "2020-01-01"), "no price in force"),
        (("--offer", "volcengine/deepseek-r1", "--display-currency", "EUR"), "no FX rate"),
    ],
)
def test_nonsense_gets_one_sentence_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], says: str
) -> None:
    assert says in fails(capsys, *args)


def test_readable_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["plan", "--offer", "volcengine/deepseek-r1", "--peak-qpm", "3000", "--at", "2025-12-01"]) == 0
    )
    out = capsys.readouterr().out
    assert "Questions per minute: 1,250" in out and "binding limit: TPM" in out
    assert "keys needed (key scope): 3" in out
    assert "Assumptions:" in out and "seed measurement" in out


def test_installed_command(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "quotascope"
    result = subprocess.run(
        [str(exe), "plan", "--tpm", "5000000", "--input-tokens", "5000", "--output-tokens", "5000", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert json.loads(result.stdout)["questions_per_minute"] == 500
