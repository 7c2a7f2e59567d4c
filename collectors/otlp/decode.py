"""OTLP/HTTP trace bodies -> `models.genai_spans.Span` values.

Bodies are `ExportTraceServiceRequest` messages, as binary protobuf or as OTLP's JSON encoding, optionally
gzip-compressed (OTLP specification, "OTLP/HTTP"). OTLP's JSON differs from protobuf's canonical JSON mapping
in two ways we undo before parsing: trace and span ids are hex (we accept base64 too), and enum values may be
integers. 64-bit integers arrive as strings, which the protobuf JSON parser reads. Unknown fields are ignored
as the specification asks.

No decoding error ever quotes the body: a parser's message may contain attribute values, i.e. prompts.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Collection, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from models.errors import InputError
from models.genai_spans import AttributeValue, Span, SpanEvent

__all__ = [
    "BodyTooLarge",
    "ExportTraceServiceRequest",
    "UndecodableBody",
    "decode_body",
    "encode_response",
    "spans_at",
    "spans_of",
]

_KINDS = {
    ProtoSpan.SPAN_KIND_UNSPECIFIED: "unspecified",
    ProtoSpan.SPAN_KIND_INTERNAL: "internal",
    ProtoSpan.SPAN_KIND_SERVER: "server",
    ProtoSpan.SPAN_KIND_CLIENT: "client",
    ProtoSpan.SPAN_KIND_PRODUCER: "producer",
    ProtoSpan.SPAN_KIND_CONSUMER: "consumer",
}


class UndecodableBody(InputError):
    """The body is not an ExportTraceServiceRequest in the encoding its Content-Type names (HTTP 400)."""


class BodyTooLarge(InputError):
    """The body, or what it decompresses to, is over the receiver's limit (HTTP 413)."""


def inflate(body: bytes, limit: int) -> bytes:
    """A gzip body decompressed, refusing more than `limit` bytes out (a small bomb stays small)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise UndecodableBody("the body is not valid gzip") from e
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"the body decompresses to more than {limit:,} bytes")
    if not inflater.eof:
        raise UndecodableBody("the gzip body is cut short")
    return out


def decode_body(body: bytes, *, json_body: bool, gzipped: bool, limit: int) -> ExportTraceServiceRequest:
    if gzipped:
        body = inflate(body, limit)
    request = ExportTraceServiceRequest()
    if not json_body:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError) as e:
            raise UndecodableBody("the body is not a protobuf ExportTraceServiceRequest") from e
        return request
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UndecodableBody("the body is not JSON (or nests deeper than any OTLP request)") from e
    if not isinstance(document, dict):
        raise UndecodableBody("the body is not a JSON object (an ExportTraceServiceRequest)")
    try:
        _otlp_json_to_canonical(document)
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, KeyError, RecursionError) as e:
        raise UndecodableBody(
            "the body is JSON but not an OTLP ExportTraceServiceRequest (ids must be hex or base64, "
            "64-bit integers numbers or strings)"
        ) from e
    return request


def _otlp_json_to_canonical(document: dict[str, Any]) -> None:
    """Rewrite OTLP/JSON's hex ids as base64, in place, so protobuf's JSON parser accepts them."""
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                if not isinstance(span, dict):
                    continue
                _fix_ids(span, (("traceId", "trace_id", 16), ("spanId", "span_id", 8)))
                _fix_ids(span, (("parentSpanId", "parent_span_id", 8),))
                for link in _list(span, "links"):
                    if isinstance(link, dict):
                        _fix_ids(link, (("traceId", "trace_id", 16), ("spanId", "span_id", 8)))


def _list(node: Any, *names: str) -> list[Any]:
    if not isinstance(node, dict):
        return []
    for name in names:
        value = node.get(name)
        if isinstance(value, list):
            return value
    return []


def _fix_ids(node: dict[str, Any], fields: tuple[tuple[str, str, int], ...]) -> None:
    for camel, snake, size in fields:
        for key in (camel, snake):
            value = node.get(key)
            if isinstance(value, str) and value:
                node[key] = _id_as_base64(value, size)


def _id_as_base64(text: str, size: int) -> str:
    """An id given as hex (2 x `size` characters, as OTLP/JSON specifies) or base64, as base64."""
    if len(text) == 2 * size:
        try:
            return base64.b64encode(bytes.fromhex(text)).decode()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise ValueError("an id is neither hex nor base64") from e
    if len(raw) != size:
        raise ValueError(f"an id is {len(raw)} bytes, not {size}")
    return text


def encode_response(rejected: int, message: str, *, json_body: bool) -> tuple[bytes, str]:
    """An ExportTraceServiceResponse (partial success when spans were refused) in the request's encoding."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if json_body:
        payload = json_format.MessageToDict(response) if (rejected or message) else {}
        return json.dumps(payload).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


# ------------------------------------------------------------------------------------------ spans


def attributes(pairs: Any, wanted: frozenset[str]) -> dict[str, AttributeValue]:
    """The attributes among `wanted`, converted (one pass; the others, content among them, are never read)."""
    return {kv.key: _value(kv.value) for kv in pairs if kv.key in wanted}


def _value(value: AnyValue) -> AttributeValue:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "bytes_value":
        return value.bytes_value
    if which == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return tuple((kv.key, _value(kv.value)) for kv in value.kvlist_value.values)
    return None


def spans_of(request: ExportTraceServiceRequest, wanted: frozenset[str]) -> Iterator[Span]:
    """Every span of a request with its scope's name, and of its and its resource's attributes those in
    `wanted` (what `models.genai_spans` reads, and the attributes `--attribute` names)."""
    for resource, scope, span in _walk(request, wanted):
        yield _span(resource, scope, span, wanted)


def spans_at(
    request: ExportTraceServiceRequest, wanted: frozenset[str], places: Collection[int]
) -> dict[int, Span]:
    """The spans at these places of the request (counted from 0 in request order), as `spans_of` gives
    them; the others are passed over without being converted."""
    out: dict[int, Span] = {}
    for place, (resource, scope, span) in enumerate(_walk(request, wanted)):
        if place in places:
            out[place] = _span(resource, scope, span, wanted)
    return out


def _walk(
    request: ExportTraceServiceRequest, wanted: frozenset[str]
) -> Iterator[tuple[dict[str, AttributeValue], str, ProtoSpan]]:
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes, wanted)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                yield resource, scope, span


def _span(resource: dict[str, AttributeValue], scope: str, span: ProtoSpan, wanted: frozenset[str]) -> Span:
    return Span(
        resource=resource,
        attributes=attributes(span.attributes, wanted),
        name=span.name,
        kind=_KINDS.get(span.kind, "unspecified"),
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=span.end_time_unix_nano,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        events=tuple(SpanEvent(e.name, e.time_unix_nano) for e in span.events),
        scope=scope,
        error=span.status.code == Status.STATUS_CODE_ERROR,
    )
