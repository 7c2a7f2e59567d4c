"""`quotascope ingest` as a user runs it: what it prints, exit codes, JSON, the salt and the catalog copy;
with usage in the DuckDB file and in chdb (the accounting and duplicates are the same on both)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from quotascope.cli import main
from storage.store import Store
from storage.usage_reader import open_usage
from tests.collectors.ingest_support import CATALOG_FILE, SAMPLES, query


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Store) -> Path:
    """The test catalog as the only catalog; the database in tmp_path (conftest sets QUOTASCOPE_DB), usage
    in it or in chdb (`store` sets QUOTASCOPE_STORE)."""
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "test.toml").write_text(CATALOG_FILE.read_text())
    monkeypatch.setenv("QUOTASCOPE_CATALOG_DIR", str(catalog_dir))
    monkeypatch.setenv("QUOTASCOPE_PRICE_DATA_DIR", "off")  # no genai-prices base layer under it
    return Path(os.environ["QUOTASCOPE_DB"])


def test_prints_the_format_and_the_accounting_per_file(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["ingest", str(SAMPLES / "deepseek.jsonl"), str(SAMPLES / "anthropic.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "deepseek.jsonl: openai — OpenAI-compatible chat completions (DeepSeek cache fields)" in out
    assert "read 6 = stored 6 + duplicates 0 + rejected 0" in out
    assert "anthropic.jsonl: anthropic — Anthropic Messages responses" in out
    assert main(["ingest", str(SAMPLES / "deepseek.jsonl")]) == 0
    assert "read 6 = stored 0 + duplicates 6 + rejected 0" in capsys.readouterr().out
    # the salt was created on first use, readable by its owner only
    salt = Path(os.environ["QUOTASCOPE_SALT_FILE"])
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600 and len(salt.read_text().strip()) == 64
    # the catalog's prices were copied for SQL users
    assert query(env, "SELECT count(*) FROM catalog_prices WHERE offer_id = 'test/o1'") == [(1,)]


def test_rejects_exit_non_zero_unless_allowed(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = tmp_path / "bad.jsonl"
    good = (SAMPLES / "openai.jsonl").read_text().splitlines()[0]
    log.write_text(good + "\n" + good[:40] + "\n")
    assert main(["ingest", str(log)]) == 1
    captured = capsys.readouterr()
    assert "read 2 = stored 1 + duplicates 0 + rejected 1" in captured.out
    assert "line 2: not valid JSON (the record is cut short)" in captured.out
    assert "1 record(s) rejected" in captured.err and "--allow-rejects" in captured.err
    assert main(["ingest", str(log), "--allow-rejects"]) == 0


def test_json_output_is_one_document(env: Path, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["ingest", "--json", str(SAMPLES / "openai_usage_export.json"), "--tag", "team=platform"]) == 0
    )
    (document,) = json.loads(capsys.readouterr().out)
    assert document["format"] == "openai-usage-export"
    assert (document["read"], document["stored"], document["duplicates"], document["rejected"]) == (
        3,
        3,
        0,
        0,
    )
    assert set(document) >= {"path", "detected", "source_id", "bytes", "seconds", "reject_reasons", "rejects"}
    with open_usage(store) as usage:
        assert usage.rows("SELECT DISTINCT team FROM usage") == [("platform",)]


def test_forced_format_and_csv_map(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = (
        "req=request_id,started=ts,vendor=provider,llm=model,dept=team,prompt_tok=input_tokens,"
        "cache_tok=cached_input_tokens,completion_tok=output_tokens,think_tok=reasoning_tokens"
    )
    assert main(["ingest", str(SAMPLES / "gateway.csv"), "--format", "csv", "--csv-map", mapping]) == 0
    assert "read 3 = stored 3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "/nonexistent/log.jsonl"], "no such file"),
        (["ingest", "{folder}"], "folder with no log files"),
    ],
)
def test_user_mistakes_are_one_sentence(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{folder}", str(tmp_path / "empty")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("quotascope: ") and message in err and "Traceback" not in err


def test_bad_tag_is_an_argument_error(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(SAMPLES / "openai.jsonl"), "--tag", "team"])
    assert exit_info.value.code == 2
    assert "a tag looks like team=search" in capsys.readouterr().err
