"""The fast path of the OTLP receiver: protobuf request bytes -> usage records, compiled, no Python per span.

`ExportTraceServiceRequest.FromString` (upb, C) decodes a span in about 1 µs; building Python objects for
its attributes and applying `models.genai_spans.usage_from_span` to them took 20-30 µs. This module scans
the protobuf wire format itself, in one compiled pass (numba), and writes each LLM span's record into
columns (`record_schema`: what `SpanUsage.record()` holds, typed, None as NULL), from which Python makes an
Arrow table per request with no object per span; `storage.columnar` checks them.

The mapping is driven by the same tables as the reference (`FIELDS`, `CACHE_RULES`, `PROVIDER_ALIASES`, the
operation and event sets of `models.genai_spans`), compiled into arrays when a `WirePlan` is built; the
code here only knows the shape of `usage_from_span` (which field decides what), not attribute names.

It answers for what it is sure of and hands the rest to the reference path (`collectors.otlp.decode`):
- the whole request, when the bytes are anything but plainly well-formed for the schema (a malformed varint
  or length, invalid UTF-8 in a string field, an unknown field or a field with another wire type, a
  singular field given twice, nesting deeper than 64, a resource after its spans): upb then decides between
  400 and the reference mapping;
- one span, when an attribute it reads holds a value whose mapping is rare and subtle (a bool, array, map,
  bytes or empty value, a count or text given as another type, non-ASCII text, a key given twice, a
  duration past 2**53 ns, where a double's division may differ from Python's): that span alone goes through
  `usage_from_span`, whose JSON record the ingest's SQL checks (they say why an odd value is refused).
`tests/collectors/test_otlp_wire.py` checks on random requests that both paths give the same records.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from numba import njit
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from models.genai_spans import (
    CACHE_RULES,
    EMBEDDING_OPERATIONS,
    FIELDS,
    FIRST_TOKEN_EVENTS,
    INFERENCE_OPERATIONS,
    OPENINFERENCE_INFERENCE_KINDS,
    OPENLLMETRY_INFERENCE_TYPES,
    PROVIDER_ALIASES,
    SDK_NAME,
)

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

# The canonical fields the compiled mapping knows, in the order of its table rows. `FIELDS` must have
# exactly these (a field added there without a rule here disables the fast path: `WirePlan.usable`).
FIELD_ORDER = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "model",
    "provider",
    "response_id",
    "service_tier",
    "ttft_s",
    "operation",
    "openinference_kind",
    "request_type",
)
(
    F_INPUT,
    F_OUTPUT,
    F_CACHED,
    F_WRITE,
    F_REASONING,
    F_TOTAL,
    F_MODEL,
    F_PROVIDER,
    F_RESPONSE,
    F_TIER,
    F_TTFT,
    F_OPERATION,
    F_KIND,
    F_REQUEST_TYPE,
) = range(len(FIELD_ORDER))

# What `scan` says of a request, and of each span.
OK, DOUBT, NEED_ROOM = 0, 1, 2
IGNORED, RECORD, NO_USAGE, SPAN_DOUBT = 0, 1, 2, 3

# Field kinds in the schema table.
K_UNKNOWN, K_VARINT, K_FIXED64, K_FIXED32, K_STRING, K_BYTES, K_MESSAGE = range(7)
MAX_FIELD = 32
MAX_DEPTH = 64

# Where a message sits decides what is kept of it.
(
    R_NONE,
    R_REQUEST,
    R_RESOURCE_SPANS,
    R_RESOURCE,
    R_RESOURCE_KV,
    R_RESOURCE_VALUE,
    R_SCOPE_SPANS,
    R_SCOPE,
    R_SPAN,
    R_SPAN_KV,
    R_SPAN_VALUE,
    R_EVENT,
    R_STATUS,
) = range(13)

# An attribute value's type.
V_NONE, V_STR, V_INT, V_DOUBLE, V_OTHER = range(5)

# The record key of a span without a response id: otlp:<trace id>:<span id>.
_FRAGMENTS = ("otlp:", "ok", "error")  # and a span's status

_SCALAR_KINDS = {
    1: K_FIXED64,  # double
    3: K_VARINT,  # int64
    4: K_VARINT,  # uint64
    5: K_VARINT,  # int32
    6: K_FIXED64,  # fixed64
    7: K_FIXED32,  # fixed32
    8: K_VARINT,  # bool
    13: K_VARINT,  # uint32
    14: K_VARINT,  # enum
    9: K_STRING,
    11: K_MESSAGE,
    12: K_BYTES,
}


def _strings(values: Sequence[str]) -> tuple[U8, I64]:
    """A set of strings as one UTF-8 blob and its offsets (what the compiled code compares against)."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded]) if encoded else []
    blob = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8).copy()
    return blob, offsets


@dataclass(frozen=True)
class Schema:
    """The request's message types as tables: a field's kind, child type, whether it repeats."""

    kinds: npt.NDArray[np.int8]
    children: npt.NDArray[np.int16]
    repeated: npt.NDArray[np.bool_]
    oneof: npt.NDArray[np.uint64]  # per type: the bits of fields in one oneof (a second one is a doubt)
    roles: npt.NDArray[np.int8]  # [parent role, field] -> child role

    @staticmethod
    def build() -> Schema:
        types: dict[str, int] = {}
        order: list[Any] = []

        def visit(descriptor: Any) -> None:
            name = descriptor.full_name
            if name in types:
                return
            types[name] = len(order)
            order.append(descriptor)
            for f in descriptor.fields:
                if f.message_type is not None:
                    visit(f.message_type)

        visit(ExportTraceServiceRequest.DESCRIPTOR)
        kinds = np.zeros((len(order), MAX_FIELD), dtype=np.int8)
        children = np.full((len(order), MAX_FIELD), -1, dtype=np.int16)
        repeated = np.zeros((len(order), MAX_FIELD), dtype=np.bool_)
        oneof = np.zeros(len(order), dtype=np.uint64)
        numbers: dict[tuple[str, str], int] = {}
        for t, descriptor in enumerate(order):
            for f in descriptor.fields:
                numbers[(descriptor.name, f.name)] = f.number
                if f.number >= MAX_FIELD:
                    continue  # never read: an unknown field to the scan, so a doubt
                kinds[t, f.number] = _SCALAR_KINDS.get(f.type, K_UNKNOWN)
                if f.message_type is not None:
                    children[t, f.number] = types[f.message_type.full_name]
                repeated[t, f.number] = f.is_repeated
                if f.containing_oneof is not None:
                    oneof[t] |= np.uint64(1 << f.number)
                if f.is_repeated and f.type not in (9, 11, 12):
                    kinds[t, f.number] = K_UNKNOWN  # packed scalars: none in OTLP traces; a doubt if met
        roles = np.zeros((13, MAX_FIELD), dtype=np.int8)
        for parent, message, field, child in (
            (R_REQUEST, "ExportTraceServiceRequest", "resource_spans", R_RESOURCE_SPANS),
            (R_RESOURCE_SPANS, "ResourceSpans", "resource", R_RESOURCE),
            (R_RESOURCE_SPANS, "ResourceSpans", "scope_spans", R_SCOPE_SPANS),
            (R_RESOURCE, "Resource", "attributes", R_RESOURCE_KV),
            (R_RESOURCE_KV, "KeyValue", "value", R_RESOURCE_VALUE),
            (R_SCOPE_SPANS, "ScopeSpans", "scope", R_SCOPE),
            (R_SCOPE_SPANS, "ScopeSpans", "spans", R_SPAN),
            (R_SPAN, "Span", "attributes", R_SPAN_KV),
            (R_SPAN, "Span", "events", R_EVENT),
            (R_SPAN, "Span", "status", R_STATUS),
            (R_SPAN_KV, "KeyValue", "value", R_SPAN_VALUE),
        ):
            roles[parent, numbers[(message, field)]] = child
        # the scalar fields read, by number, where the scan expects them
        expected = {
            ("InstrumentationScope", "name"): 1,
            ("Span", "trace_id"): 1,
            ("Span", "span_id"): 2,
            ("Span", "start_time_unix_nano"): 7,
            ("Span", "end_time_unix_nano"): 8,
            ("Status", "code"): 3,
            ("Event", "time_unix_nano"): 1,
            ("Event", "name"): 2,
            ("KeyValue", "key"): 1,
            ("AnyValue", "string_value"): 1,
            ("AnyValue", "int_value"): 3,
            ("AnyValue", "double_value"): 4,
        }
        for (message, field), number in expected.items():
            if numbers.get((message, field)) != number:
                raise RuntimeError(f"opentelemetry-proto moved {message}.{field}: the scan needs updating")
        return Schema(kinds, children, repeated, oneof, roles)


# The string sets the compiled code reads, in the order they are packed (`WirePlan.sets` bounds each).
(
    SET_KEYS,
    SET_OPERATIONS,
    SET_KINDS,
    SET_TYPES,
    SET_EMBEDDING,
    SET_EVENTS,
    SET_ALIAS_FROM,
    SET_ALIAS_TO,
    SET_RULES,
    SET_FRAGMENTS,
    SET_ATTRIBUTION,
) = range(11)


@dataclass(frozen=True)
class WirePlan:
    """`models.genai_spans`'s tables (and `--attribute`) as the arrays the compiled scan reads.

    Every string it compares or writes is in one blob (`blob`, `offsets`); set i is strings
    `sets[i]`..`sets[i + 1]`: the attribute keys read (their index is the key's id), the operation, kind and
    type sets, the provider aliases, the cache rules (3 strings each: provider, sdk, scope prefix), the
    record's JSON fragments and the attribution columns' keys. (Few arrays: each one passed to a compiled
    call costs reference counting, which showed as a third of the time.)"""

    usable: bool
    blob: U8
    offsets: I64
    sets: I64
    key_table: I64  # open addressing by `_key_hash`: slot -> key id, -1 empty
    key_lengths: npt.NDArray[np.bool_]  # which lengths a wanted key has (a quick no)
    field_keys: I64  # [field, alternative] -> key id, -1 past the last
    sdk_key: int
    rule_excludes: npt.NDArray[np.bool_]
    attribution_keys: I64
    attribution: tuple[str, ...]  # the attribution columns, in `attribution_keys`' order
    record_bytes: int  # the fewest bytes of a request a span with a record takes (its shortest count)
    schema: Schema

    @staticmethod
    def build(attribution: Mapping[str, str]) -> WirePlan:
        names: list[str] = []
        ids: dict[str, int] = {}

        def key(name: str) -> int:
            if name not in ids:
                ids[name] = len(names)
                names.append(name)
            return ids[name]

        usable = set(FIELDS) == set(FIELD_ORDER)
        width = max((len(v) for v in FIELDS.values()), default=1)
        field_keys = np.full((len(FIELD_ORDER), width), -1, dtype=np.int64)
        for row, field in enumerate(FIELD_ORDER):
            for column, name in enumerate(FIELDS.get(field, ())):
                field_keys[row, column] = key(name)
        sdk_key = key(SDK_NAME)
        attribution_keys = np.array([key(name) for name in attribution.values()], dtype=np.int64)
        encoded = [n.encode() for n in names]
        size = 1 << max(6, (4 * len(encoded)).bit_length())
        table = np.full(size, -1, dtype=np.int64)
        for i, e in enumerate(encoded):
            slot = int(_key_hash(np.frombuffer(e, dtype=np.uint8), 0, len(e))) & (size - 1)
            while table[slot] >= 0:
                slot = (slot + 1) & (size - 1)
            table[slot] = i
        lengths = np.zeros(1 << 16, dtype=np.bool_)
        for e in encoded:
            if len(e) < len(lengths):
                lengths[len(e)] = True
            else:
                usable = False
        rules: list[str] = []
        for entry in CACHE_RULES:
            rules += [entry.provider, entry.sdk, entry.scope_prefix]
            usable = usable and bool(entry.provider)
        groups: list[list[str]] = [
            names,
            sorted(INFERENCE_OPERATIONS),
            sorted(OPENINFERENCE_INFERENCE_KINDS),
            sorted(OPENLLMETRY_INFERENCE_TYPES),
            sorted(EMBEDDING_OPERATIONS),
            sorted(FIRST_TOKEN_EVENTS),
            list(PROVIDER_ALIASES),
            list(PROVIDER_ALIASES.values()),
            rules,
            list(_FRAGMENTS),
            list(attribution),
        ]
        sets = np.cumsum([0] + [len(g) for g in groups]).astype(np.int64)
        blob, offsets = _strings([text for group in groups for text in group])
        return WirePlan(
            usable=usable,
            blob=blob,
            offsets=offsets,
            sets=sets,
            key_table=table,
            key_lengths=lengths,
            field_keys=field_keys,
            sdk_key=sdk_key,
            rule_excludes=np.array(
                [entry.rule == "input_excludes_cache" for entry in CACHE_RULES], dtype=np.bool_
            ),
            attribution_keys=attribution_keys,
            attribution=tuple(attribution),
            # a count's KeyValue: its key (tag, length, text) and its value (tag, length, a varint or double)
            record_bytes=6
            + min(len(name.encode()) for name in (*FIELDS["input_tokens"], *FIELDS["output_tokens"])),
            schema=Schema.build(),
        )


# The record's columns, in `SpanUsage.record()`'s order: `RECORD_COLUMNS`, then the attribution columns.
# Counts (int64, NULL where the span gives none), times, and texts (ASCII, stripped as `_text` strips).
RECORD_COLUMNS = (
    "request_id",
    "ts",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "latency_ms",
    "ttft_ms",
    "status",
    "service_tier",
)
COUNT_COLUMNS = RECORD_COLUMNS[4:9]
# Rows of the compiled scan's integer columns (the counts first, in COUNT_COLUMNS' order), its float
# columns (NaN: none) and its text columns (the attribution columns after these).
C_TS, C_PRESENT = len(COUNT_COLUMNS), len(COUNT_COLUMNS) + 1
C_LATENCY, C_TTFT = 0, 1
T_ID, T_MODEL, T_PROVIDER, T_STATUS, T_TIER = range(5)
_TEXT_COLUMNS = ("request_id", "model", "provider", "status", "service_tier")


@functools.cache
def record_schema(attribution: tuple[str, ...]) -> pa.Schema:
    """The Arrow schema of the scan's records (and of any record in columns: `Prepared.columns`)."""
    types = {
        "ts": pa.timestamp("us"),
        "latency_ms": pa.float64(),
        "ttft_ms": pa.float64(),
        **{name: pa.int64() for name in COUNT_COLUMNS},
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in (*RECORD_COLUMNS, *attribution)])


@dataclass(frozen=True)
class Scanned:
    """What the scan made of one request: the records of its LLM spans with usage as columns (one row per
    `RECORD` verdict, in span order; `record_schema`), and each span's verdict (`RECORD`, `NO_USAGE`,
    `IGNORED`, `SPAN_DOUBT`)."""

    records: pa.Table
    verdicts: npt.NDArray[np.int8]


def scan(body: bytes, plan: WirePlan, *, room: int = 0) -> Scanned | None:
    """The records of a protobuf `ExportTraceServiceRequest`, or None when the request needs the reference
    path (see the module's docstring). `room`: the first text buffer's size per column (it grows)."""
    if not plan.usable:
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    room = room or len(body) + 65536
    n_text = len(_TEXT_COLUMNS) + len(plan.attribution_keys)
    # a span takes at least 2 bytes; a record's span holds a token count's attribute, key and value
    buffers = _Buffers.of_thread(len(body) // 2 + 1, len(body) // plan.record_bytes + 1, n_text, room)
    verdicts, ints, floats, offsets = buffers.verdicts, buffers.ints, buffers.floats, buffers.offsets
    while True:
        texts = buffers.texts_of(room)
        offsets[:, 0] = 0
        status, records, spans = _scan(data, plan, verdicts, ints, floats, texts, offsets)
        if status == OK:
            table = _records_table(plan, records, ints, floats, texts, offsets)
            return Scanned(table, verdicts[:spans].copy())
        if status == DOUBT:
            return None
        room *= 4


class _Buffers(threading.local):
    """The scan's output arrays, kept by each thread from one request to the next (fresh arrays of a few
    megabytes a request cost as much as the scan: the allocator maps and faults them in each time). What a
    scan returns is copied out of them."""

    def __init__(self) -> None:
        self.verdicts = np.empty(0, dtype=np.int8)
        self.ints = np.empty((C_PRESENT + 1, 0), dtype=np.int64)
        self.floats = np.empty((2, 0), dtype=np.float64)
        self.offsets = np.empty((0, 1), dtype=np.int64)
        self.texts = np.empty((0, 0), dtype=np.uint8)

    @classmethod
    def of_thread(cls, spans: int, records: int, n_text: int, room: int) -> _Buffers:
        buffers = _THREAD_BUFFERS
        if len(buffers.verdicts) < spans:
            buffers.verdicts = np.empty(spans, dtype=np.int8)
        if buffers.ints.shape[1] < records or buffers.offsets.shape[0] != 2 * n_text:
            buffers.ints = np.empty((C_PRESENT + 1, records), dtype=np.int64)
            buffers.floats = np.empty((2, records), dtype=np.float64)
            buffers.offsets = np.empty((2 * n_text, records + 1), dtype=np.int64)
        return buffers

    def texts_of(self, room: int) -> U8:
        n_text = self.offsets.shape[0] // 2
        if self.texts.shape[0] != n_text or self.texts.shape[1] < room:
            self.texts = np.empty((n_text, room), dtype=np.uint8)
        return self.texts


_THREAD_BUFFERS = _Buffers()


def _records_table(
    plan: WirePlan, n: int, ints: I64, floats: npt.NDArray[np.float64], texts: U8, offsets: I64
) -> pa.Table:
    """The scan's arrays as an Arrow table, each column made from its buffers (copied out of the thread's
    arrays, which the next scan reuses)."""
    n_text = texts.shape[0]

    def bitmap(valid: npt.NDArray[np.bool_]) -> tuple[pa.Buffer | None, int]:
        nulls = n - int(np.count_nonzero(valid))
        return (pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None), nulls

    def text(column: int) -> pa.Array:
        ends = offsets[column, : n + 1].astype(np.int32)
        validity, nulls = bitmap(offsets[n_text + column, :n].astype(np.bool_))
        data = pa.py_buffer(texts[column, : ends[-1]].tobytes())
        return pa.StringArray.from_buffers(n, pa.py_buffer(ends), data, validity, nulls)

    def fixed(kind: pa.DataType, values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None) -> pa.Array:
        validity, nulls = bitmap(valid) if valid is not None else (None, 0)
        return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(values.copy())], nulls)

    present = ints[C_PRESENT, :n]
    counts = [fixed(pa.int64(), ints[i, :n], (present & (1 << i)) != 0) for i in range(len(COUNT_COLUMNS))]
    latency, ttft = floats[C_LATENCY, :n], floats[C_TTFT, :n]
    columns = [
        text(T_ID),
        fixed(pa.timestamp("us"), ints[C_TS, :n], None),
        text(T_MODEL),
        text(T_PROVIDER),
        *counts,
        fixed(pa.float64(), latency, ~np.isnan(latency)),
        fixed(pa.float64(), ttft, ~np.isnan(ttft)),
        text(T_STATUS),
        text(T_TIER),
        *(text(len(_TEXT_COLUMNS) + i) for i in range(len(plan.attribution))),
    ]
    return pa.Table.from_arrays(columns, schema=record_schema(plan.attribution))


def _scan(
    data: U8,
    plan: WirePlan,
    verdicts: npt.NDArray[np.int8],
    ints: I64,
    floats: npt.NDArray[np.float64],
    texts: U8,
    offsets: I64,
) -> tuple[int, int, int]:
    s = plan.schema
    return _scan_compiled(
        data,
        verdicts,
        ints,
        floats,
        texts,
        offsets,
        s.kinds,
        s.children,
        s.repeated,
        s.oneof,
        s.roles,
        plan.blob,
        plan.offsets,
        plan.sets,
        plan.key_table,
        plan.key_lengths,
        plan.field_keys,
        plan.sdk_key,
        plan.rule_excludes,
        plan.attribution_keys,
    )


# ------------------------------------------------------------------------------------------ compiled

# The compiled code below the scan's entry (`_scan_compiled`, which allocates its working arrays) runs
# without numba's reference counting (its `_nrt` option off): each array passed from one compiled function
# to another otherwise costs an atomic increment and decrement, and that was most of the scan's time.
# (None of these functions allocates or raises, which is what reference counting would be needed for.)
_Function = TypeVar("_Function", bound=Callable[..., Any])


def _uncounted(**options: Any) -> Callable[[_Function], _Function]:
    return cast(Callable[[_Function], _Function], njit(**{"cache": True, "_nrt": False, **options}))


# Rows of the attribute slots: the span's (type, int value, start, length of a string) and its resource's.
S_TYPE, S_INT, S_OFF, S_LEN, R_TYPE, R_INT, R_OFF, R_LEN = range(8)
SPAN_ROWS, RESOURCE_ROWS = 0, 4


@_uncounted(inline="always")
def _is_ws(c: int) -> bool:
    return c in (9, 10, 11, 12, 13, 28, 29, 30, 31, 32)  # what str.strip() removes among ASCII


@_uncounted()
def _find(blob: U8, offsets: I64, lo: int, hi: int, data: U8, start: int, length: int) -> int:
    """The place of data[start:start+length] among strings lo..hi of the blob, or -1."""
    for i in range(lo, hi):
        a = offsets[i]
        if offsets[i + 1] - a != length:
            continue
        same = True
        for j in range(length):
            if blob[a + j] != data[start + j]:
                same = False
                break
        if same:
            return i - lo
    return -1


@_uncounted()
def _starts_with(blob: U8, offsets: I64, index: int, data: U8, start: int, length: int) -> bool:
    a = offsets[index]
    n = offsets[index + 1] - a
    if n > length:
        return False
    for j in range(n):  # noqa: SIM110 - compiled code: a loop, not a generator
        if blob[a + j] != data[start + j]:
            return False
    return True


@_uncounted()
def _utf8_ok(data: U8, start: int, end: int) -> bool:
    """Whether data[start:end] is UTF-8 as upb requires of a string field (no overlong forms, no
    surrogates, nothing above U+10FFFF)."""
    seen = 0  # first the usual case, ASCII, in a loop without a branch per byte (vectorised)
    for j in range(np.uint64(start), np.uint64(end)):  # unsigned: no check for negative indices
        seen |= data[j]
    if seen < 0x80:
        return True
    i = start
    while i < end:
        c = data[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        if c < 0xE0:
            need, lo, hi = 1, 0x80, 0xBF
        elif c < 0xF0:
            need = 2
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        else:
            need = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        if i + need >= end:
            return False
        second = data[i + 1]
        if second < lo or second > hi:
            return False
        for j in range(2, need + 1):
            if data[i + j] < 0x80 or data[i + j] > 0xBF:
                return False
        i += need + 1
    return True


@_uncounted()
def _put_string(out: U8, o: int, blob: U8, offsets: I64, index: int) -> int:
    for j in range(offsets[index], offsets[index + 1]):
        out[o] = blob[j]
        o += 1
    return o


@_uncounted()
def _exact_ms(nanos: np.uint64) -> bool:
    """Whether nanos / 1e6 in compiled code is Python's `int / 1e6` (true division, correctly rounded): it is
    while the nanoseconds are exact as a double."""
    return bool(nanos < np.uint64(1 << 53))


@_uncounted()
def _put_text(texts: U8, offsets: I64, column: int, r: int, data: U8, start: int, length: int) -> None:
    """Text `column` of record r: data[start:start+length] (room checked before)."""
    o = offsets[column, r]
    for j in range(length):
        texts[column, o + j] = data[start + j]
    offsets[column, r + 1] = o + length
    offsets[texts.shape[0] + column, r] = 1


@_uncounted()
def _put_null(texts: U8, offsets: I64, column: int, r: int) -> None:
    offsets[column, r + 1] = offsets[column, r]
    offsets[texts.shape[0] + column, r] = 0


@_uncounted()
def _put_hex(out: U8, o: int, data: U8, start: int, length: int) -> int:
    for j in range(start, start + length):
        c = data[j]
        high = c >> 4
        low = c & 15
        out[o] = 48 + high if high < 10 else 87 + high
        out[o + 1] = 48 + low if low < 10 else 87 + low
        o += 2
    return o


@_uncounted(inline="always")
def _word(data: U8, start: int, length: int) -> np.uint64:
    """Up to 8 bytes from `start` as one little-endian word."""
    value = np.uint64(0)
    for j in range(min(length, 8)):
        value |= np.uint64(data[start + j]) << np.uint64(8 * j)
    return value


@_uncounted()
def _key_hash(data: U8, start: int, length: int) -> np.uint64:
    """An attribute key's hash from its length and its first and last 8 bytes: three words, not a multiply
    per byte (FNV over every byte of every key was a tenth of the scan). Keys alike at both ends only
    share a slot: `_key_id` compares the bytes."""
    head = _word(data, start, length)
    tail = _word(data, start + length - 8, 8) if length > 8 else np.uint64(0)
    h = (head ^ np.uint64(length)) * np.uint64(0x9E3779B97F4A7C15)
    h = (h ^ (h >> np.uint64(31)) ^ tail) * np.uint64(0xC2B2AE3D27D4EB4F)
    return h ^ (h >> np.uint64(29))


@_uncounted()
def _key_id(data: U8, start: int, length: int, blob: U8, offsets: I64, table: I64) -> int:
    mask = len(table) - 1
    slot = np.int64(_key_hash(data, start, length) & np.uint64(mask))
    while True:
        k = table[slot]
        if k < 0:
            return -1
        a = offsets[k]
        if offsets[k + 1] - a == length:
            same = True
            for j in range(length):
                if blob[a + j] != data[start + j]:
                    same = False
                    break
            if same:
                return int(k)
        slot = (slot + 1) & mask


@_uncounted()
def _varint(data: U8, pos: int, end: int) -> tuple[bool, np.uint64, int]:
    """(ok, value, next position) of the varint at pos; not ok past `end` or over 64 bits."""
    value = np.uint64(0)
    shift = 0
    while True:
        if pos >= end or shift > 63:
            return False, value, pos
        b = int(data[pos])
        pos += 1
        if shift == 63 and b > 1:
            return False, value, pos
        value |= np.uint64(b & 0x7F) << np.uint64(shift)
        if b < 0x80:
            return True, value, pos
        shift += 7


@njit(cache=True, nogil=True)  # requests are scanned on worker threads: two at once on two cores
def _scan_compiled(
    data: U8,
    verdicts: npt.NDArray[np.int8],
    ints: I64,
    floats: npt.NDArray[np.float64],
    texts: U8,
    text_offsets: I64,
    kinds: npt.NDArray[np.int8],
    children: npt.NDArray[np.int16],
    repeated: npt.NDArray[np.bool_],
    oneof: npt.NDArray[np.uint64],
    roles: npt.NDArray[np.int8],
    blob: U8,
    offsets: I64,
    sets: I64,
    key_table: I64,
    key_lengths: npt.NDArray[np.bool_],
    field_keys: I64,
    sdk_key: int,
    rule_excludes: npt.NDArray[np.bool_],
    attribution_keys: I64,
) -> tuple[int, int, int]:
    """The scan's working arrays, then `_walk` (compiled without numba's reference counting: every array
    handed from call to call inside it cost two atomic operations, most of the scan's time)."""
    n_keys = sets[SET_KEYS + 1] - sets[SET_KEYS]
    ends = np.empty(MAX_DEPTH + 1, dtype=np.int64)
    types = np.empty(MAX_DEPTH + 1, dtype=np.int64)
    frame_roles = np.empty(MAX_DEPTH + 1, dtype=np.int64)
    seen = np.zeros(MAX_DEPTH + 1, dtype=np.uint64)
    slots = np.zeros((8, n_keys), dtype=np.int64)
    doubles = np.zeros(n_keys, dtype=np.float64)
    scratch = np.empty(64, dtype=np.uint8)
    work = np.zeros((3, len(attribution_keys)), dtype=np.int64)
    fbuf = np.empty(1, dtype=np.uint64)
    fview = fbuf.view(np.float64)
    # the span being read: scope name, trace id, span id (start, length each), then start, end, status
    # code, has events, has a first-token event, its time
    span = np.zeros(12, dtype=np.int64)
    return _walk(
        data,
        verdicts,
        ints,
        floats,
        texts,
        text_offsets,
        kinds,
        children,
        repeated,
        oneof,
        roles,
        blob,
        offsets,
        sets,
        key_table,
        key_lengths,
        field_keys,
        sdk_key,
        rule_excludes,
        attribution_keys,
        ends,
        types,
        frame_roles,
        seen,
        slots,
        doubles,
        scratch,
        work,
        fbuf,
        fview,
        span,
    )


@_uncounted(nogil=True)
def _walk(
    data: U8,
    verdicts: npt.NDArray[np.int8],
    ints: I64,
    floats: npt.NDArray[np.float64],
    texts: U8,
    text_offsets: I64,
    kinds: npt.NDArray[np.int8],
    children: npt.NDArray[np.int16],
    repeated: npt.NDArray[np.bool_],
    oneof: npt.NDArray[np.uint64],
    roles: npt.NDArray[np.int8],
    blob: U8,
    offsets: I64,
    sets: I64,
    key_table: I64,
    key_lengths: npt.NDArray[np.bool_],
    field_keys: I64,
    sdk_key: int,
    rule_excludes: npt.NDArray[np.bool_],
    attribution_keys: I64,
    ends: I64,
    types: I64,
    frame_roles: I64,
    seen: npt.NDArray[np.uint64],
    slots: I64,
    doubles: npt.NDArray[np.float64],
    scratch: U8,
    work: I64,
    fbuf: npt.NDArray[np.uint64],
    fview: npt.NDArray[np.float64],
    span: I64,
) -> tuple[int, int, int]:
    n = len(data)
    d = 0
    ends[0] = n
    types[0] = 0
    frame_roles[0] = R_REQUEST
    pos = 0
    records = 0
    spans = 0
    scopes_seen = False  # in this resource_spans
    spans_in_scope = False
    doubt = False
    # the key-value being read
    kv_off = kv_len = 0
    v_type = V_NONE
    v_int = np.int64(0)
    v_dbl = 0.0
    v_off = v_len = 0
    ev_time = np.uint64(0)
    en_off = en_len = 0

    while True:
        if pos == ends[d]:
            role = frame_roles[d]
            if d == 0:
                break
            d -= 1
            if role in (R_SPAN_KV, R_RESOURCE_KV):
                k = -1
                if kv_len < len(key_lengths) and key_lengths[kv_len]:
                    k = _key_id(data, kv_off, kv_len, blob, offsets, key_table)
                if k >= 0:
                    if role == R_SPAN_KV:
                        if slots[S_TYPE, k] != V_NONE or v_type in (V_NONE, V_OTHER):
                            doubt = True
                        else:
                            slots[S_TYPE, k] = v_type
                            slots[S_INT, k] = v_int
                            slots[S_OFF, k] = v_off
                            slots[S_LEN, k] = v_len
                            doubles[k] = v_dbl
                    else:
                        if slots[R_TYPE, k] != V_NONE or v_type != V_STR:
                            return DOUBT, 0, 0
                        slots[R_TYPE, k] = V_STR
                        slots[R_OFF, k] = v_off
                        slots[R_LEN, k] = v_len
            elif role == R_EVENT:
                span[9] = 1
                first = _find(blob, offsets, sets[SET_EVENTS], sets[SET_EVENTS + 1], data, en_off, en_len)
                if first >= 0 and (span[10] == 0 or ev_time < np.uint64(span[11])):
                    span[11] = np.int64(ev_time)
                    span[10] = 1
            elif role == R_SPAN:
                if doubt:
                    verdict = SPAN_DOUBT
                else:
                    verdict = _record(
                        data,
                        records,
                        ints,
                        floats,
                        texts,
                        text_offsets,
                        slots,
                        doubles,
                        span,
                        field_keys,
                        sdk_key,
                        blob,
                        offsets,
                        sets,
                        rule_excludes,
                        attribution_keys,
                        scratch,
                        work,
                    )
                    if verdict < 0:
                        return NEED_ROOM, 0, 0
                    if verdict == RECORD:
                        records += 1
                verdicts[spans] = verdict
                spans += 1
            continue

        # a field's tag
        ok, tag, pos = _varint(data, pos, ends[d])
        if not ok:
            return DOUBT, 0, 0
        number = int(tag >> np.uint64(3))
        wire = int(tag & np.uint64(7))
        t = types[d]
        if number <= 0 or number >= MAX_FIELD:
            return DOUBT, 0, 0
        kind = kinds[t, number]
        if kind == K_UNKNOWN:
            return DOUBT, 0, 0
        bit = np.uint64(1) << np.uint64(number)
        if not repeated[t, number]:
            if seen[d] & bit:
                return DOUBT, 0, 0
            if oneof[t] & bit and seen[d] & oneof[t]:
                return DOUBT, 0, 0
            seen[d] |= bit
        role = frame_roles[d]
        value_role = role in (R_SPAN_VALUE, R_RESOURCE_VALUE)
        if kind == K_VARINT:
            if wire != 0:
                return DOUBT, 0, 0
            ok, value, pos = _varint(data, pos, ends[d])
            if not ok:
                return DOUBT, 0, 0
            if role == R_STATUS and number == 3:
                span[8] = np.int64(np.int32(value & np.uint64(0xFFFFFFFF)))
            elif value_role:
                v_type = V_INT if number == 3 else V_OTHER
                v_int = np.int64(value)
        elif kind == K_FIXED64:
            if wire != 1 or pos + 8 > ends[d]:
                return DOUBT, 0, 0
            value = np.uint64(0)
            for j in range(7, -1, -1):
                value = (value << np.uint64(8)) | np.uint64(data[pos + j])
            pos += 8
            if role == R_SPAN:
                if number == 7:
                    span[6] = np.int64(value)
                elif number == 8:
                    span[7] = np.int64(value)
            elif role == R_EVENT and number == 1:
                ev_time = value
            elif value_role and number == 4:
                v_type = V_DOUBLE
                fbuf[0] = value
                v_dbl = fview[0]
        elif kind == K_FIXED32:
            if wire != 5 or pos + 4 > ends[d]:
                return DOUBT, 0, 0
            pos += 4
        else:
            if wire != 2:
                return DOUBT, 0, 0
            ok, size, pos = _varint(data, pos, ends[d])
            if not ok or size > np.uint64(ends[d] - pos):
                return DOUBT, 0, 0
            length = int(np.int64(size))
            if kind == K_STRING:
                if not _utf8_ok(data, pos, pos + length):
                    return DOUBT, 0, 0
                if role in (R_SPAN_KV, R_RESOURCE_KV):
                    kv_off = pos
                    kv_len = length
                elif value_role:
                    v_type = V_STR
                    v_off = pos
                    v_len = length
                elif role == R_SCOPE and number == 1:
                    span[0] = pos
                    span[1] = length
                elif role == R_EVENT and number == 2:
                    en_off = pos
                    en_len = length
                pos += length
            elif kind == K_BYTES:
                if role == R_SPAN and number == 1:
                    span[2] = pos
                    span[3] = length
                elif role == R_SPAN and number == 2:
                    span[4] = pos
                    span[5] = length
                elif value_role:
                    v_type = V_OTHER
                pos += length
            else:
                if value_role:
                    v_type = V_OTHER
                if d + 1 > MAX_DEPTH:
                    return DOUBT, 0, 0
                child = roles[role, number]
                d += 1
                ends[d] = pos + length
                types[d] = children[t, number]
                frame_roles[d] = child
                seen[d] = 0
                if child == R_RESOURCE_SPANS:
                    slots[R_TYPE, :] = V_NONE
                    scopes_seen = False
                elif child == R_RESOURCE:
                    if scopes_seen:
                        return DOUBT, 0, 0
                elif child == R_SCOPE_SPANS:
                    scopes_seen = True
                    span[0] = 0
                    span[1] = 0
                    spans_in_scope = False
                elif child == R_SCOPE:
                    if spans_in_scope:
                        return DOUBT, 0, 0
                elif child == R_SPAN:
                    spans_in_scope = True
                    slots[S_TYPE, :] = V_NONE
                    span[2:] = 0
                    doubt = False
                elif child in (R_SPAN_KV, R_RESOURCE_KV):
                    kv_off = 0
                    kv_len = 0
                    v_type = V_NONE
                elif child == R_EVENT:
                    ev_time = np.uint64(0)
                    en_off = 0
                    en_len = 0
    return OK, records, spans


# ------------------------------------------------------------------------------------------ one span

TEXT_NONE, TEXT, TEXT_DOUBT = 0, 1, 2


@_uncounted()
def _pick(field_keys: I64, field: int, slots: I64) -> int:
    """`_first`: the first of a field's attributes the span has (a value of some type), or -1."""
    for column in range(field_keys.shape[1]):
        k = field_keys[field, column]
        if k < 0:
            break
        if slots[S_TYPE, k] != V_NONE:
            return int(k)
    return -1


@_uncounted()
def _text(data: U8, k: int, slots: I64, rows: int) -> tuple[int, int, int]:
    """`_text` of a slot (the span's: rows 0, the resource's: rows 4): (TEXT_NONE | TEXT | TEXT_DOUBT,
    start, length), stripped as str.strip() strips (ASCII text only: other text, and numbers made text,
    are left to the reference path)."""
    if k < 0 or slots[rows + S_TYPE, k] == V_NONE:
        return TEXT_NONE, 0, 0
    if slots[rows + S_TYPE, k] != V_STR:
        return TEXT_DOUBT, 0, 0
    a = slots[rows + S_OFF, k]
    b = a + slots[rows + S_LEN, k]
    for j in range(a, b):
        if data[j] >= 0x80:
            return TEXT_DOUBT, 0, 0
    while a < b and _is_ws(data[a]):
        a += 1
    while b > a and _is_ws(data[b - 1]):
        b -= 1
    if a == b:
        return TEXT_NONE, 0, 0
    return TEXT, a, b - a


@_uncounted()
def _count(k: int, slots: I64, doubles: npt.NDArray[np.float64]) -> tuple[int, np.int64]:
    """`_count` of a slot: (0 none | 1 a count | 2 doubt, the count), kept far from int64's limits so sums
    stay exact."""
    if k < 0:
        return 0, np.int64(0)
    limit = np.int64(1) << np.int64(61)
    if slots[S_TYPE, k] == V_INT:
        v = slots[S_INT, k]
        if v > limit or v < -limit:
            return 2, np.int64(0)
        return 1, v
    if slots[S_TYPE, k] == V_DOUBLE:
        x = doubles[k]
        if math.isfinite(x) and x == math.floor(x) and abs(x) < 2.0**61:
            return 1, np.int64(x)
    return 2, np.int64(0)


@_uncounted()
def _record(
    data: U8,
    r: int,
    ints: I64,
    floats: npt.NDArray[np.float64],
    texts: U8,
    text_offsets: I64,
    slots: I64,
    doubles: npt.NDArray[np.float64],
    span: I64,
    field_keys: I64,
    sdk_key: int,
    blob: U8,
    offsets: I64,
    sets: I64,
    rule_excludes: npt.NDArray[np.bool_],
    attribution_keys: I64,
    scratch: U8,
    work: I64,
) -> int:
    """The verdict on one span (`RECORD`, `NO_USAGE`, `IGNORED`, `SPAN_DOUBT`; -1: out of room); a
    `RECORD`'s values are written as record r of the columns."""
    status = span[8]
    # classify
    op_state, op_a, op_n = _text(data, _pick(field_keys, F_OPERATION, slots), slots, SPAN_ROWS)
    kind_state, kind_a, kind_n = _text(data, _pick(field_keys, F_KIND, slots), slots, SPAN_ROWS)
    rt_state, rt_a, rt_n = _text(data, _pick(field_keys, F_REQUEST_TYPE, slots), slots, SPAN_ROWS)
    if op_state == TEXT_DOUBT or kind_state == TEXT_DOUBT or rt_state == TEXT_DOUBT:
        return SPAN_DOUBT
    has_tokens = _pick(field_keys, F_INPUT, slots) >= 0 or _pick(field_keys, F_OUTPUT, slots) >= 0
    if op_state == TEXT:
        inference = (
            _find(blob, offsets, sets[SET_OPERATIONS], sets[SET_OPERATIONS + 1], data, op_a, op_n) >= 0
        )
    elif kind_state == TEXT:
        if kind_n > len(scratch):
            return SPAN_DOUBT
        for j in range(kind_n):
            c = data[kind_a + j]
            scratch[j] = c - 32 if 97 <= c <= 122 else c
        inference = _find(blob, offsets, sets[SET_KINDS], sets[SET_KINDS + 1], scratch, 0, kind_n) >= 0
    elif rt_state == TEXT:
        inference = _find(blob, offsets, sets[SET_TYPES], sets[SET_TYPES + 1], data, rt_a, rt_n) >= 0
    else:
        inference = _pick(field_keys, F_PROVIDER, slots) >= 0 and has_tokens
    if not inference:
        return IGNORED
    if not has_tokens:
        return NO_USAGE if status != 2 else IGNORED

    # the provider, lower-cased and aliased, in scratch[:provider_n]
    p_state, p_a, p_n = _text(data, _pick(field_keys, F_PROVIDER, slots), slots, SPAN_ROWS)
    if p_state == TEXT_DOUBT or p_n > len(scratch):
        return SPAN_DOUBT
    provider_n = 0
    if p_state == TEXT:
        for j in range(p_n):
            c = data[p_a + j]
            scratch[j] = c + 32 if 65 <= c <= 90 else c
        provider_n = p_n
        alias = _find(blob, offsets, sets[SET_ALIAS_FROM], sets[SET_ALIAS_FROM + 1], scratch, 0, p_n)
        if alias >= 0:
            a = offsets[sets[SET_ALIAS_TO] + alias]
            provider_n = offsets[sets[SET_ALIAS_TO] + alias + 1] - a
            if provider_n > len(scratch):
                return SPAN_DOUBT
            for j in range(provider_n):
                scratch[j] = blob[a + j]

    in_state, input_tokens = _count(_pick(field_keys, F_INPUT, slots), slots, doubles)
    out_state, output_tokens = _count(_pick(field_keys, F_OUTPUT, slots), slots, doubles)
    ca_state, cached = _count(_pick(field_keys, F_CACHED, slots), slots, doubles)
    wr_state, written = _count(_pick(field_keys, F_WRITE, slots), slots, doubles)
    re_state, reasoning = _count(_pick(field_keys, F_REASONING, slots), slots, doubles)
    if in_state == 2 or out_state == 2 or ca_state == 2 or wr_state == 2 or re_state == 2:
        return SPAN_DOUBT

    # an embedding generates nothing
    if out_state == 0:
        emb_lo, emb_hi = sets[SET_EMBEDDING], sets[SET_EMBEDDING + 1]
        if op_state == TEXT:
            embedding = _find(blob, offsets, emb_lo, emb_hi, data, op_a, op_n) >= 0
        else:
            embedding = rt_state == TEXT and _find(blob, offsets, emb_lo, emb_hi, data, rt_a, rt_n) >= 0
        if not embedding and kind_state == TEXT:
            embedding = _find(blob, offsets, emb_lo, emb_hi, data, kind_a, kind_n) >= 0
        if embedding:
            out_state = 1
            output_tokens = np.int64(0)

    # the cache rule: the first entry for this provider whose sdk or scope prefix matches
    sdk_state, sdk_a, sdk_n = _text(data, sdk_key, slots, RESOURCE_ROWS)
    if sdk_state == TEXT_DOUBT:
        return SPAN_DOUBT
    excludes = False
    for i in range(len(rule_excludes)):
        first = sets[SET_RULES] + 3 * i
        if provider_n == 0 or _find(blob, offsets, first, first + 1, scratch, 0, provider_n) < 0:
            continue
        sdk_n_rule = offsets[first + 2] - offsets[first + 1]
        by_sdk = (
            sdk_n_rule > 0
            and sdk_state == TEXT
            and _find(blob, offsets, first + 1, first + 2, data, sdk_a, sdk_n) >= 0
        )
        by_scope = offsets[first + 3] > offsets[first + 2] and _starts_with(
            blob, offsets, first + 2, data, span[0], span[1]
        )
        if by_sdk or by_scope:
            excludes = rule_excludes[i]
            break
    if excludes and in_state == 1:
        if ca_state == 1:
            input_tokens += cached
        if wr_state == 1:
            input_tokens += written

    # texts, times
    rid_state, rid_a, rid_n = _text(data, _pick(field_keys, F_RESPONSE, slots), slots, SPAN_ROWS)
    m_state, m_a, m_n = _text(data, _pick(field_keys, F_MODEL, slots), slots, SPAN_ROWS)
    t_state, t_a, t_n = _text(data, _pick(field_keys, F_TIER, slots), slots, SPAN_ROWS)
    if rid_state == TEXT_DOUBT or m_state == TEXT_DOUBT or t_state == TEXT_DOUBT:
        return SPAN_DOUBT
    start = np.uint64(span[6])
    end = np.uint64(span[7])
    latency = end >= start and start > np.uint64(0)
    if latency and not _exact_ms(end - start):
        return SPAN_DOUBT
    ttft_kind = 0  # 0 none, 1 whole seconds (ttft_int ms), 2 from an event (ttft_ns), 3 a float (ttft_ms)
    ttft_ms = 0.0
    ttft_int = np.int64(0)
    ttft_ns = np.uint64(0)
    tk = _pick(field_keys, F_TTFT, slots)
    from_events = tk < 0
    if tk >= 0:
        if slots[S_TYPE, tk] == V_INT:
            seconds = slots[S_INT, tk]
            if seconds >= 0:
                if seconds >= np.int64(9_007_199_254_740):
                    return SPAN_DOUBT
                ttft_kind = 1
                ttft_int = seconds * np.int64(1000)
        elif slots[S_TYPE, tk] == V_DOUBLE:
            x = doubles[tk]
            if not math.isfinite(x):
                from_events = True
            elif not x < 0.0:
                ttft_kind = 3
                ttft_ms = x * 1000.0
                if not math.isfinite(ttft_ms):  # JSON has no infinity: the reference path's record says why
                    return SPAN_DOUBT
        else:
            return SPAN_DOUBT
    first_token = np.uint64(span[11])
    if from_events and span[9] == 1 and span[10] == 1 and first_token >= start:
        ttft_ns = first_token - start
        if not _exact_ms(ttft_ns):
            return SPAN_DOUBT
        ttft_kind = 2

    # attribution: the span's attribute, else the resource's
    n_attr = len(attribution_keys)
    for i in range(n_attr):
        k = attribution_keys[i]
        rows = SPAN_ROWS if slots[S_TYPE, k] != V_NONE else RESOURCE_ROWS
        state, a, length = _text(data, k, slots, rows)
        if state == TEXT_DOUBT:
            return SPAN_DOUBT
        work[0, i] = state
        work[1, i] = a
        work[2, i] = length

    id_n = rid_n if rid_state == TEXT else 6 + 2 * (span[3] + span[5])
    room = texts.shape[1]
    lengths = (id_n, m_n, provider_n, 5, t_n)
    for column in range(len(lengths)):
        if text_offsets[column, r] + lengths[column] > room:
            return -1
    for i in range(n_attr):
        if text_offsets[T_TIER + 1 + i, r] + work[2, i] > room:
            return -1

    # the record's columns (what `SpanUsage.record()` holds, None as NULL)
    if rid_state == TEXT:
        _put_text(texts, text_offsets, T_ID, r, data, rid_a, rid_n)
    else:  # otlp:<trace id>:<span id>, in hex
        row = texts[T_ID]
        o = _put_string(row, text_offsets[T_ID, r], blob, offsets, sets[SET_FRAGMENTS])
        o = _put_hex(row, o, data, span[2], span[3])
        row[o] = 58
        o = _put_hex(row, o + 1, data, span[4], span[5])
        text_offsets[T_ID, r + 1] = o
        text_offsets[texts.shape[0] + T_ID, r] = 1
    if m_state == TEXT:
        _put_text(texts, text_offsets, T_MODEL, r, data, m_a, m_n)
    else:
        _put_null(texts, text_offsets, T_MODEL, r)
    if provider_n:
        _put_text(texts, text_offsets, T_PROVIDER, r, scratch, 0, provider_n)
    else:
        _put_null(texts, text_offsets, T_PROVIDER, r)
    status_text = sets[SET_FRAGMENTS] + (2 if status == 2 else 1)
    o = _put_string(texts[T_STATUS], text_offsets[T_STATUS, r], blob, offsets, status_text)
    text_offsets[T_STATUS, r + 1] = o
    text_offsets[texts.shape[0] + T_STATUS, r] = 1
    if t_state == TEXT:
        _put_text(texts, text_offsets, T_TIER, r, data, t_a, t_n)
    else:
        _put_null(texts, text_offsets, T_TIER, r)
    for i in range(n_attr):
        if work[0, i] == TEXT:
            _put_text(texts, text_offsets, T_TIER + 1 + i, r, data, work[1, i], work[2, i])
        else:
            _put_null(texts, text_offsets, T_TIER + 1 + i, r)
    ints[0, r] = input_tokens
    ints[1, r] = output_tokens
    ints[2, r] = cached
    ints[3, r] = written
    ints[4, r] = reasoning
    ints[C_PRESENT, r] = (
        (in_state == 1)
        | (out_state == 1) << 1
        | (ca_state == 1) << 2
        | (wr_state == 1) << 3
        | (re_state == 1) << 4
    )
    ints[C_TS, r] = np.int64(start // np.uint64(1000))
    floats[C_LATENCY, r] = np.float64(end - start) / 1e6 if latency else np.nan
    if ttft_kind == 1:
        floats[C_TTFT, r] = np.float64(ttft_int)
    elif ttft_kind == 2:
        floats[C_TTFT, r] = np.float64(ttft_ns) / 1e6
    elif ttft_kind == 3:
        floats[C_TTFT, r] = ttft_ms
    else:
        floats[C_TTFT, r] = np.nan
    return RECORD
