"""`quotascope report` as a user runs it: the JSON shapes, text, currency, and the empty and missing cases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from models.profile_bins import bin_of, value_of
from quotascope.cli import main
from storage.db import open_read, open_write
from storage.store import Store
from tests.collectors.ingest_support import CATALOG_FILE, SAMPLES


@pytest.fixture
def loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], store: Store
) -> Path:
    """The samples ingested by the CLI, on each store (usage in chdb when `store` names it)."""
    monkeypatch.setenv("QUOTASCOPE_DB", str(store.db))
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "test.toml").write_text(CATALOG_FILE.read_text())
    monkeypatch.setenv("QUOTASCOPE_CATALOG_DIR", str(catalog_dir))
    assert (
        main(
            [
                "ingest",
                str(SAMPLES / "deepseek.jsonl"),
                str(SAMPLES / "openai.jsonl"),
                str(SAMPLES / "vllm.jsonl"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    return Path(os.environ["QUOTASCOPE_DB"])


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(["report", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_spend_json_rows(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = report(capsys, "spend", "--by", "provider,model")
    assert isinstance(rows, list)
    by_model = {r["model"]: r for r in rows}
    deepseek = by_model["deepseek-reasoner"]
    assert deepseek == {
        "provider": "deepseek",
        "model": "deepseek-reasoner",
        "requests": 6,
        "input_tokens": 9000,
        "cached_input_tokens": 6144,
        "cache_write_tokens": 0,
        "output_tokens": 4700,
        "reasoning_tokens": 3520,
        "cost": {"amount": "0.074948", "currency": "CNY"},
        "cache_savings": {"amount": "0.015552", "currency": "CNY"},
        # the part priced in the off-peak window (16:30-00:30 UTC): the hour rows mix both periods
        "discounted_cost": {"amount": "0.00594", "currency": "CNY"},
        "billed_cost": None,
        "price_versions": ["test/deepseek-reasoner@2025-01-01", "test/deepseek-reasoner@2025-03-03"],
        "periods": ["off-peak", "standard"],
        "unpriced": {"models": [], "requests": 0},
        "fx": [],
    }
    vllm = by_model["deepseek-ai/DeepSeek-R1"]
    # a gateway name several providers sell, and the log names no provider: unpriced, saying why
    assert vllm["cost"] is None and vllm["unpriced"]["requests"] == 2
    (why,) = vllm["unpriced"]["models"]
    assert (
        why.startswith("?/deepseek-ai/DeepSeek-R1 (sold by several providers (")
        and "the log names none" in why
    )


def test_spend_in_a_display_currency_says_which_rate(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = report(capsys, "spend", "--by", "day", "--display-currency", "cny")
    day = {r["day"]: r for r in rows}
    assert day["2025-03-05"]["cost"] == {"amount": "1.92038", "currency": "CNY"}
    assert day["2025-03-05"]["fx"] == ["1 USD = 7 CNY (test rate, 2025-01-01)"]


def test_spend_text_lists_totals_unpriced_and_versions(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "spend", "--since", "2025-03-01", "--until", "2025-04-01"]) == 0
    out = capsys.readouterr().out
    assert "0.0749 CNY" in out and "0.2625 USD" in out
    assert "total: 0.0749 CNY + 0.2743 USD" in out  # 0.01184 + 0.2625
    assert "unpriced (2 requests, not counted above): ?/deepseek-ai/DeepSeek-R1" in out
    assert "priced with: test/deepseek-reasoner@2025-01-01, test/deepseek-reasoner@2025-03-03" in out


def test_usage_json_per_day(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = report(capsys, "usage", "--by", "model", "--model", "deepseek-reasoner")
    assert rows == [
        {
            "day": "2025-03-03",
            "model": "deepseek-reasoner",
            "requests": 3,
            "input_tokens": 5000,
            "cached_input_tokens": 3200,
            "cache_write_tokens": 0,
            "output_tokens": 2500,
            "reasoning_tokens": 1900,
        },
        {
            "day": "2025-03-04",
            "model": "deepseek-reasoner",
            "requests": 3,
            "input_tokens": 4000,
            "cached_input_tokens": 2944,
            "cache_write_tokens": 0,
            "output_tokens": 2200,
            "reasoning_tokens": 1620,
        },
    ]


def test_profile_json(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = report(capsys, "profile", "--provider", "deepseek")
    assert isinstance(profile, dict)
    assert profile["requests"] == 6
    # the mean exact, each percentile its bin's value (1000 -> 1002.425, 3000 -> 3011.477: within 0.5 %)
    p1000, p3000 = (round(value_of(bin_of(v)), 3) for v in (1000, 3000))
    assert profile["input_tokens"] == {"mean": 1500.0, "p50": p1000, "p90": p3000, "p99": p3000}
    assert profile["percentiles_relative_error"] == 0.005
    assert profile["cached_share"] == round(6144 / 9000, 6)
    assert profile["ttft_ms"] is None


def test_profile_text_shows_percentiles_whole(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A percentile is its bin's value (1002.425 for 1000): the table shows it whole, the mean exact."""
    assert main(["report", "profile", "--provider", "deepseek"]) == 0
    out = capsys.readouterr().out
    assert "means exact; percentiles within 0.5%" in out
    (row,) = [line for line in out.splitlines() if line.startswith("input tokens ")]
    assert row.split()[2:] == ["1,500.0", "1,002", "3,011", "3,011"]


def test_rejects_listing(loaded: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text('{"id": "x", "model": "gpt-4o", "usage": {"prompt_tokens": -1, "completion_tokens": 1}}\n')
    assert main(["ingest", str(log), "--allow-rejects"]) == 0
    capsys.readouterr()
    (row,) = report(capsys, "rejects")  # type: ignore[misc]
    assert row["line_no"] == 1 and row["reason"] == "usage.prompt_tokens is negative (-1)"
    assert row["path"].endswith("bad.jsonl")


def test_text_sums_what_the_logs_state_per_currency(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(SAMPLES / "litellm_spendlogs.csv")]) == 0
    capsys.readouterr()
    assert main(["report", "spend", "--by", "provider,model", "--display-currency", "USD"]) == 0
    out = capsys.readouterr().out  # LiteLLM's spend: 0.0045 + 0.008125 for gpt-4o, 0.011 for Claude
    assert "the logs themselves state: 0.0236 USD (for the 2 row(s) whose records carry a cost)" in out


def test_rejects_show_each_files_latest_read_unless_all_runs(
    loaded: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = tmp_path / "bad.jsonl"
    good = (
        '{"id": "ok1", "created": 1764900000, "model": "gpt-4o",'
        ' "usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n'
    )
    log.write_text(good + '{"id": "x", "model": "gpt-4o", "usage": {"prompt_tokens": -1}}\n')
    for _ in range(2):  # read twice: the same reject each time
        assert main(["ingest", str(log), "--allow-rejects"]) == 0
    capsys.readouterr()
    assert [r["line_no"] for r in report(capsys, "rejects")] == [2]  # type: ignore[index]
    history = report(capsys, "rejects", "--all-runs")
    assert [r["line_no"] for r in history] == [2, 2]  # type: ignore[index]
    with open_read(loaded) as con:  # the two runs, in the order they started (ids are random on ClickHouse)
        sql = "SELECT source_id FROM sources WHERE path = ? ORDER BY rowid"
        found = con.execute(sql, [str(log.resolve())])
        runs = [row[0] for row in found.fetchall()]
    assert [r["source_id"] for r in history] == runs[::-1]  # type: ignore[index]
    with open_write(loaded) as con:  # an ingest of it running now, or killed, with nothing stored yet
        con.execute(
            "INSERT INTO sources (path, size_bytes, format, started_at) VALUES (?, 0, 'openai', now())",
            [str(log.resolve())],
        )
    assert [r["line_no"] for r in report(capsys, "rejects")] == [2]  # type: ignore[index]
    log.write_text(good)  # fixed, and read again: nothing is wrong with it now
    assert main(["ingest", str(log)]) == 0
    capsys.readouterr()
    assert report(capsys, "rejects") == []
    assert len(report(capsys, "rejects", "--all-runs")) == 2  # type: ignore[arg-type]
    assert main(["report", "rejects"]) == 0
    assert capsys.readouterr().out.strip() == "no rejected records"


def test_rejects_of_every_receiver_run_show(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A restarted OTLP receiver's runs share one origin, but each brings records of its own (unlike a file,
    read whole each time): the rejects of every run are shown, newest first."""
    with open_write(loaded) as con:
        for run, reason in ((1, "output_tokens must not be negative"), (2, "unknown model name")):
            (source_id,) = con.execute(
                "INSERT INTO sources (path, size_bytes, format, started_at, finished_at)"
                " VALUES ('otlp://127.0.0.1:4318', 0, 'otlp', now(), now()) RETURNING source_id"
            ).fetchone()
            con.execute("INSERT INTO rejects VALUES (?, ?, ?, 'span')", [source_id, run, reason])
    assert [r["reason"] for r in report(capsys, "rejects")] == [  # type: ignore[index]
        "unknown model name",
        "output_tokens must not be negative",
    ]


def test_no_database_yet_names_the_command(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """No DuckDB file yet: an error naming the command; an empty ClickHouse store (created on first use) has
    no usage to report, and says the same command."""
    assert main(["report", "usage"]) == (1 if store.clickhouse is None else 0)
    out, err = capsys.readouterr()
    assert "quotascope ingest" in out + err and "Traceback" not in err


def test_bad_grouping_is_an_input_error(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "spend", "--by", "week"]) == 2
    assert "cannot group by week" in capsys.readouterr().err
