"""The OpenTelemetry Collector's ClickHouse exporter, as far as the tests need it: its own table DDL
(verbatim, tests/data/otel/) and its way of writing a span (`exporter_traces.go`, `pushTraceData`)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

from models.genai_spans import Span
from storage.otel_traces import lit

DATA = Path(__file__).parent.parent / "data" / "otel"


def traces_table_ddl(name: str = "otel_traces") -> str:
    """The exporter's CREATE TABLE as it renders it with its defaults: no cluster, `MergeTree()`, no TTL."""
    return (DATA / "traces_table.sql").read_text() % (name, "", "MergeTree()", "")


def _insert_head(name: str) -> str:
    template = (DATA / "traces_insert.sql").read_text()
    return template[: template.index("VALUES")] % name


def as_string(value: object) -> str:
    """Go's `pcommon.Value.AsString()` (pdata `value.go`), with which the exporter fills its maps: ints in
    decimal, doubles as ES6 numbers (`float64AsString`: fixed notation unless below 1e-6 or from 1e21 on,
    exponent without a leading zero), bools as true/false, bytes in base64, lists and maps as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            shown = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
            return f"json: unsupported value: {shown}"
        magnitude = abs(value)
        if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
            mantissa, exponent = repr(value).split("e") if "e" in repr(value) else (repr(value), "0")
            sign = "-" if exponent.startswith("-") else "+"
            return f"{mantissa.removesuffix('.0')}e{sign}{int(exponent.lstrip('+-'))}"
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def _map(attributes: Iterable[tuple[str, object]]) -> str:
    return "{" + ", ".join(f"{lit(k)}: {lit(as_string(v))}" for k, v in attributes) + "}"


def _time(unix_nano: int) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({unix_nano}))"


def insert_spans(spans: Sequence[Span], table: str = "otel_traces") -> str:
    """One INSERT of `spans` in the exporter's column order with the values it writes for each."""
    rows = []
    for span in spans:
        resource = dict(span.resource)
        service = resource.get("service.name")
        events = span.events
        values = [
            _time(span.start_unix_nano),
            lit(span.trace_id),
            lit(span.span_id),
            "''",  # ParentSpanId
            "''",  # TraceState
            lit(span.name),
            lit(span.kind.capitalize()),  # ptrace.SpanKind.String(): "Client", "Internal", ...
            lit(as_string(service) if service is not None else ""),
            _map(resource.items()),
            lit(span.scope),
            "''",  # ScopeVersion
            _map(span.attributes.items()),
            str((span.end_unix_nano - span.start_unix_nano) % 2**64),  # pcommon.Timestamp arithmetic (uint64)
            lit("Error" if span.error else "Unset"),  # ptrace.StatusCode.String()
            "''",  # StatusMessage
            "[" + ", ".join(_time(e.time_unix_nano) for e in events) + "]",
            "[" + ", ".join(lit(e.name) for e in events) + "]",
            "[" + ", ".join("map()" for _ in events) + "]",
            "[]",
            "[]",
            "[]",
            "[]",
        ]
        rows.append("(" + ", ".join(values) + ")")
    return _insert_head(table) + "VALUES\n" + ",\n".join(rows)
