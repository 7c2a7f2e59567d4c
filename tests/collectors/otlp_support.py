"""Building OTLP trace requests for the receiver's tests and benchmark."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

START_NS = 1_765_000_000_000_000_000  # 2025-12-06T05:46:40Z


def any_value(value: object) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    else:
        out.string_value = str(value)
    return out


def key_values(attributes: Mapping[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def llm_attributes(n: int = 0, **extra: object) -> dict[str, object]:
    """A chat span's attributes as OpenTelemetry's own OpenAI instrumentation writes them."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": f"chatcmpl-{n:024d}",
        "gen_ai.usage.input_tokens": 1200 + n % 100,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.response.finish_reasons": "stop",
        "server.address": "api.openai.com",
        "server.port": 443,
        **extra,
    }


def request_of(
    spans: Sequence[Mapping[str, object]],
    *,
    resource: Mapping[str, object] | None = None,
    scope: str = "opentelemetry.instrumentation.openai_v2",
    ids: Sequence[tuple[bytes, bytes]] | None = None,
    start_ns: int = START_NS,
) -> ExportTraceServiceRequest:
    """One resource, one scope, a span per attribute mapping (1 s apart, each lasting 900 ms)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values(resource or {"service.name": "checkout"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    for i, attributes in enumerate(spans):
        span = scope_spans.spans.add()
        trace_id, span_id = ids[i] if ids else (os.urandom(16), os.urandom(8))
        span.trace_id, span.span_id = trace_id, span_id
        span.name = "chat gpt-4o"
        span.kind = Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano = start_ns + i * 1_000_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 900_000_000
        span.attributes.extend(key_values(attributes))
    return request
