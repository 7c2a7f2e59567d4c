"""Every rollup equals its definition re-run over the raw rows, after seeded random sequences of ingests,
re-ingests, overlapping files, discarded runs and ingests killed with SIGKILL in the middle of a batch.

A rollup update dropped, done twice, or done in another transaction than its rows (so that a kill between
the two leaves one without the other) makes `rederived_difference` non-zero here."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from storage import rollups
from storage.usage import discard_source
from tests.collectors.ingest_support import identity_holds, ingest, query

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 3, 3, 15, 50)  # DeepSeek's price change and off-peak start (16:30) in the span
FIELDS = (
    "request_id",
    "ts",
    "provider",
    "model",
    "endpoint",
    "team",
    "project",
    "key_id",
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "ttft_ms",
    "latency_ms",
    "billed_cost",
    "billed_currency",
    "service_tier",
    "batch",
)
MODELS = (("deepseek", "deepseek-reasoner"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"))


def _row(rng: random.Random, ids: int, team: str | None = None) -> dict[str, object]:
    provider, model = rng.choice(MODELS)
    requests = rng.choice([1, 1, 1, 1, 5])
    # per-request inputs on both sides of the long-context thresholds (200,000 and the seed bands)
    each = rng.choice([rng.randint(1, 4000), rng.randint(127_990, 128_010), rng.randint(199_990, 200_010)])
    inputs = each * requests
    cached = rng.randint(0, inputs // 2)
    write = rng.randint(0, inputs - cached) if provider == "anthropic" else 0
    output = rng.randint(1, 3000)
    ttft = round(rng.uniform(100, 900), 3)
    billed = rng.random() < 0.3
    return {
        "request_id": f"r-{rng.randrange(ids)}",
        "ts": (START + timedelta(seconds=rng.randrange(0, 3 * 86400))).isoformat() + "Z",
        "provider": provider,
        "model": model,
        "endpoint": rng.choice(["/v1/chat/completions", "/v1/responses", ""]),
        "team": rng.choice(["search", "support", ""]) if team is None else team,
        "project": rng.choice(["p1", "p2", ""]),
        "key_id": rng.choice(["k1", "k2", ""]),
        "requests": requests,
        "input_tokens": inputs,
        "cached_input_tokens": cached,
        "cache_write_tokens": write,
        "cache_write_1h_tokens": write // 2,
        "output_tokens": output,
        "reasoning_tokens": rng.randint(0, output),
        "ttft_ms": ttft if requests == 1 else "",
        "latency_ms": round(ttft + rng.uniform(10, 9000), 3) if requests == 1 else "",
        "billed_cost": f"{rng.uniform(0, 2):.6f}" if billed else "",
        "billed_currency": rng.choice(["USD", "CNY"]) if billed else "",
        "service_tier": rng.choice(["", "", "default", "flex", "priority"]),
        "batch": rng.choice(["", "", "true", "false"]),
    }


def write_log(path: Path, rng: random.Random, rows: int, ids: int, team: str | None = None) -> Path:
    """A CSV log of `rows` random requests (of one `team`, given one; "" for none)."""
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, FIELDS)
        out.writeheader()
        for _ in range(rows):
            out.writerow(_row(rng, ids, team))
    return path


def write_responses(path: Path, rng: random.Random, rows: int) -> Path:
    """OpenAI chat completion responses (JSON lines: the block reader stores them in many small batches)."""
    with path.open("w") as out:  # one batch per file (the reader's pieces are larger than the file)
        for i in range(rows):
            prompt, completion = (
                rng.choice([rng.randint(1, 5000), rng.randint(199_990, 200_010)]),
                rng.randint(1, 900),
            )
            record = {
                "id": f"chatcmpl-{path.stem}-{i}",
                "object": "chat.completion",
                "created": int(START.replace(tzinfo=UTC).timestamp()) + rng.randrange(0, 3 * 86400),
                "model": rng.choice(["deepseek-chat", "gpt-4o-2024-08-06"]),
                "service_tier": rng.choice(["default", "flex"]),
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "prompt_tokens_details": {"cached_tokens": rng.randint(0, prompt // 64) * 64 // 2},
                },
            }
            out.write(json.dumps(record) + "\n")
    return path


def assert_rederived(db: Path) -> None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        differing = {r.name: rollups.rederived_difference(con, r) for r in rollups.ROLLUPS}
        stored = con.execute("SELECT count(*) FROM usage").fetchall()[0][0]
    finally:
        con.close()
    assert differing == dict.fromkeys(differing, 0), f"rollups differ from {stored} raw rows: {differing}"


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import storage.rollups
    from collectors.ingest import IngestOptions, ingest_paths

    db, hold_at, where, marker, *logs = sys.argv[1:]
    real_append = storage.rollups.append
    calls = 0

    def observed(con, rows, values=None):
        # batch `hold_at` of the ingest: say so, then wait to be killed before or after its rollup update
        # (its usage rows inserted, nothing committed); "running": go on while the parent kills us
        global calls
        calls += 1
        if calls == int(hold_at) and where == "before":
            Path(marker).write_text("holding")
            time.sleep(600)
        real_append(con, rows, values)
        if calls == int(hold_at):
            Path(marker).write_text("holding")
            if where == "after":
                time.sleep(600)

    storage.rollups.append = observed
    ingest_paths(Path(db), [Path(log) for log in logs], salt="test-salt", options=IngestOptions())
    """
)


def kill_mid_ingest(db: Path, logs: list[Path], hold_at: int, where: str) -> None:
    """Ingest `logs` in a child process (a batch each) and SIGKILL it in its batch `hold_at`: before or after
    the batch's rollup update, or (`running`) wherever it has got to when the parent sees that batch."""
    marker = db.with_name(f"holding-{hold_at}-{where}")
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(hold_at), where, str(marker), *map(str, logs)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not marker.exists():
            time.sleep(0.005)
        assert marker.exists(), "the ingest never reached the batch to kill it in"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_their_definition_over_the_raw_rows_after_random_ingests_and_kills(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    db = tmp_path / "q.duckdb"
    logs: list[Path] = []
    actions = [
        "new",
        "again",
        "overlap",
        "one-team",
        "kill-before",
        "kill-after",
        "kill-running",
        "discard",
        "new",
    ]
    rng.shuffle(actions)
    for step, action in enumerate(["new", *actions]):
        # each way `append` has of adding a batch: every rollup from the rows (small batches), or the
        # coarser ones summed from the finer ones' rows of the batch (large ones), here at any size
        monkeypatch.setattr(rollups, "SUMMED_FROM_ROWS", rng.choice([1, 50, 20_000]))
        if action in ("new", "overlap", "one-team"):
            # "overlap": ids drawn from the pool earlier files used too, so many rows are duplicates;
            # "one-team": every row of one team (or of none), so a batch's rows without team are its rollup
            # rows of every team
            ids = 400 if action == "overlap" else 1_000_000
            team = rng.choice(["search", ""]) if action == "one-team" else None
            logs.append(write_log(tmp_path / f"log-{step}.csv", rng, rng.randint(50, 400), ids, team))
            for result in ingest(db, logs[-1], fmt="csv", batch_rows=rng.choice([7, 64, 1000])):
                assert identity_holds(result)
        elif action == "again":
            ingest(db, rng.choice(logs), fmt="csv")
        elif action.startswith("kill"):
            logs += [write_responses(tmp_path / f"big-{step}-{n}.jsonl", rng, 500) for n in range(8)]
            kill_mid_ingest(db, logs[-8:], rng.randint(2, 6), action.removeprefix("kill-"))
            assert_rederived(db)  # the batch the kill interrupted left no trace in any rollup
            ingest(db, *logs[-8:])  # a re-run completes it
        else:
            (source_id,) = rng.choice(query(db, "SELECT source_id FROM sources"))
            discard_source(db, int(source_id))
        assert_rederived(db)
    assert query(db, "SELECT count(*) > 0 FROM usage") == [(True,)]


def test_a_rollup_missing_a_batch_is_caught(tmp_path: Path) -> None:
    """The check itself: a batch's rows removed from one rollup only (as a dropped update would leave it)
    make the re-derivation differ."""
    db = tmp_path / "q.duckdb"
    ingest(db, write_log(tmp_path / "a.csv", random.Random(9), 200, 1_000_000), fmt="csv")
    assert_rederived(db)
    con = duckdb.connect(str(db))
    try:
        con.execute("DELETE FROM rollup_spend WHERE bucket = (SELECT min(bucket) FROM rollup_spend)")
    finally:
        con.close()
    with pytest.raises(AssertionError, match="rollup_spend"):
        assert_rederived(db)


@pytest.mark.parametrize("summed_from", [1, 20_000])
@pytest.mark.parametrize("team", [None, "search", ""])
def test_one_batch_adds_one_row_per_key_to_every_rollup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, summed_from: int, team: str | None
) -> None:
    """However a batch's rollup rows are made (from its rows, or summed from a finer rollup's, or a finer
    rollup's without the keys every row shares), each key gets one row: a rollup stays as small as its
    definition makes it. Teams mixed, one team, no team."""
    monkeypatch.setattr(rollups, "SUMMED_FROM_ROWS", summed_from)
    db = tmp_path / "q.duckdb"
    log = write_log(tmp_path / "a.csv", random.Random(5), 600, 1_000_000, team)
    (result,) = ingest(db, log, fmt="csv", batch_rows=10_000)
    assert result.counts.stored == 600
    assert_rederived(db)
    for rollup in rollups.ROLLUPS:
        keys = ", ".join(rollup.key_names)
        ((rows, distinct),) = query(db, f"SELECT count(*), count(DISTINCT ({keys})) FROM {rollup.name}")
        assert (rollup.name, rows) == (rollup.name, distinct)


def test_rollups_whose_columns_an_older_quotascope_ordered_otherwise_take_and_give_the_same(
    tmp_path: Path,
) -> None:
    """A file's rollups were created (CREATE TABLE AS) with their columns in the order of the definitions
    then; every insert and read names its columns, so a file with another order is kept exactly too."""
    db = tmp_path / "q.duckdb"
    ingest(db, write_log(tmp_path / "a.csv", random.Random(3), 200, 1_000_000), fmt="csv")
    con = duckdb.connect(str(db))
    try:
        for rollup in rollups.ROLLUPS:
            columns = ", ".join(reversed([*rollup.key_names, *(m.name for m in rollup.measures)]))
            con.execute(f"CREATE TABLE reordered AS SELECT {columns} FROM {rollup.name}")
            con.execute(f"DROP TABLE {rollup.name}")
            con.execute(f"ALTER TABLE reordered RENAME TO {rollup.name}")
    finally:
        con.close()
    for seed, rows in ((4, 300), (5, 30_000)):  # a small batch and a large one
        ingest(db, write_log(tmp_path / f"{seed}.csv", random.Random(seed), rows, 1_000_000), fmt="csv")
        assert_rederived(db)
