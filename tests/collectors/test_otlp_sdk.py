"""Real third-party clients end to end: the official `openai` SDK calls the emulator, an instrumentation
records the call, the OpenTelemetry SDK's OTLP/HTTP exporter sends it to the receiver, and the stored tokens
are exactly what the responses said.

Each family runs in its own subprocess: instrumentations patch the `openai` module process-wide and cannot
all be undone, so one test's instrumentation must not see another's calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from collectors.otlp import OtlpOptions, OtlpServer

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: instrument, call the emulator (plain, streamed), flush, print what the
# responses said. Content is sent on purpose (OpenInference records it by default; the others are told to).
CLIENT = """
import json, os, sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
import openai

family, endpoint, base_url, model = sys.argv[1:5]
provider = TracerProvider(resource=Resource.create({"service.name": "checkout-" + family}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
if family == "openai-v2":
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
elif family == "openinference":
    from openinference.instrumentation.openai import OpenAIInstrumentor
else:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
OpenAIInstrumentor().instrument(tracer_provider=provider)

client = openai.OpenAI(base_url=base_url, api_key="qs-test-not-a-real-key", max_retries=0)
said = []
for n in range(3):
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "SECRET-PROMPT-%d tell me" % n}]
    )
    said.append([reply.id, reply.usage.prompt_tokens, reply.usage.completion_tokens])
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "SECRET-PROMPT-stream please"}],
    stream=True,
    stream_options={"include_usage": True},
)
last = None
for chunk in stream:
    last = chunk
said.append([last.id, last.usage.prompt_tokens, last.usage.completion_tokens])
provider.force_flush()
provider.shutdown()
print(json.dumps(said))
"""

FAMILIES = ("openai-v2", "openinference", "openllmetry")


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(ttft_ms=30, tokens_per_s=2000, output_tokens=6, reasoning_tokens=2)
    with EmulatorServer(config) as server:
        yield server


def run_client(
    family: str, endpoint: str, emulator: EmulatorServer, extra_env: dict[str, str] | None = None
) -> list[list[object]]:
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",  # send content; we must drop it
        "TRACELOOP_TRACE_CONTENT": "true",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, family, endpoint, emulator.base_url, emulator.config.model],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    said: list[list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return said


@pytest.mark.parametrize("family", FAMILIES)
def test_stored_tokens_equal_what_the_responses_said(
    family: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "otlp.duckdb"
    # the exporter as users configure it: gzip for one family, a bearer token for another
    token = "qs-otlp-token-1" if family == "openllmetry" else None
    exporter_env = {
        "openinference": {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
        "openllmetry": {"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{token}"},
    }.get(family, {})
    options = OtlpOptions(port=0, attribution={"team": "service.name"}, token=token)
    with OtlpServer(db, "salt", options) as server:
        said = run_client(family, server.endpoint, emulator, exporter_env)
        assert server.receiver.stats.refused_busy == 0
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute(
            "SELECT input_tokens, output_tokens, provider, model, team, latency_ms, ttft_ms "
            "FROM usage ORDER BY ts"
        ).fetchall()
        rejects = con.execute("SELECT count(*) FROM rejects").fetchone()
    assert rejects == (0,)
    assert [(row[0], row[1]) for row in stored] == [(s[1], s[2]) for s in said]
    assert {row[2] for row in stored} == {"openai"}
    assert {row[3] for row in stored} == {emulator.config.model}
    assert {row[4] for row in stored} == {f"checkout-{family}"}
    assert all(row[5] is not None and row[5] >= 30 for row in stored)  # latency covers the 30 ms TTFT
    if family in ("openinference", "openllmetry"):  # they record streamed chunks as span events
        # the first chunk's event: the emulator, like OpenAI, sends the role chunk before the first token
        ttft = stored[-1][6]
        assert ttft is not None and 0 < ttft < stored[-1][5]
    for path in tmp_path.iterdir():
        assert b"SECRET-PROMPT" not in path.read_bytes(), path


def test_the_exporter_retries_until_the_receiver_is_back(emulator: EmulatorServer, tmp_path: Path) -> None:
    """The exporter's own retry on 503 ends in one stored row per call (here: the database is a folder
    at first, then becomes writable)."""
    db = tmp_path / "late.duckdb"
    db.mkdir()
    with OtlpServer(db, "salt", OtlpOptions(port=0, linger_s=0.0)) as server:
        import threading

        def fix() -> None:
            while server.receiver.stats.refused_storage == 0:
                threading.Event().wait(0.02)
            db.rmdir()

        fixer = threading.Thread(target=fix)
        fixer.start()
        said = run_client("openai-v2", server.endpoint, emulator)
        fixer.join(timeout=30)
        assert server.receiver.stats.refused_storage >= 1
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT input_tokens, output_tokens FROM usage ORDER BY ts").fetchall()
    assert stored == [(s[1], s[2]) for s in said]
