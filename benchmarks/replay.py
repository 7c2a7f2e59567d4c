"""How fast `quotascope simulate` replays a month of stored traffic against other offers.

Stores N requests (default 10,000,000: a month at ~3.9 requests/s with a diurnal and weekly shape, DeepSeek-R1
token profiles, 64-token cache hits, recorded latencies) in a DuckDB file, reads them once as replayable
traffic, and replays them against each target, timing each replay. The reference, measured in the same run,
is a plain DuckDB scan and aggregation of the same rows (per-second requests and token sums: the least any
replay must do). Target: each replay under 5 s.

    .venv/bin/python benchmarks/replay.py [--requests 10000000] [--policy reject|queue] [--db PATH]

Targets: Volcano Engine Ark (5M TPM / 30k RPM per-minute windows), a typical 10k-TPM cloud (throttles
most of it), DeepSeek v4-pro at today's version (500 concurrent requests per account, from each request's
duration) and Claude Sonnet 4.5 as a continuous token bucket (ITPM/OTPM assumed here, the catalog has none).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

from models.replay import ReplayOptions, replay
from quotascope import settings
from storage.catalog import load_catalog
from storage.db import open_read, open_write
from storage.replay import UsageFilter, read_traffic

START = datetime(2026, 10, 1)
DAYS = 30

# One month of traffic in SQL: request i lands at a time drawn so that each UTC hour gets its diurnal share
# (China business hours peak) and weekends 45 % of a weekday.
FILL = """
INSERT INTO usage BY NAME
SELECT
    1 AS source_id,
    'bench-' || i AS record_key,{key_hash}
    TIMESTAMP '{start}' + to_microseconds(
        (day * 86400 + hour * 3600 + (hash(i, 3) % 3600000000) / 1e6)::BIGINT * 1000000
        + (hash(i, 4) % 1000000)::BIGINT
    ) AS ts,
    'deepseek' AS provider,
    'deepseek-reasoner' AS model,
    ['search', 'support', 'research', 'batch-eval'][1 + (hash(i, 5) % 4)::INTEGER] AS team,
    1 AS n_requests,
    input_tokens,
    (floor(input_tokens * (hash(i, 6) % 100) / 100 / 64) * 64)::BIGINT AS cached_input_tokens,
    output_tokens,
    (output_tokens * 3 // 4)::BIGINT AS reasoning_tokens,
    (300 + hash(i, 7) % 400)::DOUBLE AS ttft_ms,
    (300 + hash(i, 7) % 400 + output_tokens * 1000.0 / (30 + hash(i, 8) % 40))::DOUBLE AS latency_ms
FROM (
    SELECT
        i,
        (500 + hash(i, 1) % 7000)::BIGINT AS input_tokens,
        (100 + hash(i, 2) % 2400)::BIGINT AS output_tokens,
        -- a weekday-weighted day, then an hour by the diurnal weights
        list_sum(list_transform(day_cdf, lambda x: (x < (hash(i, 9) % 1000000) / 1e6)::INTEGER)) AS day,
        list_sum(list_transform(hour_cdf, lambda x: (x < (hash(i, 10) % 1000000) / 1e6)::INTEGER)) AS hour
    FROM range({n}) t(i), (SELECT {day_cdf} AS day_cdf, {hour_cdf} AS hour_cdf)
)
"""
DIURNAL = (2, 2, 6, 9, 10, 10, 9, 9, 8, 7, 5, 4, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1)
WEEKEND = 0.45


def cdf(weights: list[float]) -> str:
    total, running, out = sum(weights), 0.0, []
    for w in weights:
        running += w
        out.append(running / total)
    out[-1] = 1.0
    return "[" + ", ".join(f"{x:.9f}" for x in out) + "]"


def fill(db: Path, n: int) -> float:
    day_weights = [WEEKEND if (START.weekday() + d) % 7 >= 5 else 1.0 for d in range(DAYS)]
    began = time.perf_counter()
    with open_write(db) as con:
        columns = {r[0] for r in con.execute("DESCRIBE usage").fetchall()}
        key_hash = "\n    md5_number_lower('bench-' || i) AS key_hash," if "key_hash" in columns else ""
        con.execute(
            FILL.format(
                start=START.isoformat(sep=" "),
                n=n,
                key_hash=key_hash,
                day_cdf=cdf(day_weights),
                hour_cdf=cdf([float(w) for w in DIURNAL]),
            )
        )
    return time.perf_counter() - began


def reference(db: Path) -> float:
    """A plain scan and aggregation of the same rows: per-second requests and token sums."""
    began = time.perf_counter()
    with open_read(db) as con:
        con.sql(
            "SELECT date_trunc('second', ts) AS s, sum(n_requests), sum(input_tokens), "
            "sum(cached_input_tokens), sum(output_tokens), sum(latency_ms) FROM usage GROUP BY 1"
        ).to_arrow_table()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--policy", choices=("reject", "queue"), default="reject")
    parser.add_argument(
        "--db", type=Path, help="keep the generated database here (default: a temporary folder)"
    )
    args = parser.parse_args()
    catalog = load_catalog(Path(settings.get("catalog_dir")))
    with tempfile.TemporaryDirectory(prefix="quotascope-bench-") as folder:
        db = args.db or Path(folder) / "replay.duckdb"
        stored = 0
        if db.exists():  # a database kept by an earlier run with --db: reuse it as it is
            with open_read(db) as con:
                row = con.execute("SELECT count(*) FROM usage").fetchone()
            stored = int(row[0]) if row else 0
        if stored:
            print(f"reusing {stored:,} stored requests in {db}")
        else:
            seconds = fill(db, args.requests)
            print(f"stored {args.requests:,} requests in {seconds:.1f} s ({db.stat().st_size / 1e6:,.0f} MB)")
        ref = min(reference(db) for _ in range(3))
        print(f"reference: DuckDB scan + per-second aggregation of the same rows: {ref:.2f} s")
        began = time.perf_counter()
        traffic = read_traffic(db, UsageFilter())
        read_s = time.perf_counter() - began
        print(f"read once as replayable traffic: {read_s:.2f} s ({read_s / ref:.1f}x the reference)")
        now = datetime(2026, 11, 23)
        targets = [
            ("volcengine/deepseek-r1", ReplayOptions(policy=args.policy)),
            ("cloud/deepseek-r1-10k", ReplayOptions(policy=args.policy)),
            ("deepseek/deepseek-v4-pro", ReplayOptions(policy=args.policy, version_at=now)),
            (
                "anthropic/claude-sonnet-4-5",
                ReplayOptions(policy=args.policy, version_at=now, limits={"itpm": 400_000, "otpm": 80_000}),
            ),
        ]
        print(f"\n{'target':32} {'replay':>8} {'vs ref':>7}  throttled  keys  cost")
        worst = 0.0
        for offer_id, options in targets:
            began = time.perf_counter()
            result = replay(traffic, catalog.get(offer_id), options, fx=catalog.fx)
            took = time.perf_counter() - began
            worst = max(worst, took)
            print(
                f"{offer_id:32} {took:7.2f}s {took / ref:6.1f}x  {result.throttled_share:8.2%}  "
                f"{result.keys_needed:4}  {result.cost.cost}"
            )
        verdict = "under" if worst < 5 else "OVER"
        print(f"\nslowest replay {worst:.2f} s: {verdict} the 5 s target ({args.policy} policy)")


if __name__ == "__main__":
    main()
