"""How accurately the probe measures what the emulator is configured to do, from 1 to 256 concurrent streams.

Starts the emulator (`quotascope emulate`'s server) as a separate process, then probes it in closed loop at
each concurrency and compares every request with the configured truth:
- TTFT error = measured TTFT (from the intended send time) − configured TTFT;
- tokens/s error = measured output tokens/s vs the truth under the same definition: the emulator spaces
  tokens 1/tokens_per_s apart, so n tokens span (n − 1)/tokens_per_s and the truth is n·tokens_per_s/(n − 1);
- the client's event-loop lag while requests were open, and the CPU share the client and the emulator got
  (well under 100 % with a high lag means other work on the machine took the cores).

The reference, measured in the same run, is a bare asyncio socket client (no httpx, no JSON parsing) timing
the same emulator sequentially: the floor set by the loopback, uvicorn and the emulator's own timers. The
probe's TTFT error at each level is also printed as a ratio to that floor.
Targets: median TTFT error ≤ 2 ms at 1 and ≤ 10 ms at 256; tokens/s within 2 %.

Defaults: TTFT 300 ms, 20 tokens/s, 16 output tokens, tokens grouped into 200 ms chunks (providers batch
tokens per chunk; one chunk per token at 256 streams is ~13,000 reads a second, more than one core of this
client can do, which the lag columns then show), workers' starts spread over one request's duration. Each
level sends rounds × concurrency requests (at least --min-requests). About 45 s in all.

    .venv/bin/python benchmarks/probe_accuracy.py [--levels 1,16,64,256] [--ttft-ms 300] [--tokens-per-s 20]
        [--output-tokens 16] [--chunk-ms 200] [--rounds 3] [--ramp-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from collectors.probe import Endpoint, make_client, run_probe
from collectors.probe.loop import loop_factory, run_async
from collectors.probe.prompts import build_prompt
from models.probe import LoadPlan, ProbeRun, percentiles
from quotascope.output import table

MODEL = "quotascope-emulator"


# The emulator in its own process (so the two do not share a GIL), started without the CLI so that this
# benchmark depends on the emulator and the probe only.
EMULATOR_PROGRAM = """
import json, sys
from collectors.emulator import EmulatorConfig, bind, serve
config = EmulatorConfig(**json.loads(sys.argv[1]))
sock = bind("127.0.0.1", 0)
print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
serve(sock, config)
"""


def start_emulator(
    args: argparse.Namespace, prefix: list[str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process (`prefix`: e.g. a taskset command to pin it); (process, base URL)."""
    config = {
        "model": MODEL,
        "ttft_ms": args.ttft_ms,
        "tokens_per_s": args.tokens_per_s,
        "output_tokens": args.output_tokens,
        "chunk_ms": args.chunk_ms,
    }
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-c", EMULATOR_PROGRAM, json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise SystemExit("the emulator did not start")
    return process, f"http://127.0.0.1:{json.loads(line)['port']}/v1"


async def reference_ttft_ms(base_url: str, requests: int, input_tokens: int) -> list[float]:
    """TTFT as a minimal client sees it: raw HTTP/1.1 on one kept-alive socket, bytes searched, not parsed."""
    host, port = base_url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for i in range(requests):
        body = json.dumps(
            {
                "model": MODEL,
                "messages": build_prompt(input_tokens, f"ref{i}"),
                "stream": True,
                "max_tokens": 8,
            }
        ).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        t0 = time.perf_counter()
        writer.write(head + body)
        seen = b""
        first = None
        while b"data: [DONE]" not in seen or not seen.endswith(b"0\r\n\r\n"):
            data = await reader.read(65536)
            if not data:
                raise SystemExit("the emulator closed the reference connection")
            if first is None and (b'"delta":{"content":"' in data or b'"delta":{"reasoning' in data):
                first = time.perf_counter()
            seen = seen[-64:] + data
        assert first is not None
        samples.append((first - t0) * 1000)
    writer.close()
    await writer.wait_closed()
    return samples


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds another process has used (Linux /proc); 0 where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def probe_level(
    base_url: str, concurrency: int, requests: int, input_tokens: int, ramp_s: float
) -> ProbeRun:
    endpoint = Endpoint("emulator", base_url, MODEL, read_timeout_s=60)
    plan = LoadPlan.from_options(
        (concurrency,), requests=requests, input_tokens=(input_tokens,), max_tokens=4096, ramp_s=ramp_s
    )
    async with make_client(endpoint, plan) as client:
        return await run_probe(client, endpoint, plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,16,64,256")
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--tokens-per-s", type=float, default=20.0)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--chunk-ms", type=float, default=200.0)
    parser.add_argument("--input-tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="requests per level = rounds × concurrency")
    parser.add_argument("--min-requests", type=int, default=15)
    parser.add_argument(
        "--ramp-s", type=float, help="workers start spread over this long (default: one request's duration)"
    )
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]

    process, base_url = start_emulator(args)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        run_async(reference_ttft_ms(base_url, 3, args.input_tokens))  # warm-up
        floor = run_async(reference_ttft_ms(base_url, args.min_requests, args.input_tokens))
        floor_err = statistics.median(floor) - args.ttft_ms
        rows = [
            ["raw socket (ref)", 1, len(floor), len(floor), f"{floor_err:.2f}", "", "", "", "", "", "", ""]
        ]
        n, tps = args.output_tokens, args.tokens_per_s
        truth_tps = n * tps / (n - 1)
        duration_s = args.ttft_ms / 1000 + (n - 1) / tps
        for level in levels:
            requests = max(args.min_requests, args.rounds * level)
            ramp_s = args.ramp_s if args.ramp_s is not None else duration_s
            cpu_before, emulator_before, wall_before = (
                own_cpu_s(),
                process_cpu_s(process.pid),
                time.perf_counter(),
            )
            run = run_async(probe_level(base_url, level, requests, args.input_tokens, ramp_s))
            wall = time.perf_counter() - wall_before
            client_cpu = (own_cpu_s() - cpu_before) / wall * 100
            emulator_cpu = (process_cpu_s(process.pid) - emulator_before) / wall * 100
            ok = [r for r in run.results if r.ok and r.ttft_ms is not None]
            ttft_err = [r.ttft_ms - args.ttft_ms for r in ok if r.ttft_ms is not None]
            tps_err = [
                (r.output_tokens_per_s - truth_tps) / truth_tps * 100
                for r in ok
                if r.output_tokens_per_s is not None
            ]
            q = percentiles(ttft_err, (50, 99))
            median_err = q["p50"] or 0.0
            rows.append(
                [
                    "probe",
                    level,
                    len(run.results),
                    len(ok),
                    f"{median_err:.2f}",
                    f"{q['p99'] or 0:.2f}",
                    f"{median_err / floor_err:.1f}×" if floor_err > 0 else "",
                    f"{statistics.median(tps_err):+.2f}",
                    f"{max(abs(e) for e in tps_err):.2f}",
                    f"{run.loop_lag.p50_ms:.1f} / {run.loop_lag.p99_ms:.1f} / {run.loop_lag.max_ms:.1f}",
                    sum(1 for r in run.results if r.client_saturated),
                    f"{client_cpu:.0f} / {emulator_cpu:.0f}",
                ]
            )
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(
        f"emulator: TTFT {args.ttft_ms:g} ms, {tps:g} tokens/s, {n} output tokens, {args.input_tokens} input "
        f"tokens, chunk {args.chunk_ms:g} ms; truth tokens/s under the probe's definition {truth_tps:.2f}"
    )
    print(
        table(
            [
                "client",
                "concurrency",
                "requests",
                "ok",
                "TTFT err p50 ms",
                "TTFT err p99 ms",
                "p50 / ref",
                "tok/s err p50 %",
                "tok/s |err| max %",
                "loop lag p50/p99/max ms",
                "saturated",
                "CPU % client / emulator",
            ],
            rows,
        )
    )
    loop = "uvloop" if loop_factory() else "asyncio"
    print(
        f"total {time.perf_counter() - started:.1f} s on {loop}; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (2 cores shared: other work inflates the high-concurrency rows)"
    )


if __name__ == "__main__":
    main()
