"""Does a large database slow a new file's ingest? The same file into an empty database and into a full one.

Generates 1,000,000 OpenAI chat completion responses (about 1 GB, 23 days of traffic) under /tmp and a
database already holding 10,000,000 requests from the 300 days before them (request ids shaped like
OpenAI's, so the duplicate search compares real-length keys). Then, in the same run, each in a fresh process:

- reference: `collectors.ingest.ingest_paths` of the file into an empty database;
- grown: the same into a copy of the full database (every record is new, so every key is searched for);
- again: the same file once more into that database (every record found: all duplicates).

It prints both rates and their ratio (1.0: the stored rows cost nothing). Each record's key is searched for
only among stored rows within a week of its batch's times (`models.usage_record.SAME_REQUEST_WITHIN`), so
the ratio should stay near 1 however much is stored before; before that rule the search read every stored
key.
The files are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _usage_data import write_openai_jsonl  # noqa: E402
from ingest import warm  # noqa: E402

from storage.db import open_write  # noqa: E402

START_EPOCH = 1_770_000_000  # the new file's first record; 2 s apart after it

INGEST = """
import sys
from pathlib import Path
from collectors.ingest import ingest_paths
(result,) = ingest_paths(Path(sys.argv[1]), [Path(sys.argv[2])], salt="bench")
expected = result.counts.stored if sys.argv[3] == "new" else result.counts.duplicates
assert result.counts.read == expected, result.counts
"""


def build(db: Path, rows: int, days: int) -> None:
    """`rows` requests spread evenly over the `days` before the new file, through the real schema."""
    step_us = days * 86_400 * 1_000_000 // rows
    with open_write(db) as con:
        con.execute(
            f"""
            INSERT INTO usage (source_id, record_key, line_no, ts, provider, model, team, n_requests,
                input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens)
            SELECT 0, 'chatcmpl-' || md5(i::VARCHAR)[:29], i,
                to_timestamp({START_EPOCH})::TIMESTAMP - INTERVAL {days} DAY
                    + to_microseconds((i * {step_us})::BIGINT),
                'openai', 'gpt-4o-mini', 'team-' || (i % 7), 1,
                200 + (hash(i) % 9000)::BIGINT, 0, 0, 50 + (hash(i * 3) % 3000)::BIGINT, 0
            FROM range({rows}) t(i)
            """
        )


def run(db: Path, log: Path, expect: str = "new") -> float:
    """Wall seconds of one fresh process ingesting `log` into `db`."""
    os.sync()
    warm(log)  # from the page cache, like the other side
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", INGEST, str(db), str(log), expect], cwd=ROOT, check=True, capture_output=True
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the new file")
    parser.add_argument("--stored", type=int, default=10_000_000, help="requests already in the database")
    parser.add_argument("--days", type=int, default=300, help="the days the stored requests span")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median reported)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="quotascope-bench-growth-", dir="/tmp"))
    try:
        log, full = work / "responses.jsonl", work / "full.duckdb"
        start = time.perf_counter()
        size = write_openai_jsonl(log, args.records, start_epoch=START_EPOCH)
        build(full, args.stored, args.days)
        print(
            f"generated {args.records:,} responses ({size / 1e6:,.0f} MB) and a database of "
            f"{args.stored:,} stored requests over {args.days} days in {time.perf_counter() - start:.1f} s"
        )
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        empty_runs: list[float] = []
        grown_runs: list[float] = []
        again_runs: list[float] = []
        for _ in range(args.repeat):  # alternate, so both see the same machine
            target = work / "target.duckdb"
            for suffix in ("", ".wal"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            empty_runs.append(run(target, log))
            target.unlink()
            shutil.copyfile(full, target)
            grown_runs.append(run(target, log))
            again_runs.append(run(target, log, "duplicates"))
            target.unlink()
        empty, grown = statistics.median(empty_runs), statistics.median(grown_runs)
        again = statistics.median(again_runs)
        for name, wall, runs in (
            ("empty", empty, empty_runs),
            ("grown", grown, grown_runs),
            ("again", again, again_runs),
        ):
            print(
                f"{name:>5}: {wall:6.2f} s, {size / 1e6 / wall:7.1f} MB/s "
                f"(runs: {' '.join(f'{r:.2f}' for r in runs)} s)"
            )
        print(f"rate ratio grown / empty: {empty / grown:.2f}x (1.00: the stored rows cost nothing)")
        print(f"rate ratio again / empty: {empty / again:.2f}x (every record found among the stored)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
