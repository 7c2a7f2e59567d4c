"""quotascope at scale: 100,000,000 requests in DuckDB and in chdb (ClickHouse's engine in-process), each
figure beside a hand-written query on the same engine, measured in the same run.

Per engine, on one store of `--rows` usage rows (built as `benchmarks/dashboard.py` builds its database: a
month of traffic generated inside DuckDB, its rollups, real probe runs, budgets; for chdb the usage rows are
then copied into the ClickHouse store's own usage table through `storage.clickhouse`, the small tables stay
in the DuckDB file beside it, as `--store` keeps them):

- ingest: `quotascope ingest` of `--ingest-rows` OpenAI responses (about 900 bytes each) into the full
  store, in a fresh process; reference: the engine's own JSON reader loading the same file into a scratch
  table (DuckDB `read_json`, ClickHouse `file(..., JSONEachRow)`), also a fresh process;
- `quotascope report spend --by provider,model` as a user runs it (fresh process); reference: a hand-written
  `SELECT provider, model, sum(...) GROUP BY provider, model` over the whole table, in a fresh process;
- each dashboard view's first visit (AppTest, fresh process, imports done: what a user waits for after a
  start or an ingest, `benchmarks/dashboard.py --measure`); reference: a hand-written query of what the view
  shows first, run once on a fresh connection.

It prints every figure with its ratio to the reference, the machine's load before and after, and says which
engines or steps it could not run. `--rows` smaller gives a smoke test:

    nice .venv/bin/python benchmarks/scale.py [--rows 100000000] [--engines duckdb,chdb] [--ingest-rows N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _usage_data import write_openai_jsonl  # noqa: E402

ENGINES = ("duckdb", "chdb")


def _dashboard_benchmark() -> ModuleType:
    """benchmarks/dashboard.py (its build and its per-view measuring), loaded by path: `dashboard` is the
    app's package name."""
    spec = importlib.util.spec_from_file_location("dashboard_benchmark", ROOT / "benchmarks" / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dashboard_benchmark"] = module
    spec.loader.exec_module(module)
    return module


BENCH = _dashboard_benchmark()
VIEWS: tuple[str, ...] = BENCH.VIEWS

# What each view shows first, written by hand for the engine (`{usage}` is the usage table): the reference a
# view's first visit is held against. Both engines take the same text.
REFERENCE_SQL: dict[str, str] = {
    "overview": "SELECT provider, model, count() AS n, sum(input_tokens), sum(cached_input_tokens), "
    "sum(output_tokens) FROM {usage} WHERE ts >= toStartOfMonth(now()) GROUP BY provider, model",
    "planner": "SELECT quantiles(0.5, 0.9)(input_tokens), quantiles(0.5, 0.9)(output_tokens) FROM {usage}",
    "spend": "SELECT toDate(ts) AS day, team, sum(input_tokens), sum(cached_input_tokens), "
    "sum(output_tokens) FROM {usage} GROUP BY day, team",
    "usage": "SELECT provider, model, quantiles(0.5, 0.9, 0.99)(input_tokens), "
    "quantiles(0.5, 0.9, 0.99)(output_tokens) FROM {usage} GROUP BY provider, model",
    # these two read no usage (probe tables, the catalog): one full scan of usage stands in, the reference
    # benchmarks/dashboard.py holds every view to
    "endpoints": "SELECT count(), sum(input_tokens) FROM {usage}",
    "switch": "SELECT toStartOfMinute(ts) AS minute, sum(input_tokens + output_tokens), count() FROM {usage} "
    "WHERE ts >= (SELECT max(ts) FROM {usage}) - INTERVAL 7 DAY GROUP BY minute",
    "catalog": "SELECT count(), sum(input_tokens) FROM {usage}",
}
SPEND_SQL = (
    "SELECT provider, model, count() AS requests, sum(input_tokens), sum(cached_input_tokens), "
    "sum(cache_write_tokens), sum(output_tokens), sum(reasoning_tokens) FROM {usage} GROUP BY provider, model"
)


def duckdb_sql(sql: str) -> str:
    """The hand-written queries use ClickHouse's names; DuckDB has the same functions under its own."""
    return (
        sql.replace("count()", "count(*)")
        .replace("toStartOfMonth(now())", "date_trunc('month', now()::TIMESTAMP)")
        .replace("quantiles(0.5, 0.9, 0.99)(input_tokens)", "quantile_cont(input_tokens, [0.5, 0.9, 0.99])")
        .replace("quantiles(0.5, 0.9, 0.99)(output_tokens)", "quantile_cont(output_tokens, [0.5, 0.9, 0.99])")
        .replace("quantiles(0.5, 0.9)(input_tokens)", "quantile_cont(input_tokens, [0.5, 0.9])")
        .replace("quantiles(0.5, 0.9)(output_tokens)", "quantile_cont(output_tokens, [0.5, 0.9])")
        .replace("toDate(ts)", "ts::DATE")
        .replace("toStartOfMinute(ts)", "date_trunc('minute', ts)")
    )


# ------------------------------------------------------------------------------------------ engines


def timing_script(setup: str, statement: str) -> str:
    """Python for a fresh process: `setup`, then `statement` timed once, its seconds printed."""
    timed = f"start = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)\n"
    return f"import time\n{setup}\n{timed}"


class Engine:
    """One store under test: how to build it, run a hand-written query on it, and point quotascope at it."""

    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.db = work / "quotascope.duckdb"  # one build, shared: each engine reads usage from its own store

    def env(self) -> dict[str, str]:
        return {"QUOTASCOPE_DB": str(self.db)}

    def cli_store(self) -> list[str]:
        return ["--db", str(self.db)]

    def build(self, rows: int, days: int) -> dict[str, float]:
        """The DuckDB file, once per work folder (`built.json` records it)."""
        marker = self.work / "built.json"
        if marker.exists() and json.loads(marker.read_text())["rows"] == rows:
            return {}
        steps = dict(BENCH.build(self.db, rows, days, 1))
        marker.write_text(json.dumps({"rows": rows, "steps": steps}))
        return steps

    def up_to_date(self) -> float:
        """Apply the migrations a reused store lacks (a `--work` folder built by an older quotascope), before
        anything is timed; returns the seconds. A read of such a file migrates it first, so the first timed
        command would pay for it: one rollup migration behind, `report spend` on 10M requests took 21.6 s,
        then 1.9 s."""
        start = time.perf_counter()
        run_python(
            "import sys\nfrom pathlib import Path\nfrom storage.db import open_write\n"
            "with open_write(Path(sys.argv[1])):\n    pass\n",
            str(self.db),
        )
        return time.perf_counter() - start

    def spend_source(self) -> str:
        """Where `report spend` reads usage from on this store with the catalog a user has: the rollups, or
        the raw rows (a catalog with a long-context threshold or a price-change grain they cannot answer)."""
        code = (
            "import argparse\n"
            "from quotascope.context import catalog_from, store_from\n"
            "from models.spend import pricing_grain_minutes, tier_bounds\n"
            "from storage import rollups\nfrom storage.usage_reader import open_usage\n"
            "catalog = catalog_from(argparse.Namespace())\n"
            "with open_usage(store_from(argparse.Namespace(db=None, store=None))) as usage:\n"
            "    print(rollups.covers(tier_bounds(catalog), pricing_grain_minutes(catalog), usage))\n"
        )
        answer = run_python(code, env=self.env()).strip().splitlines()[-1]
        return "the rollups" if answer == "True" else "the raw rows (the rollups cannot answer the catalog)"

    def reference_code(self, sql: str) -> str:
        """Python run in a fresh process: the query once, its seconds printed."""
        raise NotImplementedError

    def ingest_reference_code(self, log: Path) -> str:
        raise NotImplementedError


class DuckDB(Engine):
    name = "duckdb"

    def reference_code(self, sql: str) -> str:
        query = duckdb_sql(sql.format(usage="usage"))
        # DuckDB draws a progress bar on stdout for a query over 2 s (a scan of 100M rows under load): it
        # would land before the printed seconds
        setup = (
            f"import duckdb\ncon = duckdb.connect({str(self.db)!r}, read_only=True)\n"
            "con.execute('SET enable_progress_bar = false')"
        )
        return timing_script(setup, f"con.execute({query!r}).fetchall()")

    def ingest_reference_code(self, log: Path) -> str:
        scratch = self.work / "reference-ingest.duckdb"
        setup = (
            f"import duckdb\ncon = duckdb.connect({str(scratch)!r})\n"
            "con.execute('SET enable_progress_bar = false')"
        )
        load = f"CREATE OR REPLACE TABLE responses AS SELECT * FROM read_json('{log}')"
        return timing_script(setup, f"con.execute({load!r})")


class Chdb(Engine):
    name = "chdb"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.folder = work / "clickhouse"
        self.rows_db = self.db  # the DuckDB engine's file: where the generated rows are copied from
        # the small tables (probes, budgets, sources) in a file of their own, whose usage table stays empty:
        # a read that did not go to ClickHouse would find nothing, and say so, rather than time DuckDB
        self.db = work / "small-tables.duckdb"

    @property
    def url(self) -> str:
        return f"chdb://{self.folder}"

    def env(self) -> dict[str, str]:
        return {"QUOTASCOPE_DB": str(self.db), "QUOTASCOPE_STORE": self.url}

    def cli_store(self) -> list[str]:
        return ["--db", str(self.db), "--store", self.url]

    def build(self, rows: int, days: int) -> dict[str, float]:
        steps = DuckDB(self.work).build(rows, days)
        small = self.work / "small-tables.json"
        if not small.exists():
            steps |= {f"small tables: {k}": v for k, v in BENCH.build(self.db, 0, days, 1).items()}
            small.write_text("{}")
        marker = self.work / "copied.json"
        if marker.exists() and json.loads(marker.read_text())["rows"] == rows:
            return steps
        start = time.perf_counter()
        code = (
            "import sys\n"
            "from pathlib import Path\n"
            "sys.path.insert(0, sys.argv[3])\n"
            "from _scale_copy import copy_usage\n"
            "copy_usage(Path(sys.argv[1]), sys.argv[2])\n"
        )
        run_python(code, str(self.rows_db), self.url, str(ROOT / "benchmarks"))
        steps["usage copied into chdb"] = time.perf_counter() - start
        marker.write_text(json.dumps({"rows": rows}))
        return steps

    def up_to_date(self) -> float:
        start = time.perf_counter()
        super().up_to_date()  # the small tables' file; then the ClickHouse store's own migrations
        run_python(
            "import sys\nfrom pathlib import Path\nfrom storage.clickhouse import connect\n"
            "from storage.store import parse_store\n"
            "connect(parse_store(sys.argv[1], Path(sys.argv[2])).clickhouse)\n",
            self.url,
            str(self.db),
        )
        return time.perf_counter() - start

    def reference_code(self, sql: str) -> str:
        query = sql.format(usage="usage FINAL")
        setup = f"import chdb\ncon = chdb.connect({str(self.folder)!r})"
        return timing_script(setup, f"con.query({query!r}, 'CSV')")

    def ingest_reference_code(self, log: Path) -> str:
        scratch = self.work / "reference-ingest-ch"
        load = (
            "CREATE OR REPLACE TABLE responses ENGINE = MergeTree ORDER BY tuple() AS "
            f"SELECT * FROM file('{log}', JSONEachRow)"
        )
        return timing_script(
            f"import chdb\ncon = chdb.connect({str(scratch)!r})", f"con.query({load!r}, 'CSV')"
        )


# ------------------------------------------------------------------------------------------ measuring


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("QUOTASCOPE_")} | (env or {})
    full["PYTHONWARNINGS"] = "ignore"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=full, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip()[-2000:])
    return done.stdout


def timed_process(command: list[str], env: dict[str, str]) -> float:
    """Seconds of one fresh process, start to end (imports included: what a user waits for)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("QUOTASCOPE_")} | env
    full["PYTHONWARNINGS"] = "ignore"
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=full, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ...: {done.stderr.strip()[-1500:]}")
    return seconds


def reference_s(engine: Engine, sql: str) -> float:
    return float(run_python(engine.reference_code(sql)).strip().splitlines()[-1])


def quotascope(*arguments: str) -> list[str]:
    return [str(Path(sys.executable).parent / "quotascope"), *arguments]


def first_visit_s(engine: Engine, view: str) -> float:
    """The view's cold run in a fresh process (benchmarks/dashboard.py --measure)."""
    env = engine.env() | {"QUOTASCOPE_CURRENCY": BENCH.CURRENCY}
    command = [sys.executable, str(ROOT / "benchmarks" / "dashboard.py"), "--measure", view, "--runs", "0"]
    full = {k: v for k, v in os.environ.items() if not k.startswith("QUOTASCOPE_")} | env
    full["PYTHONWARNINGS"] = "ignore"
    done = subprocess.run(command, cwd=ROOT, env=full, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr.strip()[-1500:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    entry = result["views"][view]
    empty = [i for i in entry.get("infos", []) if "to fill it" in i]  # `state.empty_state`
    if empty:  # the view found no usage: it did not read the store under test
        raise RuntimeError(f"{view} shows its empty state ({empty[0][:80]}): it did not read the store")
    return float(entry["cold_s"])


def ingest_input(work: Path, records: int) -> tuple[Path, int]:
    """A file of `records` responses no earlier run in `work` ingested, and its size: a run that re-ingested
    the last one would time the finding of a million duplicates, not their storing. Each run draws its own
    responses (the next seed, kept in `work/ingest-seeds.json`); the files of earlier runs are deleted (their
    rows are in the stores already)."""
    seeds_file = work / "ingest-seeds.json"
    seeds: list[int] = json.loads(seeds_file.read_text()) if seeds_file.exists() else []
    seed = max(seeds, default=6) + 1
    for old in work.glob("responses-*.jsonl"):
        old.unlink()
    log = work / f"responses-{records}-seed{seed}.jsonl"
    size = write_openai_jsonl(log, records, seed=seed)
    seeds_file.write_text(json.dumps([*seeds, seed]))
    return log, size


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def attempt(label: str, fn: Callable[[], Any], failures: list[str]) -> Any:
    try:
        return fn()
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        failures.append(f"{label}: {str(e).splitlines()[-1] if str(e) else type(e).__name__}")
        print(f"  {label}: could not run ({failures[-1]})", flush=True)
        return None


def measure_engine(
    engine: Engine, args: argparse.Namespace, log: Path, failures: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine.name}
    print(f"\n== {engine.name}: building {args.rows:,} requests (load {load()}) ...", flush=True)
    steps = attempt(f"{engine.name} build", lambda: engine.build(args.rows, args.days), failures)
    if steps is None:
        return out
    migrated = attempt(f"{engine.name} migrations", engine.up_to_date, failures)
    if migrated is not None:
        steps["migrations brought up to date (not timed as a report)"] = migrated
    for step, seconds in steps.items():
        print(f"  {step}: {seconds:.1f} s", flush=True)
    out["build"] = steps
    if args.build_only:
        return out
    rows = args.rows
    source = attempt(f"{engine.name} spend source", engine.spend_source, failures)
    print(f"  report spend reads {source}", flush=True)

    spend = attempt(
        f"{engine.name} report spend",
        lambda: timed_process(
            quotascope("report", "spend", "--by", "provider,model", "--json", *engine.cli_store()), {}
        ),
        failures,
    )
    spend_ref = attempt(f"{engine.name} spend reference", lambda: reference_s(engine, SPEND_SQL), failures)
    out["report_spend"] = (spend, spend_ref)
    _line("report spend (fresh process)", spend, spend_ref)

    for view in args.views:
        cold = attempt(f"{engine.name} {view} first visit", lambda v=view: first_visit_s(engine, v), failures)
        ref = attempt(
            f"{engine.name} {view} reference", lambda v=view: reference_s(engine, REFERENCE_SQL[v]), failures
        )
        out.setdefault("views", {})[view] = (cold, ref)
        _line(f"{view} first visit", cold, ref)

    ingest = attempt(
        f"{engine.name} ingest",
        lambda: timed_process(quotascope("ingest", str(log), *engine.cli_store()), {}),
        failures,
    )
    ingest_ref = attempt(
        f"{engine.name} ingest reference",
        lambda: float(run_python(engine.ingest_reference_code(log)).strip().splitlines()[-1]),
        failures,
    )
    n = args.ingest_rows
    if ingest and ingest_ref:
        print(
            f"  ingest of {n:,} responses into {rows:,}: {n / ingest:,.0f} rows/s; the engine's own JSON "
            f"reader {n / ingest_ref:,.0f} rows/s; ratio {ingest_ref / ingest:.2f}x",
            flush=True,
        )
    out["ingest"] = (ingest, ingest_ref)
    return out


def _line(label: str, seconds: float | None, reference: float | None) -> None:
    if seconds is None:
        return
    ratio = f"{seconds / reference:,.1f}x the hand-written query ({reference:.3f} s)" if reference else ""
    print(f"  {label}: {seconds:.3f} s  {ratio}", flush=True)


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000_000, help="usage rows (default 100,000,000)")
    parser.add_argument("--days", type=int, default=30, help="days of traffic up to now (default 30)")
    parser.add_argument("--ingest-rows", type=int, default=1_000_000, help="responses ingested (default 1M)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated (default duckdb,chdb)")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated views (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the stores built under /tmp")
    parser.add_argument("--work", type=Path, help="build in (or reuse the stores of) this folder; kept")
    parser.add_argument("--build-only", action="store_true", help="build the stores, measure nothing")
    args = parser.parse_args()
    args.views = [v for v in args.views.split(",") if v]
    engines = [e for e in args.engines.split(",") if e]
    if set(engines) - set(ENGINES) or set(args.views) - set(VIEWS):
        parser.error(f"engines: {', '.join(ENGINES)}; views: {', '.join(VIEWS)}")
    for name in [k for k in os.environ if k.startswith("QUOTASCOPE_")]:
        del os.environ[name]
    work = args.work or Path(tempfile.mkdtemp(prefix="qs-scale-bench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    keep = args.keep or args.work is not None
    failures: list[str] = []
    print(f"cores: {os.cpu_count()}; load average before: {load()}", flush=True)
    try:
        log, size = ingest_input(work, args.ingest_rows)
        print(f"ingest input: {args.ingest_rows:,} responses, {size / 1e6:,.0f} MB", flush=True)
        results = []
        for name in engines:
            engine: Engine = DuckDB(work) if name == "duckdb" else Chdb(work)
            results.append(measure_engine(engine, args, log, failures))
            print(f"  load average now: {load()}", flush=True)
        print(f"\nload average after: {load()} (other work on the machine slows every figure)")
        if failures:
            print("not measured: " + "; ".join(failures))
        print(json.dumps({"rows": args.rows, "results": results}, default=str))
        return 1 if failures else 0
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
