"""How fast does the OTLP receiver store spans, and does overload lose or double any?

Builds requests of 500 spans (unique ids, times spread over a few hours) in the mix a service instrumented
by several libraries sends: in every 10 spans, 3 chat spans as OpenTelemetry's own OpenAI instrumentation
writes them (GenAI conventions), 2 as OpenInference writes them (with the prompt and answer in input.value /
output.value, never stored), 1 OpenLLMetry (llm.usage.*), 1 OpenLIT (Anthropic, cache counted outside the
input, a fractional TTFT in seconds), and 3 spans that are no LLM call (an HTTP server span, a database
query, an agent span). Then, in the same run:

1. reference: a bare protobuf decode (`ExportTraceServiceRequest.FromString`, upb's C parser) of the same
   requests; and, as a second reference, that decode plus one Python pass over every span's attributes (the
   least any Python receiver must do to look at a span);
2. where the time goes, one request at a time in this process (CPU seconds per span): the receiver's scan
   (`SpanBatcher.prepare_protobuf`, records as columns), the reference mapping it replaces (upb +
   `usage_from_span` + JSON), the checks over the scan's columns (`storage.columnar`) and the write
   (`storage.usage.store_batch`) of the same records;
3. HTTP alone: the same server stack (Starlette under uvicorn) with a handler that reads the body and
   answers 200: the share of the time no receiver can avoid on this stack;
4. stored: `quotascope otlp`'s server on a loopback port and a fresh DuckDB file, the requests POSTed over 10
   kept-alive connections (an OpenTelemetry Collector's otlphttp exporter sends with 10 consumers by
   default) by a plain socket client in a process of its own (an exporter's own cost is not the
   receiver's). Twice: acknowledging each request once committed, and with `--spool` (acknowledged once
   fsynced to the spool, committed after in large batches), where it prints two figures: until the last
   span is durably spooled (acknowledged), and until it is committed to the database. The rows are
   counted back from the database each time. The target (>= 0.5x the bare decode) is judged on the
   spooled run's spans committed to the database: stored means in the database. Beside each run, the CPU
   its threads used per span, by what they do (HTTP, scan, checks, spool, commits), and how many of the
   2 cores that kept busy on average: fewer than 2 means the run waited (on the exporters' 10 requests in
   flight, the hand-offs between threads, fsync), not on CPU;
5. overload (with `--spool`): a fresh database, an open-loop client sending new requests at 3x the rate
   just measured for 30 s; a request answered 429/503 is sent again after its Retry-After, as an OTLP
   exporter does, until every one is acknowledged. Then every LLM span must be stored exactly once: rows =
   distinct keys = LLM spans sent.

    nice .venv/bin/python benchmarks/otlp.py [--spans-per-request 500] [--requests 1000] [--overload-s 30]

1000 requests (500,000 spans, about 5 s of traffic) by default: a receiver serves traffic that goes on, and
a 200-request run (the earlier default, 1-2 s) is mostly its start-up and its end: the first batches pay
one-off costs (the first source row, a new file's first row groups) and the last commit has nothing to
overlap with; `--requests 200` still measures it that way.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pickle
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from collectors.emulator.server import bind, start_in_thread  # noqa: E402
from collectors.otlp import OtlpOptions, OtlpServer  # noqa: E402
from collectors.otlp.decode import spans_of  # noqa: E402
from collectors.otlp.spool import Spool, encode  # noqa: E402
from collectors.otlp.wire import SPAN_DOUBT, scan  # noqa: E402
from collectors.otlp.writer import SPEC, SpanBatcher  # noqa: E402
from storage.columnar import check_records  # noqa: E402
from storage.db import WriteSession  # noqa: E402
from storage.usage import IngestContext, Normalised, Normaliser, SourceRun, store_batch  # noqa: E402
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of  # noqa: E402

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def mixed_span(n: int) -> dict[str, object]:
    """The attributes of span n of the mix (see the docstring)."""
    kind = n % 10
    if kind < 3:
        return llm_attributes(n)
    if kind < 5:
        return {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.token_count.prompt": 800 + n % 50,
            "llm.token_count.completion": 120,
            "llm.token_count.prompt_details.cache_read": 512,
            "llm.token_count.total": 920 + n % 50,
            "input.value": '{"messages": [{"role": "user", "content": "Summarise the attached ticket."}]}',
            "input.mime_type": "application/json",
            "output.value": "The customer reports a failed payment after the card was charged twice.",
            "output.mime_type": "text/plain",
        }
    if kind == 5:
        return {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4.1",
            "gen_ai.response.model": "gpt-4.1-2025-04-14",
            "gen_ai.response.id": f"chatcmpl-llmetry-{n:020d}",
            "gen_ai.usage.prompt_tokens": 2000 + n % 10,
            "gen_ai.usage.completion_tokens": 350,
            "llm.usage.total_tokens": 2350 + n % 10,
            "llm.is_streaming": False,
        }
    if kind == 6:
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-20250514",
            "gen_ai.response.id": f"msg_{n:024d}",
            "gen_ai.usage.input_tokens": 30,
            "gen_ai.usage.output_tokens": 210,
            "gen_ai.usage.cache_read_input_tokens": 4000,
            "gen_ai.usage.cache_creation_input_tokens": 100,
            "gen_ai.server.time_to_first_token": 0.4183,
            "gen_ai.environment": "production",
        }
    if kind == 7:
        return {
            "http.request.method": "POST",
            "url.path": "/api/checkout",
            "http.response.status_code": 200,
            "server.address": "shop.internal",
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)",
        }
    if kind == 8:
        return {
            "db.system.name": "postgresql",
            "db.query.text": "SELECT id, total FROM orders WHERE customer_id = $1",
            "db.namespace": "shop",
        }
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-agent"}


LLM_SPANS_PER_10 = 7


def bodies(count: int, spans: int, offset: int = 0) -> list[bytes]:
    """`count` requests of `spans` spans of the mix each, ids random, times spread over a few hours."""
    out = []
    for r in range(count):
        attributes = [mixed_span(offset + r * spans + i) for i in range(spans)]
        start = START_NS + (offset + r * spans) * 1_000_000
        request = request_of(attributes, start_ns=start)
        # OpenLIT's spans come from its own scope (the cache rule for its Anthropic counts keys on it)
        resource_spans = request.resource_spans[0]
        everything = list(resource_spans.scope_spans[0].spans)
        del resource_spans.scope_spans[0].spans[:]
        openlit = resource_spans.scope_spans.add()
        openlit.scope.name = "openlit.otel.tracing"
        for place, span in enumerate(everything):
            target = openlit if (offset + r * spans + place) % 10 == 6 else resource_spans.scope_spans[0]
            target.spans.append(span)
        out.append(request.SerializeToString())
    return out


def llm_spans(requests: int, spans: int) -> int:
    return requests * (spans // 10 * LLM_SPANS_PER_10 + sum(1 for i in range(spans % 10) if i < 7))


def stages(requests: list[bytes], spans: int) -> dict[str, float]:
    """CPU seconds per span of each stage, one request at a time (`time.process_time`, this process only)."""
    batcher = SpanBatcher({})
    out: dict[str, float] = {}

    def clock(name: str, work: Callable[[], object]) -> object:
        started = time.process_time()
        result = work()
        out[name] = (time.process_time() - started) / spans
        return result

    clock("bare protobuf decode (upb)", lambda: bare_decode(requests))
    prepared = clock("scan (the receiver's mapping)", lambda: [batcher.prepare_protobuf(b) for b in requests])
    clock(
        "reference mapping (upb + usage_from_span)",
        lambda: [
            batcher.prepare(spans_of(ExportTraceServiceRequest.FromString(b), batcher.wanted))
            for b in requests
        ],
    )
    assert isinstance(prepared, list)
    normaliser = Normaliser()
    context = IngestContext(salt="bench")
    schema = normaliser.schema(SPEC, context)
    records = pa.concat_tables([p.columns for p in prepared if p.columns is not None])
    numbers = np.arange(1, records.num_rows + 1, dtype=np.int64)
    check_records(SPEC, records.slice(0, 1), numbers[:1], context, schema)  # pyarrow's first-call costs
    normalised = clock(
        "checks (storage.columnar, the scan's columns)",
        lambda: check_records(SPEC, records, numbers, context, schema),
    )
    started = time.process_time()
    for _ in range(5):
        check_records(SPEC, records.slice(0, 1), numbers[:1], context, schema)
    out["checks: fixed cost a batch (CPU ms!)"] = (time.process_time() - started) / 5 * 1e-3
    normaliser.close()
    assert isinstance(normalised, Normalised)
    with tempfile.TemporaryDirectory(prefix="qs-otlp-bench-") as folder:
        run = SourceRun("otlp://bench", 0, "otlp", {}, datetime(2026, 1, 1))
        db = Path(folder) / "stages.duckdb"
        run, _ = store_batch(db, run, [normalised.rows.slice(0, 1)], [])  # schema, first source
        rows = normalised.rows
        half = rows.num_rows // 2
        # as the receiver writes: on its session's connection, kept open across back-to-back batches
        with WriteSession(db) as session:
            session.open()
            started = time.perf_counter()
            run, _ = store_batch(db, run, [rows.slice(1, half - 1)], [], session=session)
            out["write, in one batch (store_batch, wall)"] = (time.perf_counter() - started) / (spans / 2)
            # as the receiver checks under 10 clients: a batch holds the 10 requests in flight at most
            per_batch = max(1, 10 * half // max(1, len(requests) // 2))
            started = time.perf_counter()
            for first in range(half, rows.num_rows, per_batch):
                run, _ = store_batch(db, run, [rows.slice(first, per_batch)], [], session=session)
            seconds = time.perf_counter() - started
        out["write, 10 requests a batch (no spool; wall)"] = seconds / (spans / 2)
        # the spool's group commit of such a batch: encoded, appended, fsynced
        spool = Spool(Path(folder) / "spool")
        started = time.perf_counter()
        for first in range(0, rows.num_rows, per_batch):
            spool.append(encode(rows.slice(first, per_batch), []))
        out["spool, 10 requests a batch (encode + fsync, wall)"] = (time.perf_counter() - started) / spans
        spool.close()
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


def send_all(port: int, bodies_file: str, clients: int) -> tuple[float, float]:
    """In a process of its own (as exporters are): POST every request of the file over `clients` kept-alive
    connections, one thread each; (monotonic time at the start, at the last acknowledgement).

    A plain HTTP/1.1 client on sockets, the request heads written once: an exporter's own cost is not the
    receiver's (httpx's per request, in Python, capped the same server stack at a sixth of what it serves)."""
    requests = pickle.loads(Path(bodies_file).read_bytes())

    def head(body: bytes) -> bytes:
        return (
            f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()

    messages = [head(body) + body for body in requests]

    def send(share: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answers = connection.makefile("rb")
            for message in share:
                connection.sendall(message)
                status = answers.readline()
                length = 0
                while (line := answers.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answers.read(length)
                if b" 200 " not in status:
                    raise AssertionError(f"answered {status!r}")

    send(messages[:1])  # warm: the receiver's plans and schema
    rest = messages[1:]
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, [rest[i::clients] for i in range(clients)]))
    return started, time.monotonic()


def client_run(port: int, requests: list[bytes], clients: int = 10) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile(prefix="qs-otlp-bench-", suffix=".pickle") as out:
        out.write(pickle.dumps(requests))
        out.flush()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(send_all, (port, out.name, clients))


def trivial_http(requests: list[bytes]) -> float:
    """Seconds the same server stack (Starlette under uvicorn, as `OtlpServer` runs it) takes to read the
    requests and answer 200 with nothing else done: the HTTP share of the receiver's time."""

    async def ok(request: Request) -> Response:
        await request.body()
        return Response(b"", media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", ok, methods=["POST"])])
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    sock = bind("127.0.0.1", 0)
    thread = start_in_thread(server, sock, "trivial", "the trivial server")
    try:
        started, done = client_run(sock.getsockname()[1], requests)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    return done - started


# The receiver's threads by what they do (`threading` names). The rest is counted as one remainder
# (`OTHER`): native pools (DuckDB's, which do part of each commit, Arrow's, OpenBLAS's), multiprocessing's
# handler threads, and threads that ended during the run (AnyIO retires a worker idle for 10 s).
THREAD_ROLES = (
    ("otlp:", "HTTP, event loop"),
    ("AnyIO worker", "scan (worker threads)"),
    ("quotascope-otlp-writer", "writer: checks, spool encoding (no spool: commits)"),
    ("quotascope-otlp-spool", "spool append + fsync"),
    ("quotascope-otlp-drain-pipe", "drain process's pipe (in the receiver)"),
    ("quotascope-otlp-drain", "drain: commits to the db"),
)


OTHER = "other threads (native pools, pool handlers, ended workers)"


def thread_cpu() -> dict[str, float]:
    """CPU seconds each role's threads of this process have run (Linux: /proc's schedstat, in ns), the main
    thread (the benchmark's own work) left out."""
    named = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    main = threading.main_thread().native_id
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        if tid == main:
            continue
        try:
            ran_ns = int((task / "schedstat").read_text().split()[0])
        except OSError:  # the thread ended
            continue
        name = named.get(tid, "")
        roles = (role for prefix, role in THREAD_ROLES if name.startswith(prefix))
        role = next(roles, OTHER)
        out[role] = out.get(role, 0.0) + ran_ns / 1e9
    # the remainder from the process's whole CPU (ended threads included), less the main thread's
    main_s = int((Path("/proc/self/task") / str(main) / "schedstat").read_text().split()[0]) / 1e9
    out[OTHER] = time.process_time() - main_s - sum(v for k, v in out.items() if k != OTHER)
    return out


DRAIN_PROCESS = "drain process: commits to the db (all its threads)"


def process_cpu(pid: int | None) -> dict[str, float]:
    """CPU seconds the spool's drain process has run, all its threads (/proc's stat: user + system)."""
    if pid is None:
        return {}
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {DRAIN_PROCESS: (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}


def throughput(requests: list[bytes], db: Path, spool: Path | None) -> tuple[float, float, dict[str, float]]:
    """Seconds until the last request is acknowledged, and until its spans are committed to `db`; and the
    CPU seconds the receiver's threads used meanwhile, by what they do (`thread_cpu`)."""
    # as `quotascope otlp` runs, with and without --spool
    options = OtlpOptions(port=0) if spool is None else OtlpOptions.spooled(spool, port=0)
    with OtlpServer(db, "bench", options) as server:
        assert server.batcher.wait_compiled(120)
        drain = server.writer.drain_pid
        before = thread_cpu() | process_cpu(drain)
        started, acknowledged = client_run(server.port, requests)
        assert server.writer.wait_stored(600)
        committed = time.monotonic()
        after = thread_cpu() | process_cpu(drain)
    used = {role: seconds - before.get(role, 0.0) for role, seconds in after.items()}
    return acknowledged - started, committed - started, used


async def overload(requests: list[bytes], rate_rps: float, seconds: float, db: Path) -> dict[str, float]:
    """Send `requests` at `rate_rps` (open loop) for `seconds`; retry refused ones after Retry-After."""
    counts: dict[str, float] = {"sent": 0, "acknowledged": 0, "refused_429": 0, "refused_503": 0, "errors": 0}
    options = OtlpOptions.spooled(db.parent / "spool", port=0)  # as `quotascope otlp --spool` runs
    with OtlpServer(db, "bench", options) as server:
        assert server.batcher.wait_compiled(120)
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
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--overload-s", type=float, default=30.0)
    parser.add_argument("--overload-factor", type=float, default=3.0)
    args = parser.parse_args()
    per = args.spans_per_request
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    print(f"building {args.requests} requests of {per} spans ...", flush=True)
    requests = bodies(args.requests, per)
    spans = (len(requests) - 1) * per
    expected = llm_spans(len(requests), per)
    bare = min(bare_decode(requests[1:]) for _ in range(3))
    walked = min(decode_and_walk(requests[1:]) for _ in range(3))
    batcher = SpanBatcher({})
    doubtful = sum(
        int(np.count_nonzero(scanned.verdicts == SPAN_DOUBT)) if scanned is not None else per
        for scanned in (scan(b, batcher.plan) for b in requests)
    )
    print(
        f"spans: {spans + per:,}, of which LLM spans {expected:,}; spans the scan hands to the reference "
        f"path: {doubtful:,}"
    )
    print("where the time goes (one request at a time, us per span of the mix):")
    for name, seconds_per_span in stages(requests[1:], spans).items():
        print(f"  {name:46s} {seconds_per_span * 1e6:7.2f}")
    http = trivial_http(requests)
    figures: dict[str, tuple[float, float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    for mode in ("committed", "spooled"):
        with tempfile.TemporaryDirectory(prefix="qs-otlp-bench-") as folder:
            db = Path(folder) / "throughput.duckdb"
            spool = Path(folder) / "spool" if mode == "spooled" else None
            acknowledged, committed, cpu[mode] = throughput(requests, db, spool)
            figures[mode] = (acknowledged, committed)
            stored, distinct = stored_rows(db)
            assert stored == distinct == expected, (mode, stored, distinct, expected)
    bare = min([bare, *(bare_decode(requests[1:]) for _ in range(3))])  # before and after: the best
    decoded = spans / bare
    print(f"bare protobuf decode:         {decoded:12,.0f} spans/s")
    print(f"decode + one attribute pass:  {spans / walked:12,.0f} spans/s ({bare / walked:.3f}x)")
    print(
        f"HTTP alone (same server stack, a handler that reads the body and answers 200; client in its own "
        f"process, 10 threads): {spans / http:12,.0f} spans/s ({bare / http:.3f}x the bare decode)"
    )

    def line(label: str, seconds: float) -> str:
        rate = spans / seconds
        return f"  {label:58s} {rate:12,.0f} spans/s  {rate / decoded:.3f}x the bare decode"

    print(f"stored by the receiver ({stored:,} rows read back each time = every LLM span once):")
    print(line("acknowledge once committed: until the last commit", figures["committed"][1]))
    print(line("with --spool: until the last span is durably spooled (acked)", figures["spooled"][0]))
    print(line("with --spool: until the last span is committed to the db", figures["spooled"][1]))
    for mode, title in (("committed", "acknowledged once committed"), ("spooled", "with --spool")):
        used = cpu[mode]
        busy = sum(used.values()) / figures[mode][1]
        print(
            f"  the receiver's CPU per span, {title} (us, each role's threads' time on a CPU, from the "
            f"client's start to the last commit; {busy:.2f} cores busy on average):"
        )
        for role, seconds in sorted(used.items(), key=lambda pair: -pair[1]):
            print(f"    {role:44s} {seconds / spans * 1e6:6.2f}")
        print(f"    {'all':44s} {sum(used.values()) / spans * 1e6:6.2f}")
    rate = spans / figures["spooled"][1]
    print(
        f"target (>= 0.5x the bare decode) judged on spans committed to the database with --spool: "
        f"{rate / decoded:.3f}x"
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
    sent_llm = llm_spans(int(counts["offered_requests"]), per)
    print(
        f"  offered {int(counts['offered_requests'])} requests ({sent_spans:,} spans); POSTs "
        f"{int(counts['sent'])}: acknowledged {int(counts['acknowledged'])}, "
        f"429 {int(counts['refused_429'])}, 503 {int(counts['refused_503'])}, "
        f"connection errors {int(counts['errors'])}; all acknowledged "
        f"after {counts['drained_s']:.1f} s"
    )
    print(f"  stored rows {stored:,}, distinct keys {distinct:,}, LLM spans sent {sent_llm:,}")
    exactly_once = stored == distinct == sent_llm
    print(f"  every span stored exactly once: {'yes' if exactly_once else 'NO'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not exactly_once:
        sys.exit(1)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
