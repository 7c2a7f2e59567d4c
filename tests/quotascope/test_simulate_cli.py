"""`quotascope simulate` as a user runs it: usage in a real DuckDB file, the shipped catalog plus a user's."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quotascope.cli import main
from storage.store import Store
from tests.storage.usage_rows import insert_usage

NINE = datetime(2026, 11, 2, 9)  # a Monday

# Two targets that differ only in how the same 6,000 TPM is enforced, priced $2 / $0.5 / $8 per 1M,
# caching from 1,024 tokens in 128-token steps (OpenAI's rule).
TARGETS = """
[[offer]]
id = "test/per-minute"
provider = "test"
model = "target"
currency = "USD"
[offer.limits]
tpm = 6000
[offer.counting]
window = "minute"
[offer.cache]
min_tokens = 1024
step_tokens = 128
[[offer.versions]]
effective_from = 2026-01-01
as_of = 2026-01-01
source = "test"
[offer.versions.prices]
input = 2
cached_input = 0.5
output = 8

[[offer]]
id = "test/per-second"
provider = "test"
model = "target-2"
currency = "USD"
[offer.limits]
tpm = 6000
[offer.counting]
window = "second"
[offer.cache]
min_tokens = 1024
step_tokens = 128
[[offer.versions]]
effective_from = 2026-01-01
as_of = 2026-01-01
source = "test"
[offer.versions.prices]
input = 2
cached_input = 0.5
output = 8
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(TARGETS)
    return path


@pytest.fixture
def db(store: Store) -> Path:
    """(On each store: the DuckDB file alone, and usage in chdb beside it, named by QUOTASCOPE_STORE.)"""
    """Fifteen DeepSeek-reasoner requests of 100 tokens: ten in the first second of 09:00, then one every
    ten seconds; the burst's requests carry 64 cached tokens (under any 1,024-token minimum)."""
    path = store.db
    burst = [
        {"ts": NINE, "input_tokens": 80, "cached_input_tokens": 64, "output_tokens": 20} for _ in range(10)
    ]
    later = [
        {"ts": NINE + timedelta(seconds=s), "input_tokens": 80, "output_tokens": 20}
        for s in range(10, 60, 10)
    ]
    insert_usage(store, [*burst, *later])
    return path


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main(["simulate", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys: pytest.CaptureFixture[str], code: int, *args: str) -> str:
    assert main(["simulate", *args]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("quotascope: ") and "Traceback" not in err and err.count("\n") == 0, err
    return err


def test_side_by_side_a_burst_the_per_minute_window_hides(
    capsys: pytest.CaptureFixture[str], db: Path, catalog: Path
) -> None:
    doc = simulate(
        capsys,
        "--db",
        str(db),
        "--catalog",
        str(catalog),
        "--offer",
        "test/per-minute",
        "--offer",
        "test/per-second",
    )
    minute, second = doc["targets"]
    assert doc["requests"] == 15
    for target in (minute, second):
        assert {
            "requests",
            "throttled_share",
            "minutes_over_limit",
            "added_delay_s",
            "cost",
            "cost_actual",
        } <= set(target)
        assert target["requests"] == 15
    assert minute["throttled_share"] == 0 and minute["minutes_over_limit"] == 0 and minute["keys_needed"] == 1
    # per second: 100 tokens/s; the burst's 1,000 tokens get one request through
    assert second["throttled_share"] == pytest.approx(0.6) and second["throttled_requests"] == 9
    assert second["minutes_over_limit"] == 1
    assert second["worst_minute"] == {"minute": "2026-11-02T09:00:00", "requests": 15, "throttled": 9}
    assert second["keys_needed"] == 10 and second["limits_needed"] == {"tpm": 60000}
    assert second["added_delay_s"] == {"p50": None, "p99": None}
    # 15 × (80 × $2 + 20 × $8) per 1M = $0.0048: 64 cached tokens are under the target's 1,024 minimum
    assert second["cost"] == {"amount": "0.0048", "currency": "USD"}
    # as served on DeepSeek (deepseek-reasoner, 2025-12 price): 10 × (16 × 0.28 + 64 × 0.028 + 20 × 0.42)
    # + 5 × (80 × 0.28 + 20 × 0.42) per 1M
    recorded = (10 * (16 * Decimal("0.28") + 64 * Decimal("0.028") + 20 * Decimal("0.42"))) + 5 * (
        80 * Decimal("0.28") + 20 * Decimal("0.42")
    )
    assert Decimal(doc["cost_actual"]["amount"]) == (recorded / 1_000_000).quantize(Decimal("0.000001"))
    assert second["cost_actual"] == doc["cost_actual"]


def test_ten_keys_and_the_queue_policy(capsys: pytest.CaptureFixture[str], db: Path, catalog: Path) -> None:
    base = ("--db", str(db), "--catalog", str(catalog), "--offer", "test/per-second")
    assert simulate(capsys, *base, "--keys", "10")["targets"][0]["throttled_share"] == 0
    queued = simulate(capsys, *base, "--policy", "queue")["targets"][0]
    # the burst is served one request a second: delays 0..9 s; five later requests never wait
    assert queued["added_delay_s"] == {"p50": 2, "p99": 9}
    assert queued["max_queue"] == 9 and queued["throttled_requests"] == 9


def test_period_filters_and_prices_at(capsys: pytest.CaptureFixture[str], db: Path, catalog: Path) -> None:
    base = ("--db", str(db), "--catalog", str(catalog), "--offer", "test/per-second")
    later = simulate(capsys, *base, "--since", "2026-11-02T09:00:05", "--until", "2026-11-02T10:00")
    assert later["requests"] == 5 and later["targets"][0]["throttled_share"] == 0
    pinned = simulate(capsys, *base, "--prices-at", "now")["targets"][0]
    assert any("version in force" in a for a in pinned["assumptions"])


def test_text_output_compares_targets(capsys: pytest.CaptureFixture[str], db: Path, catalog: Path) -> None:
    args = ["simulate", "--db", str(db), "--catalog", str(catalog), "--offer", "test/per-minute"]
    assert main([*args, "--offer", "test/per-second", "--tokenizer-ratio", "0.9,1.1"]) == 0
    out = capsys.readouterr().out
    assert "Replay of 15 recorded requests" in out
    assert "test/per-minute" in out and "test/per-second" in out
    assert "60.00 % (9)" in out and "10 keys" in out and "cost band" in out
    assert "tokenizer ratio 0.9–1.1" in out


def test_shipped_offers_run_and_say_what_they_assume(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = simulate(capsys, "--db", str(db), "--offer", "openai/o1", "--offer", "deepseek/deepseek-v4-pro")
    o1, pro = doc["targets"]
    assert any("--max-tokens" in a for a in o1["assumptions"])
    assert o1["cost"]["currency"] == "USD" and pro["cost"]["currency"] == "USD"  # one currency side by side
    assert pro["scope"] == "account" and pro["limits"] == {"max_concurrency": 500}


def test_mistakes_are_one_sentence(capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path) -> None:
    assert "--offer" in fails(capsys, 2, "--db", str(db))
    assert "unknown offer" in fails(capsys, 2, "--db", str(db), "--offer", "nope/nothing")
    nothing = ("--db", str(tmp_path / "none.duckdb"), "--store", "duckdb", "--offer", "openai/o1")
    assert "no database" in fails(capsys, 1, *nothing)
    empty = ("--db", str(db), "--offer", "openai/o1", "--since", "2025-01-01", "--until", "2025-02-01")
    assert "no stored usage" in fails(capsys, 2, *empty)
    assert "after --since" in fails(
        capsys, 2, "--db", str(db), "--offer", "openai/o1", "--since", "2026-12-01", "--until", "2026-11-01"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--offer", "openai/o1", "--tokenizer-ratio", "1.1,0.9"])
    assert exit_info.value.code == 2
