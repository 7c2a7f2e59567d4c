"""Peers' result files stored as probe runs: our own sample files written from each tool's schema, and a real
AIPerf run against the emulator (AIPerf lives in `.venv-peers`, made by `make peers`, which `make test` runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from collectors.probe.endpoints import adhoc_name
from collectors.probe.peers import Identity, aiperf_offline_env, detect_tool, import_peer_file, read_peer_file
from models.errors import InputError
from models.probe import TTFT_DEFINITIONS
from quotascope.cli import main
from storage.db import open_read
from storage.probes import probe_percentiles, probe_results, probe_runs
from storage.reports import read_rejects

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "peers"
AIPERF_FILE = DATA / "aiperf_profile_export.jsonl"
GUIDELLM_FILE = DATA / "guidellm_benchmarks.json"
VLLM_FILE = DATA / "vllm_save_detailed.json"
AIPERF = ROOT / ".venv-peers" / "bin" / "aiperf"
MODEL = EmulatorConfig().model


def test_each_tool_is_recognised_from_its_file() -> None:
    assert detect_tool(AIPERF_FILE) == "aiperf"
    assert detect_tool(GUIDELLM_FILE) == "guidellm"
    assert detect_tool(VLLM_FILE) == "vllm"
    with pytest.raises(InputError, match="not a result file"):
        detect_tool(DATA / "profile_export_aiperf.json")  # AIPerf's summary has no per-request records


def test_aiperf_records_become_one_run_with_the_warm_up_kept_apart(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    peer, counts = import_peer_file(db, AIPERF_FILE)
    assert (counts.read, counts.stored, counts.duplicates, counts.rejected) == (6, 5, 0, 1)
    (run,) = peer.runs
    # the id, model, URL and concurrency from the profile_export_aiperf.json written beside the records
    assert (
        run.tool == "aiperf"
        and run.model == "Qwen/Qwen3-8B"
        and run.base_url == "http://gpu-box.internal:8000"
    )
    assert run.endpoint == "Qwen/Qwen3-8B@gpu-box.internal:8000" and run.plan.concurrency == (2,)
    kinds = [r.kind for r in run.results]
    assert kinds == ["warmup", "load", "load", "load", "load"]
    refused = [r for r in run.results if not r.ok]
    assert [(r.error_class, r.http_status) for r in refused] == [("quota_429", 429)]
    first = run.results[1]
    assert first.ttft_ms == 301.2 and first.e2e_ms == 1052.0 and first.send_delay_ms == pytest.approx(0.15)
    # tokens/s under quotascope's definition from AIPerf's chunk gaps: 16 tokens over 750 ms
    assert first.output_tokens_per_s == pytest.approx(16 / 0.75) and first.itl_ms == pytest.approx(50.0)
    assert first.output_tokens == 16 and not first.tokens_estimated
    stored = probe_runs(db).to_dicts()[0]
    assert stored["tool"] == "aiperf" and stored["ttft_definition"] == TTFT_DEFINITIONS["aiperf"]
    assert stored["requests"] == 4 and stored["ok"] == 3  # the warm-up is in no figure
    (reject,) = read_rejects(db).to_dicts()
    assert reject["line_no"] == 6 and reject["reason"] == "not valid JSON"
    assert "0000-5" not in reject["excerpt"]  # ids are redacted from excerpts


def test_guidellm_benchmarks_each_become_a_run(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    peer, counts = import_peer_file(db, GUIDELLM_FILE)
    assert (counts.read, counts.stored, counts.rejected) == (16, 15, 1)
    sync, concurrent = peer.runs
    assert sync.plan.profile == "sequential" and concurrent.plan.concurrency == (4,)
    assert {r.phase for r in concurrent.results} == {"c=4"}
    assert [r.ttft_ms for r in sync.results] == pytest.approx([301, 299, 305, 302, 300])
    ok = sync.results[0]
    # 64 tokens from the first to the last token iteration, (64 − 1) / 20 s apart
    assert ok.output_tokens == 64 and ok.output_tokens_per_s == pytest.approx(64 * 20 / 63)
    assert ok.input_tokens == 256 and ok.send_delay_ms == pytest.approx(0.5, abs=1e-3)
    failed = {r.error_class for r in concurrent.results if not r.ok}
    assert failed == {"quota_429", "timeout"}  # errored with a 429, and cut off at the end (incomplete)
    (reject,) = read_rejects(db).to_dicts()
    assert reject["reason"] == "no info.timings: not a GuideLLM request record"


def test_vllm_times_the_role_chunk_and_its_texts_are_never_stored(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    peer, counts = import_peer_file(db, VLLM_FILE, identity=Identity(endpoint="gpu-box qwen3"))
    assert (counts.read, counts.stored, counts.rejected) == (7, 6, 1)
    (run,) = peer.runs
    assert run.endpoint == "gpu-box qwen3" and run.plan.concurrency == (2,)
    ok = [r for r in run.results if r.ok]
    # vLLM's TTFT is its first chunk with choices: the role chunk a vLLM server sends at once, ~2 ms
    assert max(r.ttft_ms or 0 for r in ok) < 3
    (failed,) = [r for r in run.results if not r.ok]
    assert failed.error_class == "client_4xx" and failed.http_status == 400
    assert (run.results[1].intended_at - run.results[0].intended_at).total_seconds() == pytest.approx(0.01)
    (reject,) = read_rejects(db).to_dicts()
    assert reject["reason"].startswith("the per-request lists differ in length")
    assert b"the sea was calm" not in db.read_bytes()  # generated text is read past, never kept


def test_importing_again_stores_each_record_once_and_a_grown_file_adds_only_its_new_records(
    tmp_path: Path,
) -> None:
    db = tmp_path / "q.duckdb"
    records = tmp_path / "profile_export.jsonl"
    lines = AIPERF_FILE.read_text().splitlines(keepends=True)
    records.write_text("".join(lines[:3]))
    first = import_peer_file(db, records)[1]
    again = import_peer_file(db, records)[1]
    records.write_text("".join(lines[:5]))  # AIPerf appends as requests end
    grown = import_peer_file(db, records)[1]
    assert (first.stored, first.duplicates) == (3, 0)
    assert (again.stored, again.duplicates) == (0, 3)
    assert (grown.stored, grown.duplicates) == (2, 3)
    assert len(probe_runs(db)) == 1 and len(probe_results(db)) == 5
    assert probe_runs(db)["requests"].to_list() == [4]  # the run's row follows the file as read last
    with open_read(db) as con:
        counts = con.execute(
            "SELECT rows_read, rows_stored, rows_duplicate, rows_rejected FROM sources"
        ).fetchall()
    assert all(read == stored + dup + rej for read, stored, dup, rej in counts)


def test_outside_text_is_cleaned_before_it_is_stored(tmp_path: Path) -> None:
    document = json.loads(VLLM_FILE.read_text())
    document["model_id"] = "evil\x1b[31m\u202emodel\r\nname"
    document["errors"][3] = "HTTP 400\x1b]8;;http://x\x07 bad\x00 request sk-proj-abcdef123456 " + "x" * 500
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(document))
    run = read_peer_file(path).runs[0]
    assert run.model == "evil [31m model name" and run.endpoint == "evil [31m model name (vllm)"
    error = next(r.error for r in run.results if r.error)
    assert "\x1b" not in error and "\x00" not in error and "\x07" not in error and len(error) <= 200
    assert "sk-proj" not in error and "***" in error  # a key quoted in an error is not kept


def test_a_file_of_no_known_shape_is_one_clear_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": 1}')
    assert main(["probe", "import", str(odd)]) == 2
    assert "not a result file quotascope can import" in capsys.readouterr().err
    saved = tmp_path / "vllm.json"
    saved.write_text(json.dumps({"date": "20261206-101500", "mean_ttft_ms": 2.0, "ttfts": None}))
    assert main(["probe", "import", str(saved), "--tool", "vllm"]) == 2
    assert "--save-detailed" in capsys.readouterr().err


def test_the_cli_prints_the_accounting_and_the_definition(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "import", str(GUIDELLM_FILE)]) == 0
    out = capsys.readouterr().out
    assert "16 records read = 15 stored + 0 duplicates + 1 rejected" in out
    assert TTFT_DEFINITIONS["guidellm"] in out
    assert main(["probe", "import", str(GUIDELLM_FILE), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["read"], document["stored"], document["duplicates"]) == (16, 0, 15)


def _aiperf(base_url: str, artifacts: Path, env: dict[str, str], concurrency: int, requests: int) -> Path:
    command = [
        str(AIPERF),
        "profile",
        "--model",
        MODEL,
        "--url",
        base_url.removesuffix("/v1"),
        "--endpoint-type",
        "chat",
        "--streaming",
        "--concurrency",
        str(concurrency),
        "--request-count",
        str(requests),
        "--tokenizer",
        "cl100k_base",
        "--use-server-token-count",
        "--artifact-dir",
        str(artifacts),
    ]
    done = subprocess.run(command, env=env, cwd=artifacts.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return artifacts / "profile_export.jsonl"


def _first_choices_ms(base_url: str) -> tuple[float, float]:
    """(first SSE message with choices, first non-empty content) in ms from the send: vLLM's and our TTFT."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.Client() as client:
        start = time.perf_counter()
        first_choices = first_token = None
        with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                now = (time.perf_counter() - start) * 1000
                chunk = json.loads(line[6:])
                if chunk["choices"] and first_choices is None:
                    first_choices = now
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and first_token is None:
                    first_token = now
    assert first_choices is not None and first_token is not None
    return first_choices, first_token


@pytest.mark.slow
def test_a_real_aiperf_run_against_the_emulator_is_imported_beside_a_probe(tmp_path: Path) -> None:
    """AIPerf ignores the emulator's role-only first chunk, as quotascope does: both read the configured
    TTFT. vLLM's rule (the first message with choices) reads that chunk, ~0 ms, unless it is turned off."""
    if not AIPERF.is_file():
        if os.environ.get("CI"):
            pytest.fail("AIPerf is required under CI: `make test` runs `make peers`")
        pytest.skip("AIPerf is not installed: `make peers` puts it in .venv-peers")
    db = tmp_path / "q.duckdb"
    env = aiperf_offline_env(AIPERF, tmp_path / "tiktoken")
    config = EmulatorConfig(ttft_ms=200, tokens_per_s=50, output_tokens=8)
    with EmulatorServer(config) as server:
        records = _aiperf(server.base_url, tmp_path / "aiperf", env, concurrency=2, requests=6)
        assert (
            main(
                ["probe", "--base-url", server.base_url, "--model", MODEL, "--requests", "4", "--db", str(db)]
            )
            == 0
        )
        vllm_rule, ours = _first_choices_ms(server.base_url)
    with EmulatorServer(
        EmulatorConfig(ttft_ms=200, tokens_per_s=50, output_tokens=8, role_chunk=False)
    ) as late:
        vllm_rule_late, ours_late = _first_choices_ms(late.base_url)
    peer, counts = import_peer_file(db, records)
    assert counts.read == counts.stored == 6 and counts.rejected == 0
    (run,) = peer.runs
    assert run.endpoint == adhoc_name(server.base_url, MODEL) and run.plan.concurrency == (2,)
    table = {row["tool"]: row for row in probe_percentiles(db).iter_rows(named=True)}
    assert set(table) == {"aiperf", "quotascope"}  # one endpoint, measured by two tools, side by side
    assert {row["endpoint"] for row in table.values()} == {run.endpoint}
    for tool in ("aiperf", "quotascope"):
        # the role chunk is no token to either: never before the TTFT set (loose above: a loaded machine)
        assert 200 <= table[tool]["ttft_p50_ms"] < 400, tool
        assert table[tool]["output_tokens_per_s_p50"] == pytest.approx(8 * 50 / 7, rel=0.25), tool
    assert ours >= 200 and vllm_rule < ours - 150  # on the same stream, vLLM's rule times the role chunk
    assert vllm_rule_late >= 200 and abs(vllm_rule_late - ours_late) < 5  # without one, the rules agree
