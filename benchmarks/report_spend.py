"""How fast `quotascope report spend --by provider,model,day` answers on a 10,000,000-row database.

Builds the database under /tmp (rows generated inside DuckDB: a month of five models' traffic, with
DeepSeek's 16:30-00:30 UTC off-peak window in force), then times, in the same run:

- quotascope: `storage.reports.spend_report` (sums in DuckDB per price group, prices in Python with the
  catalog version in force), median of several runs after one warm-up;
- the reference: one hand-written DuckDB query computing the same costs with the prices inlined;
- the whole CLI once, as a user runs it (process start and imports included).

The two costs must agree to the cent, or the benchmark fails. Target: quotascope under 1 s.

    .venv/bin/python benchmarks/report_spend.py [--rows 10000000] [--keep]
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
from decimal import Decimal
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.catalog import Catalog  # noqa: E402
from models.money import Money  # noqa: E402
from storage.catalog import read_catalog_file  # noqa: E402
from storage.db import open_write  # noqa: E402
from storage.reports import UsageFilter, spend_report  # noqa: E402

# (provider, model, input, cached input, output) per 1M tokens, currency; deepseek-reasoner has off-peak
PRICES = {
    ("deepseek", "deepseek-reasoner"): ("CNY", "4", "1", "16"),
    ("deepseek", "deepseek-chat"): ("CNY", "2", "0.5", "8"),
    ("openai", "gpt-4o"): ("USD", "2.5", "1.25", "10"),
    ("openai", "o1"): ("USD", "15", "7.5", "60"),
    ("anthropic", "claude-sonnet-4-5"): ("USD", "3", "0.3", "15"),
}
OFF_PEAK = Decimal("0.25")  # deepseek-reasoner only, 16:30-00:30 UTC


def catalog_toml() -> str:
    parts = []
    for (provider, model), (currency, p_in, p_cached, p_out) in PRICES.items():
        parts.append(
            f"""
[[offer]]
id = "bench/{model}"
provider = "{provider}"
model = "{model}"
currency = "{currency}"
[[offer.versions]]
effective_from = 2025-01-01
as_of = 2025-01-01
source = "benchmark"
[offer.versions.prices]
input = {p_in}
cached_input = {p_cached}
output = {p_out}
"""
        )
        if model == "deepseek-reasoner":
            parts.append(
                f"""[[offer.versions.windows]]
name = "off-peak"
hours_utc = ["16:30-00:30"]
multiplier = {OFF_PEAK}
"""
            )
    return "\n".join(parts)


def build(db: Path, rows: int) -> None:
    models = list(PRICES)
    case_provider = " ".join(f"WHEN {i} THEN '{p}'" for i, (p, _) in enumerate(models))
    case_model = " ".join(f"WHEN {i} THEN '{m}'" for i, (_, m) in enumerate(models))
    step_us = 30 * 86400 * 1_000_000 // rows  # a month, evenly
    with open_write(db) as con:  # the real schema, migrations applied
        con.execute(
            f"""
            INSERT INTO usage (source_id, record_key, line_no, ts, provider, model, team,
                n_requests, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
                reasoning_tokens)
            SELECT 1, 'bench-' || i, i,
                TIMESTAMP '2025-10-01' + to_microseconds((i * {step_us} + hash(i) % 1000000)::BIGINT),
                CASE i % {len(models)} {case_provider} END,
                CASE i % {len(models)} {case_model} END,
                'team-' || (i % 7),
                1,
                200 + (hash(i) % 9000)::BIGINT,
                ((hash(i) % 9000)::BIGINT // 2 // 64) * 64,
                0,
                50 + (hash(i * 3) % 3000)::BIGINT,
                (hash(i * 3) % 3000)::BIGINT // 3
            FROM range({rows}) t(i)
            """
        )


def reference_sql() -> str:
    prices = ", ".join(
        f"('{p}', '{m}', '{cur}', {i}::DECIMAL(18,6), {c}::DECIMAL(18,6), {o}::DECIMAL(18,6))"
        for (p, m), (cur, i, c, o) in PRICES.items()
    )
    return f"""
        WITH price(provider, model, currency, p_in, p_cached, p_out) AS (VALUES {prices}),
        priced AS (
            SELECT u.provider, u.model, CAST(u.ts AS DATE) AS day, p.currency,
                ((u.input_tokens - u.cached_input_tokens - u.cache_write_tokens) * p.p_in
                  + u.cached_input_tokens * p.p_cached
                  + u.cache_write_tokens * p.p_in
                  + u.output_tokens * p.p_out)
                * CASE WHEN u.model = 'deepseek-reasoner'
                        AND (hour(u.ts) * 60 + minute(u.ts) >= 990 OR hour(u.ts) * 60 + minute(u.ts) < 30)
                       THEN {OFF_PEAK} ELSE 1 END AS micro_cost,
                u.n_requests
            FROM usage u JOIN price p USING (provider, model)
        )
        SELECT provider, model, day, currency, sum(n_requests) AS requests, sum(micro_cost) / 1e6 AS cost
        FROM priced GROUP BY ALL ORDER BY ALL
    """


def timed(fn: object, runs: int) -> tuple[float, object]:
    assert callable(fn)
    result = fn()  # warm-up (and the result to compare)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database under /tmp")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="quotascope-bench-spend-", dir="/tmp"))
    db = work / "spend.duckdb"
    catalog_file = work / "catalog.toml"
    catalog_file.write_text(catalog_toml())
    try:
        start = time.perf_counter()
        build(db, args.rows)
        print(f"built {args.rows:,} usage rows in {time.perf_counter() - start:.1f} s ({db})")
        catalog: Catalog = read_catalog_file(catalog_file)
        by = ("provider", "model", "day")

        ours_s, rows = timed(lambda: spend_report(db, catalog, UsageFilter(), by), args.runs)

        def reference() -> list[tuple[object, ...]]:
            con = duckdb.connect(str(db), read_only=True)
            try:
                return con.execute(reference_sql()).fetchall()
            finally:
                con.close()

        ref_s, ref_rows = timed(reference, args.runs)

        # same money, to the cent, per provider/model/day
        ours = {
            (r.keys["provider"], r.keys["model"], r.keys["day"]): r.cost
            for r in rows  # type: ignore[attr-defined]
        }
        for provider, model, day, currency, _requests, cost in ref_rows:  # type: ignore[attr-defined]
            mine: Money | None = ours.get((provider, model, day))
            assert mine is not None and mine.currency == currency, (provider, model, day, mine)
            if abs(mine.amount - Decimal(str(cost))) > Decimal("0.01"):
                raise SystemExit(f"costs differ for {provider}/{model}/{day}: {mine.amount} vs {cost}")

        env = {**os.environ, "QUOTASCOPE_DB": str(db)}
        command = [sys.executable, "-m", "quotascope.cli", "report", "spend", "--by", "provider,model,day"]
        start = time.perf_counter()
        done = subprocess.run(
            [*command, "--json", "--catalog", str(catalog_file)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        cli_s = time.perf_counter() - start
        if done.returncode:
            print(f"the CLI run failed: {done.stderr.strip().splitlines()[-1]}")

        print(f"rows: {args.rows:,}; report rows: {len(rows)}; cores: {os.cpu_count()}")  # type: ignore[arg-type]
        print(f"quotascope spend_report (median of {args.runs}): {ours_s:.3f} s")
        print(f"hand-written DuckDB query (median of {args.runs}): {ref_s:.3f} s")
        print(f"ratio quotascope / hand-written: {ours_s / ref_s:.2f}x")
        print(f"whole CLI once (process start, imports, catalog, query, pricing, JSON): {cli_s:.3f} s")
        print(f"target under 1 s: {'met' if ours_s < 1 else 'MISSED'}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
