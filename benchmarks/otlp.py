"""How fast does the OTLP receiver store spans, and does overload lose or double any?

Builds requests of GenAI chat spans as OpenTelemetry's own OpenAI instrumentation writes them (500 spans a
request, unique ids), then, in the same run:

1. reference: a bare protobuf decode (`ExportTraceServiceRequest.FromString`, upb's C parser) of the same
   requests; and, as a second reference, that decode plus one Python pass over every span's attributes (the
   least any Python receiver must do to look at a span);
2. stored: `quotascope otlp`'s server on a loopback port and a fresh DuckDB file, the requests POSTed by 10
   concurrent clients (an OpenTelemetry Collector's otlphttp exporter sends with 10 consumers by default);
   the clock stops when the last one is acknowledged (acknowledged = committed). Prints spans/s stored and
   the ratio to each reference (the issue's target: >= 0.5x of the bare decode);
3. overload: a fresh database, an open-loop client sending new requests at 3x the rate just measured for
   30 s; a request answered 429/503 is sent again after its Retry-After, as an OTLP exporter does, until
   every one is acknowledged. Then every span must be stored exactly once: rows = distinct keys = spans sent.

    .venv/bin/python benchmarks/otlp.py [--spans-per-request 500] [--requests 200] [--overload-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from collectors.otlp import OtlpOptions, OtlpServer  # noqa: E402
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of  # noqa: E402

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def bodies(count: int, spans: int, offset: int = 0) -> list[bytes]:
    """`count` requests of `spans` chat spans each, ids random, times spread over a few hours."""
    out = []
    for r in range(count):
        attributes = [llm_attributes(offset + r * spans + i) for i in range(spans)]
        start = START_NS + (offset + r * spans) * 1_000_000
        out.append(request_of(attributes, start_ns=start).SerializeToString())
    return out


def bare_decode(requests: list[bytes]) -> float:
    started = time.perf_counter()
    for body in requests:
        ExportTraceServiceRequest.FromString(body)
    return time.perf_counter() - started


def decode_and_walk(requests: list[bytes]) -> float:
    started = time.perf_counter()
    for body in requests:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    for kv in span.attributes:
                        kv.value.WhichOneof("value")
    return time.perf_counter() - started


def stored_rows(db: Path) -> tuple[int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT count(*), count(DISTINCT record_key) FROM usage").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def throughput(requests: list[bytes], db: Path, clients: int = 10) -> float:
    with OtlpServer(db, "bench", OtlpOptions(port=0, max_pending_spans=1_000_000)) as server:
        url = server.endpoint + "/v1/traces"
        with httpx.Client(timeout=120) as client:
            client.post(url, content=requests[0], headers=PROTOBUF).raise_for_status()  # warm: schema, plans
            started = time.perf_counter()

            def send(body: bytes) -> None:
                client.post(url, content=body, headers=PROTOBUF).raise_for_status()

            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(send, requests[1:]))
            return time.perf_counter() - started


async def overload(requests: list[bytes], rate_rps: float, seconds: float, db: Path) -> dict[str, float]:
    """Send `requests` at `rate_rps` (open loop) for `seconds`; retry refused ones after Retry-After."""
    counts = {"sent": 0, "acknowledged": 0, "refused_429": 0, "refused_503": 0, "errors": 0}
    with OtlpServer(db, "bench", OtlpOptions(port=0)) as server:
        url = server.endpoint + "/v1/traces"
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:

            async def deliver(body: bytes) -> None:
                while True:
                    counts["sent"] += 1
                    try:
                        response = await client.post(url, content=body, headers=PROTOBUF)
                    except httpx.HTTPError:
                        counts["errors"] += 1
                        await asyncio.sleep(1)
                        continue
                    if response.status_code == 200:
                        counts["acknowledged"] += 1
                        return
                    if response.status_code not in (429, 503):
                        raise AssertionError(f"unexpected answer {response.status_code}")
                    counts[f"refused_{response.status_code}"] += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))

            started = time.perf_counter()
            tasks = []
            for n, body in enumerate(requests):
                due = started + n / rate_rps
                if due - started > seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(deliver(body)))
            offered = len(tasks)
            await asyncio.gather(*tasks)
            counts["offered_requests"] = offered
            counts["drained_s"] = time.perf_counter() - started
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans-per-request", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--overload-s", type=float, default=30.0)
    parser.add_argument("--overload-factor", type=float, default=3.0)
    args = parser.parse_args()
    per = args.spans_per_request
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    print(f"building {args.requests} requests of {per} spans ...", flush=True)
    requests = bodies(args.requests, per)
    spans = (len(requests) - 1) * per
    bare = min(bare_decode(requests[1:]) for _ in range(3))
    walked = min(decode_and_walk(requests[1:]) for _ in range(3))
    with tempfile.TemporaryDirectory(prefix="qs-otlp-bench-") as folder:
        db = Path(folder) / "throughput.duckdb"
        seconds = throughput(requests, db)
        stored, distinct = stored_rows(db)
        assert stored == distinct == spans + per, (stored, distinct)
    rate = spans / seconds
    print(f"bare protobuf decode:         {spans / bare:12,.0f} spans/s")
    print(f"decode + one attribute pass:  {spans / walked:12,.0f} spans/s")
    print(
        f"stored by the receiver:       {rate:12,.0f} spans/s  "
        f"({rate / (spans / bare):.3f}x the bare decode, {rate / (spans / walked):.2f}x decode + pass; "
        f"target >= 0.5x the bare decode)"
    )

    target_rps = args.overload_factor * rate / per
    needed = int(target_rps * args.overload_s) + 1
    print(
        f"overload: {args.overload_factor:g}x = {target_rps * per:,.0f} spans/s "
        f"({target_rps:.1f} requests/s) for {args.overload_s:g} s; building {needed} requests ...",
        flush=True,
    )
    flood = bodies(needed, per, offset=10_000_000)
    with tempfile.TemporaryDirectory(prefix="qs-otlp-bench-") as folder:
        db = Path(folder) / "overload.duckdb"
        counts = asyncio.run(overload(flood, target_rps, args.overload_s, db))
        stored, distinct = stored_rows(db)
    sent_spans = int(counts["offered_requests"]) * per
    print(
        f"  offered {int(counts['offered_requests'])} requests ({sent_spans:,} spans); POSTs "
        f"{int(counts['sent'])}: acknowledged {int(counts['acknowledged'])}, "
        f"429 {int(counts['refused_429'])}, 503 {int(counts['refused_503'])}, "
        f"connection errors {int(counts['errors'])}; all acknowledged "
        f"after {counts['drained_s']:.1f} s"
    )
    print(f"  stored rows {stored:,}, distinct keys {distinct:,}, spans sent {sent_spans:,}")
    exactly_once = stored == distinct == sent_spans
    print(f"  every span stored exactly once: {'yes' if exactly_once else 'NO'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not exactly_once:
        sys.exit(1)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
