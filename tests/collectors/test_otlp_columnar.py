"""The receiver's two checks agree: `storage.columnar` over the scan's columns gives the rows and reject
reasons `storage.normalise`'s statement gives over the same records as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.otlp.decode import decode_body, spans_of
from collectors.otlp.wire import RECORD_COLUMNS, record_schema
from collectors.otlp.writer import SPEC, SpanBatcher
from models.usage_record import MAX_TOKENS_PER_REQUEST
from storage.columnar import check_records, unsupported
from storage.normalise import IngestContext, Normalised, Normaliser
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of

NOW = datetime(2026, 1, 10, 12, 0, 0)
ATTRIBUTION = ("team", "project", "user", "key_id", "endpoint")

texts = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
counts = st.one_of(
    st.none(),
    st.integers(0, 5000),
    st.integers(-(2**61), 2**61),
    st.sampled_from([0, -1, MAX_TOKENS_PER_REQUEST, MAX_TOKENS_PER_REQUEST + 1, 10**18, -(10**18)]),
)
times = st.one_of(
    st.datetimes(datetime(1971, 1, 1), datetime(2027, 12, 31)),
    st.sampled_from(
        [datetime(2019, 12, 31, 23, 59, 59, 999999), datetime(2020, 1, 1), NOW + timedelta(days=2)]
    ),
    st.sampled_from([NOW + timedelta(days=2, microseconds=1), datetime(2554, 7, 21)]),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    """A record as the scan makes one (typed values), hostile where it can be."""
    record: dict[str, object] = {
        "request_id": draw(texts),
        "ts": draw(times),
        "model": draw(st.none() | texts),
        "provider": draw(st.none() | st.sampled_from(["openai", "anthropic", "deepseek"])),
        "input_tokens": draw(counts),
        "output_tokens": draw(counts),
        "cached_input_tokens": draw(counts),
        "cache_write_tokens": draw(counts),
        "reasoning_tokens": draw(counts),
        "latency_ms": draw(st.none() | st.floats(0, 1e9)),
        "ttft_ms": draw(st.none() | st.floats(0, 1e6)),
        "status": draw(st.sampled_from(["ok", "error"])),
        "service_tier": draw(st.none() | st.sampled_from(["default", "priority", "flex"])),
    }
    for column in ATTRIBUTION:
        record[column] = draw(st.none() | texts)
    return record


def as_line(record: dict[str, object]) -> str:
    """The JSON line the reference path writes for the record (`SpanUsage.record()`: no None values)."""
    shown = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items() if v is not None}
    return json.dumps(shown, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def normaliser() -> Iterator[Normaliser]:
    out = Normaliser()
    yield out
    out.close()


def both(normaliser: Normaliser, batch: list[dict[str, object]]) -> tuple[Normalised, Normalised]:
    context = IngestContext(salt="s3cret", now=NOW)
    numbers = np.arange(7, 7 + 3 * len(batch), 3, dtype=np.int64)
    data = "".join(as_line(r) + "\n" for r in batch).encode()
    by_sql = normaliser.normalise(SPEC, data, context, line_numbers=numbers.tolist())
    table = pa.Table.from_pylist(batch, schema=record_schema(ATTRIBUTION))
    by_columns = check_records(SPEC, table, numbers, context, normaliser.schema(SPEC, context))
    return by_sql, by_columns


def same(by_sql: Normalised, by_columns: Normalised) -> None:
    assert by_columns.rows.schema == by_sql.rows.schema
    assert by_columns.rows.to_pylist() == by_sql.rows.to_pylist()
    assert by_columns.rejects == by_sql.rejects


def test_the_receivers_spec_is_one_the_columnar_checks_apply_to_whole() -> None:
    assert unsupported(SPEC) == []
    assert RECORD_COLUMNS[:2] == ("request_id", "ts")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(records(), min_size=1, max_size=40))
def test_hostile_records_get_the_same_rows_and_reasons_either_way(
    normaliser: Normaliser, batch: list[dict[str, object]]
) -> None:
    by_sql, by_columns = both(normaliser, batch)
    same(by_sql, by_columns)


def test_every_reason_is_met_and_said_alike(normaliser: Normaliser) -> None:
    """One record per check, each failing it alone (and a good one): every reason both paths can give."""
    good: dict[str, object] = {
        "request_id": "chatcmpl-1",
        "ts": datetime(2025, 12, 6, 5, 46, 40, 123456),
        "model": "gpt-4o",
        "provider": "openai",
        "input_tokens": 100,
        "output_tokens": 50,
        "cached_input_tokens": 20,
        "cache_write_tokens": 10,
        "reasoning_tokens": 5,
        "latency_ms": 900.0,
        "ttft_ms": 418.29999999999995,
        "status": "ok",
        "service_tier": "default",
        "user": "alice",
        "team": "checkout",
    }
    bad = [
        {"input_tokens": None, "output_tokens": None},
        {"model": None},
        {"input_tokens": None},
        {"output_tokens": None},
        {"input_tokens": -3},
        {"output_tokens": MAX_TOKENS_PER_REQUEST + 1},
        {"cached_input_tokens": -(10**18)},
        {"cache_write_tokens": 10**18},
        {"reasoning_tokens": -1},
        {"cached_input_tokens": 95},
        {"reasoning_tokens": 51},
        {"ts": datetime(2019, 5, 1)},
        {"ts": datetime(2554, 1, 1)},
    ]
    batch = [good] + [{**good, "request_id": f"bad-{i}", **change} for i, change in enumerate(bad)]
    by_sql, by_columns = both(normaliser, batch)
    same(by_sql, by_columns)
    reasons = [r.reason for r in by_columns.rejects]
    assert len(set(reasons)) == len(bad) == len(reasons)
    assert by_columns.rows.num_rows == 1
    (row,) = by_columns.rows.to_pylist()
    assert row["user_hash"].startswith("u") and "alice" not in str(row)


def test_the_scan_and_the_reference_path_store_the_same_rows_and_reasons(normaliser: Normaliser) -> None:
    """Hostile spans through the receiver: the scan's columns and the reference path's JSON lines checked
    each their own way give the same rows and reasons."""
    spans = [
        llm_attributes(0),
        llm_attributes(1, **{"gen_ai.usage.input_tokens": -5}),
        llm_attributes(2, **{"gen_ai.usage.output_tokens": 2**60}),
        llm_attributes(3, **{"gen_ai.usage.cache_read.input_tokens": 5000}),
        llm_attributes(4, **{"gen_ai.usage.reasoning.output_tokens": 301}),
        {
            k: v
            for k, v in llm_attributes(5).items()
            if k not in ("gen_ai.response.model", "gen_ai.request.model")
        },
        {k: v for k, v in llm_attributes(6).items() if k != "gen_ai.usage.input_tokens"},
        llm_attributes(7, **{"user.id": "bob", "input.value": "never be stored"}),
    ]
    batcher = SpanBatcher({"team": "service.name", "user": "user.id"})
    context = IngestContext(salt="s3cret", now=NOW)
    schema = normaliser.schema(SPEC, context)
    for start in (START_NS, 1_500_000_000 * 10**9, 1_900_000_000 * 10**9):  # now, before 2020, the future
        body = request_of(spans, start_ns=start).SerializeToString()
        prepared = batcher.prepare_protobuf(body)
        assert prepared.columns is not None and not prepared.lines
        numbers = np.asarray(prepared.column_places, dtype=np.int64) + 1
        by_columns = check_records(SPEC, prepared.columns, numbers, context, schema)
        decoded = decode_body(body, json_body=False, gzipped=False, limit=len(body))
        request = batcher.prepare(spans_of(decoded, batcher.wanted))
        by_sql = normaliser.normalise(
            SPEC, request.lines, context, line_numbers=[p + 1 for p in request.places]
        )
        same(by_sql, by_columns)
        assert by_columns.rejects and "never be stored" not in str(by_columns)
