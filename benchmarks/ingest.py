"""How fast `quotascope ingest` loads OpenAI-format logs, beside DuckDB's own `read_json` on the same file.

Generates 1,000,000 chat completion responses (about 1 GB: real responses carry their content) under /tmp,
then in the same run, each in a fresh process and a fresh database file:

- reference: DuckDB `CREATE TABLE ... AS SELECT * FROM read_json(file)` (DuckDB's own JSON reader, all
  columns, no checks, no dedupe, no accounting);
- quotascope: `collectors.ingest.ingest_paths` (format detection, every line parsed and checked, rejects with
  reasons, dedupe by record key, content hash, batches of one transaction each).

It prints both rates (MB/s and records/s), their ratio and each side's CPU time. Target: quotascope's rate at
least 0.8 x DuckDB's. The files are deleted afterwards.

Both sides read the log from the page cache and start with nothing waiting to be written: before every run
the files written so far are flushed to disk (else the kernel writes back the log, or the 1 GB database the
reference made, while the next side is timed) and the log is read once (this machine's kernel evicts idle
pages within a minute; a cold read adds 1.5 s to whichever side meets it). The sides alternate, and
each side's median over the runs is compared (single runs vary by 20 % here).

    .venv/bin/python benchmarks/ingest.py [--records 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _usage_data import write_openai_jsonl  # noqa: E402

REFERENCE = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE TABLE responses AS SELECT * FROM read_json('{sys.argv[2]}')")
print(con.execute("SELECT count(*) FROM responses").fetchall()[0][0])
con.close()
"""

QUOTASCOPE = """
import sys
from pathlib import Path
from collectors.ingest import ingest_paths
(result,) = ingest_paths(Path(sys.argv[1]), [Path(sys.argv[2])], salt="bench")
assert result.counts.read == result.counts.stored, result.counts
print(result.counts.stored)
"""


def warm(log: Path) -> None:
    """Read the whole file, so that the run after it finds it in the page cache."""
    with log.open("rb") as handle:
        while handle.read(16 << 20):
            pass


def run(code: str, db: Path, log: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, records) of one fresh process."""
    for suffix in ("", ".wal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.sync()  # the other side's database (DuckDB's holds the whole 1 GB) is on disk, not written back now
    warm(log)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(db), str(log)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median reported)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="quotascope-bench-ingest-", dir="/tmp"))
    try:
        log = work / "responses.jsonl"
        start = time.perf_counter()
        size = write_openai_jsonl(log, args.records)
        os.sync()  # written back now, not while the sides are timed
        print(
            f"generated {args.records:,} responses, {size / 1e6:,.0f} MB, "
            f"in {time.perf_counter() - start:.1f} s"
        )
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        results: dict[str, list[tuple[float, float, int]]] = {"duckdb": [], "quotascope": []}
        for _ in range(args.repeat):  # alternate, so both see the same page cache and machine load
            results["duckdb"].append(run(REFERENCE, work / "reference.duckdb", log))
            results["quotascope"].append(run(QUOTASCOPE, work / "quotascope.duckdb", log))
        summary = {}
        for name, runs in results.items():
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            records = runs[0][2]
            assert records == args.records, (name, records)
            summary[name] = (wall, cpu)
            print(
                f"{name:>10}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {size / 1e6 / wall:7.1f} MB/s, "
                f"{records / wall:10,.0f} records/s  (runs: {' '.join(f'{r[0]:.2f}' for r in runs)} s)"
            )
        ratio = summary["duckdb"][0] / summary["quotascope"][0]
        cpu_ratio = summary["duckdb"][1] / summary["quotascope"][1]
        print(
            f"rate ratio quotascope / DuckDB read_json: {ratio:.2f}x (target >= 0.8); "
            f"CPU ratio {cpu_ratio:.2f}x"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
