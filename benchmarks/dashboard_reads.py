"""Each dashboard view's reads, one by one, inside the real app: for every `dashboard.state.read` call a
view (and the app's sidebar) makes on its first visit, the rows it returned, its time, and the process's
peak resident memory while it ran (Linux's VmHWM, reset before each read through /proc/self/clear_refs),
beside the resident memory before and after it. One fresh process per view and database, as
`benchmarks/dashboard.py` measures a first visit, so the figures of two sizes can be set side by side to
find the read whose working set grows with the data (issue 16: the app's peak memory at 100M requests no
more than at 10M).

    .venv/bin/python benchmarks/dashboard_reads.py --db /tmp/10m.duckdb [--db /tmp/100m.duckdb]
        [--views endpoints,overview,usage]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.serve import server_env  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
VIEWS = ("overview", "planner", "spend", "usage", "endpoints", "switch", "catalog")


def _status(field: str) -> float:
    with Path("/proc/self/status").open() as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # MB


def _reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def _size(result: Any) -> int | str:
    for attribute in ("height", "daily"):
        inner = getattr(result, attribute, None)
        if isinstance(inner, int):
            return inner
        if inner is not None and hasattr(inner, "height"):
            return int(inner.height)
    if isinstance(result, (list, tuple, dict)):
        return len(result)
    return type(result).__name__


def _duckdb_mb() -> float | None:
    """What the page run's shared DuckDB connection holds (`duckdb_memory()`: cached table blocks, hash
    tables kept), if one is open."""
    from storage.db import _shared_reads

    shared = _shared_reads.get()
    if shared is None or not shared.connections:
        return None
    con = next(iter(shared.connections.values()))
    rows = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()
    return round(int(rows[0][0] or 0) / 2**20, 1)


def measure(view: str, reset: bool = True) -> dict[str, Any]:
    """In this fresh process: the view's first run through AppTest, each read measured (`view` may name
    several, comma-separated, each run in turn twice over, as the benchmark's all-views process does:
    then the peak is not reset, and each read's `peak_mb` is the process's peak so far)."""
    import logging

    from streamlit.testing.v1 import AppTest

    from dashboard import state
    from dashboard.serve import preload

    preload()
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    reads: list[dict[str, Any]] = []
    original = state.read

    def read(call: Any, **kwargs: Any) -> Any:
        before = _status("VmRSS")
        if reset:
            _reset_peak()
        start = time.perf_counter()
        result = original(call, **kwargs)
        seconds = time.perf_counter() - start
        reads.append(
            {
                "read": f"{call.__module__}.{call.__qualname__}",
                "args": ", ".join(f"{k}={v!r}"[:60] for k, v in kwargs.items() if k != "selection"),
                "rows": _size(result),
                "s": round(seconds, 3),
                "rss_before_mb": round(before, 1),
                "peak_mb": round(_status("VmHWM"), 1),
                "rss_after_mb": round(_status("VmRSS"), 1),
                "duckdb_mb": _duckdb_mb(),
            }
        )
        return result

    state.read = read  # type: ignore[assignment]
    at = AppTest.from_file(str(APP), default_timeout=900)
    from streamlit.components.v2.component_manager import BidiComponentManager

    manager = BidiComponentManager()
    manager.discover_and_register_components(start_file_watching=False)
    at._bidi_component_manager = manager
    start_rss = _status("VmRSS")
    start = time.perf_counter()
    for name in view.split(",") * (1 if reset else 2):
        at.switch_page(f"views/{name}.py")
        reads.append(
            {
                "read": f"--- {name}",
                "args": "",
                "rows": "",
                "s": 0,
                "rss_before_mb": _status("VmRSS"),
                "peak_mb": _status("VmHWM"),
                "rss_after_mb": _status("VmRSS"),
            }
        )
        at.run()
        if at.exception:
            raise SystemExit(f"{name}: {at.exception[0].message}")
    seconds = time.perf_counter() - start
    return {
        "view": view,
        "s": seconds,
        "rss_start_mb": start_rss,
        "peak_mb": _status("VmHWM"),
        "reads": reads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, action="append", required=True)
    parser.add_argument("--views", default="overview,usage,endpoints,spend,switch,planner,catalog")
    parser.add_argument("--together", action="store_true", help="all --views in one process, twice round")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, reset=not args.together)))
        return 0
    # the server's environment (`quotascope dashboard` starts it with its allocator settings)
    env = server_env({k: v for k, v in os.environ.items() if not k.startswith("QUOTASCOPE_")})
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for view in [args.views] if args.together else args.views.split(","):
        found = []
        for db in args.db:
            done = subprocess.run(
                [sys.executable, __file__, "--db", str(db), "--measure", view]
                + (["--together"] if args.together else []),
                env=env
                | {"QUOTASCOPE_DB": str(db), "QUOTASCOPE_CURRENCY": "CNY", "PYTHONWARNINGS": "ignore"},
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            found.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"\n{view}: " + "  |  ".join(f"{f['s']:.2f} s, peak {f['peak_mb']:.0f} MB" for f in found))
        for n, entry in enumerate(found[0]["reads"]):
            cells = []
            for f in found:
                r = f["reads"][n] if n < len(f["reads"]) else None
                if r is None:
                    continue
                cells.append(
                    f"{r['rows']!s:>7} rows {r['s']:6.3f} s rss {r['rss_before_mb']:5.0f}"
                    f"->{r['rss_after_mb']:5.0f} peak {r['peak_mb']:5.0f} duckdb {r.get('duckdb_mb')}"
                )
            print(f"  {entry['read'][-40:]:<40} {entry['args'][:50]:<50}\n      " + "\n      ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
