"""The compiled scan of protobuf requests (`collectors.otlp.wire`) against the reference path (upb and
`models.genai_spans.usage_from_span`): for any request, the same records, byte for byte, the same refused
and ignored spans, and the same bodies refused as undecodable."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collectors.otlp.decode import UndecodableBody, decode_body, spans_of
from collectors.otlp.wire import RECORD, SPAN_DOUBT, WirePlan, _utf8_ok, scan
from collectors.otlp.writer import Prepared, SpanBatcher
from models.genai_spans import ATTRIBUTES_READ, FIELDS, FIRST_TOKEN_EVENTS, PROVIDER_ALIASES, SDK_NAME
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of
from tests.collectors.otlp_support import any_value as _plain

ATTRIBUTION = {"team": "service.name", "project": "deployment.environment", "user": "gen_ai.request.model"}
KEYS = [
    *sorted(ATTRIBUTES_READ | {SDK_NAME, "service.name", "deployment.environment"}),
    "input.value",
    "http.request.method",
    "server.port",
    "gen_ai.response.finish_reasons",
]
TEXTS = [
    "chat",
    "embeddings",
    "EMBEDDING",
    "llm",
    "LLM",
    "completion",
    "invoke_agent",
    "openai",
    "OpenAI",
    " anthropic ",
    "openlit",
    "AWS",
    "gpt-4o",
    "",
    "  ",
    "12",
    'x\ty"z\\',
    "\x01ctl\x1f",
    "caf\u00e9",
    "embeddıng",
    "\u2003gpt\u2003",
    *PROVIDER_ALIASES,
]


def any_value(draw: st.DrawFn, depth: int = 0) -> AnyValue:
    out = AnyValue()
    kind = draw(
        st.sampled_from(["str", "str", "int", "int", "double", "bool", "bytes", "array", "kv", "none"])
    )
    if kind == "str":
        out.string_value = draw(st.sampled_from(TEXTS) | st.text(max_size=12))
    elif kind == "int":
        out.int_value = draw(
            st.sampled_from([0, 1, 300, 1200, -5, 2**62, -(2**63), 2**63 - 1, 9_007_199_254_739, 10**13])
            | st.integers(-(2**63), 2**63 - 1)
        )
    elif kind == "double":
        out.double_value = draw(
            st.sampled_from([0.0, -0.0, 1.0, 0.25, 1200.0, -3.0, math.inf, math.nan, 1e300, 2.0**62])
            | st.floats(allow_nan=True)
        )
    elif kind == "bool":
        out.bool_value = draw(st.booleans())
    elif kind == "bytes":
        out.bytes_value = draw(st.binary(max_size=4))
    elif kind == "array" and depth < 2:
        out.array_value.values.extend([any_value(draw, depth + 1) for _ in range(draw(st.integers(0, 2)))])
    elif kind == "kv" and depth < 2:
        out.kvlist_value.values.extend(
            [KeyValue(key="k", value=any_value(draw, depth + 1)) for _ in range(draw(st.integers(0, 2)))]
        )
    return out


COUNTS = {
    name
    for field in (
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
        "ttft_s",
    )
    for name in FIELDS[field]
}


def usual_value(draw: st.DrawFn, key: str) -> AnyValue:
    """A value of the type instrumentations give this attribute (counts: integers, mostly)."""
    if key in COUNTS:
        return _plain(
            draw(st.sampled_from([0, 7, 1024, -1, 2**61, 9_007_199_254_741]) | st.integers(0, 10**7))
        )
    return _plain(draw(st.sampled_from(TEXTS)))


def attributes(draw: st.DrawFn, llm: bool) -> list[KeyValue]:
    pairs: list[KeyValue] = []
    if llm:  # a plausible LLM span, then noise over it
        family = draw(
            st.sampled_from(
                [
                    llm_attributes(draw(st.integers(0, 10**6))),
                    openinference(),
                    openlit(),
                    {"gen_ai.operation.name": "chat"},
                ]
            )
        )
        pairs += [KeyValue(key=k, value=_plain(v)) for k, v in family.items() if draw(st.integers(0, 9)) > 0]
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(KEYS))
        pairs.append(
            KeyValue(key=key, value=usual_value(draw, key) if draw(st.integers(0, 3)) else any_value(draw))
        )
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    return pairs


def openinference() -> dict[str, object]:
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.provider": "openai",
        "llm.token_count.prompt": 40,
        "llm.token_count.completion": 7,
        "llm.token_count.prompt_details.cache_read": 10,
        "input.value": "a prompt that must never be stored",
    }


def openlit() -> dict[str, object]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read_input_tokens": 50,
        "gen_ai.usage.cache_creation_input_tokens": 5,
        "gen_ai.server.time_to_first_token": 0.4183,
    }


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource_spans = request.resource_spans.add()
        sdk = draw(st.sampled_from(["openlit", "opentelemetry", " openlit", None]))
        if sdk is not None:
            resource_spans.resource.attributes.add(key=SDK_NAME, value=_plain(sdk))
        if draw(st.booleans()):
            resource_spans.resource.attributes.add(key="service.name", value=_plain("checkout"))
        if draw(st.integers(0, 4)) == 0:
            resource_spans.resource.attributes.add(key="deployment.environment", value=any_value(draw))
        for _ in range(draw(st.integers(0, 2))):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = draw(
                st.sampled_from(["openlit.otel.tracing", "opentelemetry.x", "", "é"])
            )
            for _ in range(draw(st.integers(0, 4))):
                scope_spans.spans.append(span(draw))
    return request.SerializeToString()


def span(draw: st.DrawFn) -> Span:
    out = Span()
    out.trace_id = draw(st.sampled_from([os.urandom(16), b"", b"\x00\xff\x10"]))
    out.span_id = draw(st.sampled_from([os.urandom(8), b""]))
    start = draw(st.sampled_from([START_NS, 0, 1, 2**64 - 1]) | st.integers(0, 2**64 - 1))
    length = draw(st.sampled_from([900_000_000, 0, 1, 99, 100, 123_456_789, 10**15, -5]))
    out.start_time_unix_nano = start
    out.end_time_unix_nano = min(max(start + length, 0), 2**64 - 1)
    out.attributes.extend(attributes(draw, llm=draw(st.integers(0, 3)) > 0))
    for _ in range(draw(st.integers(0, 3))):
        event = out.events.add()
        event.name = draw(st.sampled_from([*sorted(FIRST_TOKEN_EVENTS), "exception"]))
        event.time_unix_nano = max(0, min(2**64 - 1, start + draw(st.integers(-(10**9), 10**16))))
    out.status.code = draw(st.sampled_from([0, 1, 2]))
    return out


Seen = tuple[list[tuple[int, dict[str, object]]], list[int], int, int]


def seen(prepared: Prepared) -> Seen:
    """What a prepared request holds, whichever path made its records (columns or JSON lines)."""
    return prepared.records(), prepared.no_usage, prepared.spans, prepared.ignored


def reference(batcher: SpanBatcher, body: bytes) -> Seen | str:
    try:
        request = decode_body(body, json_body=False, gzipped=False, limit=len(body) + 1)
    except UndecodableBody:
        return "undecodable"
    prepared = batcher.prepare(spans_of(request, batcher.wanted))
    assert prepared.columns is None
    return seen(prepared)


def fast(batcher: SpanBatcher, body: bytes) -> Seen | str:
    try:
        return seen(batcher.prepare_protobuf(body))
    except UndecodableBody:
        return "undecodable"


@pytest.fixture(scope="module")
def batcher() -> SpanBatcher:
    return SpanBatcher(ATTRIBUTION)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=requests())
def test_the_scan_gives_what_the_reference_gives(batcher: SpanBatcher, body: bytes) -> None:
    assert fast(batcher, body) == reference(batcher, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=requests(), seed=st.integers(0, 2**32), how=st.sampled_from(["flip", "cut", "insert", "unknown"]))
def test_damaged_or_extended_bytes_are_judged_as_upb_judges_them(
    batcher: SpanBatcher, body: bytes, seed: int, how: str
) -> None:
    rng = random.Random(seed)
    data = bytearray(body)
    at = rng.randrange(len(data) + 1)
    if how == "flip" and data:
        data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
    elif how == "cut":
        del data[at:]
    elif how == "insert":
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    else:  # an unknown field at the top (OTLP says: ignore it) or a length-delimited one in the first span
        data += rng.choice([b"\x78\x01", b"\xfa\x01\x00", b"\x98\x06\x05"])
    assert fast(batcher, bytes(data)) == reference(batcher, bytes(data))


def test_nested_unknown_fields_and_invalid_utf8_go_to_the_reference_path(batcher: SpanBatcher) -> None:
    span_bytes = request_of([llm_attributes(1)]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    with_unknown = span_bytes + b"\xa8\x06\x07"  # field 101, varint: unknown to this opentelemetry-proto
    scope = ScopeSpans()
    scope.scope.name = "s"
    body = _wrap(1, _wrap(2, scope.SerializeToString() + _wrap(2, with_unknown)))
    assert scan(body, batcher.plan) is None
    assert fast(batcher, body) == reference(batcher, body)
    assert isinstance(reference(batcher, body), tuple)
    bad_text = body.replace(b"gpt-4o-2024-08-06", b"gpt-4o-2024-08\xff\xfe")
    assert fast(batcher, bad_text) == reference(batcher, bad_text) == "undecodable"
    ExportTraceServiceRequest.FromString(body)  # the wrapping itself is well formed
    ResourceSpans.FromString(_wrap(2, scope.SerializeToString()))


# UTF-8 and not: ASCII (the pass without a branch per byte), multi-byte text, and each way to be invalid
UTF8_CASES = [
    b"",
    b"gpt-4o-mini" * 9,
    "caf\u00e9 \u2003 \U0001f600 \uffff \U0010ffff".encode(),
    b"x" * 70 + "\u00e9".encode(),  # a multi-byte character past many ASCII bytes
    b"\x80",  # a continuation byte alone
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xf0\x80\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf5\x80\x80\x80",
    b"ab\xe2\x82",  # cut short
    b"ab\xe2\x82\x41",  # a continuation that is not one
    b"\xff\xfe",
]


@pytest.mark.parametrize("text", UTF8_CASES)
def test_utf8_is_judged_as_python_judges_it(text: bytes) -> None:
    """The scan's UTF-8 check (upb's rule: no overlong forms, no surrogates, nothing past U+10FFFF: Python's
    strict decoder's), over the whole buffer and over a slice of a larger one."""
    try:
        text.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    padded = np.frombuffer(b"\xff" + text + b"\xff", dtype=np.uint8)
    assert _utf8_ok(np.frombuffer(text or b"\0", dtype=np.uint8), 0, len(text)) is valid
    assert _utf8_ok(padded, 1, 1 + len(text)) is valid


def _wrap(field: int, payload: bytes) -> bytes:
    """A length-delimited field holding payload."""
    tag = bytes([(field << 3) | 2])
    size = len(payload)
    varint = bytearray()
    while True:
        varint.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            return tag + bytes(varint) + payload


@pytest.mark.parametrize("family", [llm_attributes(7), openinference(), openlit()])
def test_the_usual_spans_of_each_family_need_no_reference(
    batcher: SpanBatcher, family: dict[str, object]
) -> None:
    body = request_of([family] * 3 + [{"http.request.method": "GET"}]).SerializeToString()
    scanned = scan(body, batcher.plan)
    assert scanned is not None
    assert scanned.verdicts.tolist() == [RECORD] * 3 + [0]
    assert SPAN_DOUBT not in scanned.verdicts
    assert fast(batcher, body) == reference(batcher, body)
    assert "never be stored" not in str(scanned.records.to_pylist())


def test_records_larger_than_the_first_buffer(batcher: SpanBatcher) -> None:
    """Texts longer than the first buffer of their column: the scan grows it and starts again."""
    long_model = "\x01" * 200_000
    body = request_of([llm_attributes(1, **{"gen_ai.response.model": long_model})] * 2).SerializeToString()
    scanned = scan(body, batcher.plan, room=1000)
    assert scanned is not None
    assert scanned.records.column("model").to_pylist() == [long_model] * 2
    assert fast(batcher, body) == reference(batcher, body)


def test_a_plan_follows_the_tables() -> None:
    plan = WirePlan.build({})
    assert plan.usable
    assert int(np.count_nonzero(plan.field_keys >= 0)) == sum(len(names) for names in FIELDS.values())


def test_keys_alike_at_both_ends_are_told_apart(batcher: SpanBatcher) -> None:
    """A key is found by its length and its first and last 8 bytes, then compared whole: an attribute whose
    key shares all three with a key read (and sits in its slot) is not taken for it, wherever it comes."""
    alike = {
        name[:8] + "#" * (len(name) - 16) + name[-8:]: 999_999 for name in ATTRIBUTES_READ if len(name) > 16
    }
    assert alike and not alike.keys() & ATTRIBUTES_READ
    before = request_of([{**alike, **llm_attributes(3)}]).SerializeToString()
    after = request_of([{**llm_attributes(3), **alike}]).SerializeToString()
    plain = fast(batcher, request_of([llm_attributes(3)]).SerializeToString())
    for body in (before, after):
        scanned = scan(body, batcher.plan)
        assert scanned is not None and scanned.verdicts.tolist() == [RECORD]  # no key seen twice
        assert fast(batcher, body) == reference(batcher, body) == plain
