"""What the genai-prices base layer adds to every command: `quotascope report spend` on an empty database,
with and without the base layer, A/B in the same run (processes alternated, median of N each).

- A: the shipped catalog alone (`QUOTASCOPE_PRICE_DATA_DIR=off`), as before the base layer;
- B: the shipped catalog over the converted genai-prices base layer (~2,300 models), read from its cache
  (converted once before timing, as the first command of a fresh install does).

Target: B no more than 0.1 s slower than A.

    .venv/bin/python benchmarks/catalog_load.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.db import open_write  # noqa: E402


def timed(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "quotascope.cli", "report", "spend"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quotascope-catalog-load-") as folder:
        db = Path(folder) / "empty.duckdb"
        with open_write(db):  # an empty database at the current schema
            pass
        base = {k: v for k, v in os.environ.items() if not k.startswith("QUOTASCOPE_")}
        base["QUOTASCOPE_DB"] = str(db)
        without = {**base, "QUOTASCOPE_PRICE_DATA_DIR": "off"}
        with_layer = {**base, "QUOTASCOPE_PRICE_DATA_DIR": str(Path(folder) / "prices")}
        first = timed(with_layer)  # converts the installed package once and caches it
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.runs):
            a.append(timed(without))
            b.append(timed(with_layer))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"first run with the base layer (converts ~2,300 models and caches them): {first:.3f} s")
        print(f"A shipped catalog alone:         median {ma:.3f} s over {args.runs} runs")
        print(f"B over the genai-prices layer:   median {mb:.3f} s over {args.runs} runs")
        print(f"B - A = {mb - ma:+.3f} s (target <= +0.100 s); B / A = {mb / ma:.2f}x")


if __name__ == "__main__":
    main()
