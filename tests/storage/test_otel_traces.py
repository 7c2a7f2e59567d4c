"""`otel_traces` read as usage by ClickHouse itself (storage.otel_traces), in chdb, with the exporter's own
table: the same rows as the OTLP receiver's Python path, retries storing nothing new, no content read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.otlp.writer import SPEC, SpanBatcher
from models.genai_spans import (
    ATTRIBUTES_READ,
    FIELDS,
    FIRST_TOKEN_EVENTS,
    NO_USAGE_REASON,
    SDK_NAME,
    Span,
    SpanEvent,
    is_content_attribute,
    record_key,
)
from storage.clickhouse import ClickHouse, connect
from storage.normalise import IngestContext, Normaliser
from storage.otel_traces import (
    LINK_TABLE,
    REJECTS_TABLE,
    REJECTS_VIEW,
    USAGE_VIEW,
    Link,
    OtelTracesError,
    account,
    link_traces,
)
from storage.store import ClickHouseTarget
from tests.storage.otel_support import insert_spans, traces_table_ddl

COMPARED = (
    "record_key",
    "ts",
    "provider",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "ttft_ms",
    "latency_ms",
    "status",
    "service_tier",
    "team",
    "key_id",
)
ATTRIBUTION = {"team": "service.name", "key_id": "app.key"}
SECRET = "SECRET-PROMPT-do-not-store"
NOW = datetime.now(UTC).replace(tzinfo=None)


DATABASE = "otel"  # the test's own database in the session's chdb folder
TRACES = f"{DATABASE}.otel_traces"


@pytest.fixture(scope="module")
def clickhouse(chdb_folder: Path) -> Iterator[ClickHouse]:
    """A ClickHouse store (chdb) whose database the tests fill with the exporter's table."""
    connection = connect(ClickHouseTarget("chdb", database=DATABASE, path=chdb_folder))
    yield connection
    connection.command(f"DROP DATABASE IF EXISTS {DATABASE}")


def scalar(clickhouse: ClickHouse, sql: str) -> Any:
    return clickhouse.arrow(sql).column(0)[0].as_py()


def rows(clickhouse: ClickHouse, sql: str) -> list[dict[str, Any]]:
    return clickhouse.arrow(sql).to_pylist()


@pytest.fixture(scope="module")
def linked(clickhouse: ClickHouse) -> ClickHouse:
    """The exporter's table linked once (the property test empties the tables between examples)."""
    fresh(clickhouse)
    return clickhouse


def fresh(clickhouse: ClickHouse, attribution: Mapping[str, str] | None = ATTRIBUTION) -> Link:
    """Empty exporter table, usage, and links; the views linked anew."""
    for name in (USAGE_VIEW, REJECTS_VIEW):
        clickhouse.command(f"DROP VIEW IF EXISTS {DATABASE}.{name}")
    for name in ("otel_traces", REJECTS_TABLE, LINK_TABLE):
        clickhouse.command(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
    clickhouse.command(f"TRUNCATE TABLE {DATABASE}.usage")
    clickhouse.command(traces_table_ddl(TRACES))
    link = Link(database=DATABASE, attribution=attribution)
    assert link_traces(clickhouse, link) == "linked"
    return link


def stored(runner: ClickHouse) -> list[dict[str, Any]]:
    found = rows(runner, f"SELECT {', '.join(COMPARED)} FROM {DATABASE}.usage FINAL ORDER BY record_key")
    for row in found:
        row["ts"] = row["ts"].replace(tzinfo=None)
    return found


def rejected(runner: ClickHouse) -> dict[str, str]:
    return {
        r["record_key"]: r["reason"] for r in rows(runner, f"SELECT * FROM {DATABASE}.{REJECTS_TABLE} FINAL")
    }


def python_path(
    spans: Sequence[Span], attribution: Mapping[str, str]
) -> tuple[list[dict[str, Any]], set[str]]:
    """What `quotascope otlp` makes of the spans: usage_from_span, then the ingest's checks."""
    prepared = SpanBatcher(attribution).prepare(spans)
    keys = [record_key(s) for s in spans]
    refused = {keys[place] for place in prepared.no_usage}
    rows: list[dict[str, Any]] = []
    if prepared.places:
        normaliser = Normaliser()
        try:
            normalised = normaliser.normalise(
                SPEC,
                prepared.lines,
                IngestContext(salt="test", now=NOW),
                line_numbers=[place + 1 for place in prepared.places],
            )
        finally:
            normaliser.close()
        refused |= {keys[r.line_no - 1] for r in normalised.rejects}
        rows = [{k: row.get(k) for k in COMPARED} for row in normalised.rows.to_pylist()]
    return sorted(rows, key=lambda r: r["record_key"]), refused


# ------------------------------------------------------------------------------------------ spans

START = 1_765_000_000_123_456_789  # 2025-12-06T05:46:40.123456789Z


def chat_span(n: int, **attributes: object) -> Span:
    return Span(
        resource={"service.name": "checkout", "telemetry.sdk.name": "opentelemetry"},
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1200 + n,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "input.value": SECRET,
            "gen_ai.prompt.0.content": SECRET,
            **attributes,
        },
        name="chat gpt-4o",
        kind="client",
        start_unix_nano=START + n * 1_000_000_000,
        end_unix_nano=START + n * 1_000_000_000 + 900_000_000,
        trace_id=os.urandom(16).hex(),
        span_id=os.urandom(8).hex(),
        scope="opentelemetry.instrumentation.openai_v2",
    )


_PADDING = st.sampled_from(["", " ", "\t", "\xa0", "\u3000", "\n"])
_DIGITS = st.integers(0, 10**20).map(str)
COUNT = st.one_of(
    st.integers(-5, 2 * 10**8),
    st.tuples(_PADDING, st.sampled_from(["", "0", "00"]), _DIGITS, _PADDING).map("".join),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 10**6).map(float),
    st.booleans(),
    st.sampled_from(["", "abc", "-7", "1e3", "12.5", "٣"]),
)
TEXT = st.one_of(
    st.tuples(_PADDING, st.text("abcXYZ-_.:/ 0123456789é", max_size=12), _PADDING).map("".join),
    st.integers(0, 99),
)
PROVIDER = st.one_of(
    st.sampled_from(
        ["openai", "OpenAI", " Anthropic ", "aws.bedrock", "AZ.AI.OPENAI", "gcp.gemini", "deepseek"]
    ),
    TEXT,
)
SECONDS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 30),
    st.integers(-2, 30),
    st.sampled_from(["0.25", " 1.5 ", "-0.5", "x", "1e-3", ".5", "+2"]),
    st.booleans(),
)


GOOD: dict[str, st.SearchStrategy[object]] = {
    "input_tokens": st.integers(2000, 10**6),
    "output_tokens": st.one_of(st.integers(500, 10**5), st.integers(500, 10**5).map(str)),
    "cached_input_tokens": st.integers(0, 1000),
    "cache_write_tokens": st.one_of(st.integers(0, 1000), st.integers(0, 1000).map(float)),
    "reasoning_tokens": st.integers(0, 500),
    "model": st.sampled_from(["gpt-4o", "claude-sonnet-4", " deepseek-chat "]),
    "provider": st.sampled_from(["openai", "anthropic", " Anthropic ", "deepseek", "aws.bedrock"]),
    "service_tier": st.sampled_from(["flex", "default"]),
    "ttft_s": st.one_of(st.floats(0, 30), st.floats(0, 30).map(repr)),
    "operation": st.sampled_from(["chat", "embeddings"]),
}


@st.composite
def spans(draw: st.DrawFn, n: int) -> Span:
    """A span as any of the instrumentation families might write it: most of them well formed (every field
    under one of its names, counts that add up), the others anything at all."""
    attributes: dict[str, object] = {"input.value": SECRET, "gen_ai.prompt.0.content": SECRET}
    anything = {
        "input_tokens": COUNT,
        "output_tokens": COUNT,
        "cached_input_tokens": COUNT,
        "cache_write_tokens": COUNT,
        "reasoning_tokens": COUNT,
        "model": TEXT,
        "provider": PROVIDER,
        "service_tier": TEXT,
        "ttft_s": SECONDS,
        "operation": st.sampled_from(["chat", "embeddings", "text_completion", "invoke_agent", " chat "]),
        "openinference_kind": st.sampled_from(["LLM", "llm", "EMBEDDING", "AGENT", ""]),
        "request_type": st.sampled_from(["chat", "completion", "embedding", "workflow"]),
    }
    well_formed = draw(st.integers(0, 3)) > 0
    for field, strategy in anything.items():
        if well_formed and field in GOOD:
            attributes[draw(st.sampled_from(FIELDS[field]))] = draw(GOOD[field])
            if draw(st.integers(0, 5)) > 0:
                continue  # one field in six: a second name of it, with anything at all
        for name in draw(st.lists(st.sampled_from(FIELDS[field]), max_size=2, unique=True)):
            attributes[name] = draw(strategy)
    if draw(st.booleans()):
        attributes["gen_ai.response.id"] = f"resp-{n}" + draw(st.sampled_from(["", " "]))
    if draw(st.booleans()):
        attributes["app.key"] = draw(TEXT)
    resource: dict[str, object] = {"service.name": draw(st.sampled_from(["checkout", "search", " "]))}
    if draw(st.booleans()):
        resource["telemetry.sdk.name"] = draw(st.sampled_from(["openlit", "opentelemetry", " openlit "]))
    start = draw(st.integers(1_600_000_000 * 10**9, int(NOW.timestamp()) * 10**9))
    if draw(st.integers(0, 9)) == 0:  # a start no usage log can have
        start = draw(st.sampled_from([0, 1_500_000_000 * 10**9, int((NOW.timestamp() + 5 * 86400) * 1e9)]))
    duration = draw(st.one_of(st.integers(0, 60 * 10**9), st.integers(-(10**9), -1)))
    events = tuple(
        SpanEvent(name, start + offset)
        for name, offset in draw(
            st.lists(
                st.tuples(
                    st.sampled_from([*sorted(FIRST_TOKEN_EVENTS), "other"]),
                    st.integers(-(10**8), 5 * 10**9),
                ),
                max_size=3,
            )
        )
    )
    return Span(
        resource=resource,
        attributes=attributes,
        name="llm call",
        kind=draw(st.sampled_from(["client", "internal"])),
        start_unix_nano=start,
        end_unix_nano=start + duration,
        trace_id=os.urandom(16).hex(),
        span_id=os.urandom(8).hex(),
        events=events,
        scope=draw(st.sampled_from(["openlit.otel.tracing", "opentelemetry.instrumentation.openai_v2", ""])),
        error=draw(st.integers(0, 4)) == 0,
    )


@st.composite
def span_batches(draw: st.DrawFn) -> list[Span]:
    return [draw(spans(n)) for n in range(draw(st.integers(1, 12)))]


# ------------------------------------------------------------------------------------------ tests


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=span_batches())
def test_clickhouse_maps_random_spans_exactly_as_the_receiver_does(
    linked: ClickHouse, batch: list[Span]
) -> None:
    for table in ("otel_traces", "usage", REJECTS_TABLE):
        linked.command(f"TRUNCATE TABLE {DATABASE}.{table}")
    clickhouse = linked
    clickhouse.command(insert_spans(batch, TRACES))
    expected_rows, expected_refused = python_path(batch, ATTRIBUTION)
    assert stored(clickhouse) == expected_rows
    assert set(rejected(clickhouse)) == expected_refused


def test_a_retried_export_stores_nothing_new(clickhouse: ClickHouse) -> None:
    fresh(clickhouse)
    batch = [chat_span(n) for n in range(5)] + [chat_span(9, **{"gen_ai.usage.input_tokens": "x"})]
    clickhouse.command(insert_spans(batch, TRACES))
    first, first_rejects = stored(clickhouse), rejected(clickhouse)
    for _ in range(2):  # the exporter's retry_on_failure sends the same spans again
        clickhouse.command(insert_spans(batch, TRACES))
        clickhouse.command(insert_spans(batch[2:4], TRACES))
    assert stored(clickhouse) == first and len(first) == 5
    assert rejected(clickhouse) == first_rejects
    clickhouse.command(f"OPTIMIZE TABLE {DATABASE}.usage FINAL")
    assert (
        scalar(clickhouse, f"SELECT count() FROM {DATABASE}.usage") == 5
    )  # merged: one row per span on disk too


def test_spans_from_before_the_link_are_copied_once(clickhouse: ClickHouse) -> None:
    fresh(clickhouse)
    for name in (USAGE_VIEW, REJECTS_VIEW):
        clickhouse.command(f"DROP VIEW {DATABASE}.{name}")
    clickhouse.command(f"TRUNCATE TABLE {DATABASE}.{LINK_TABLE}")
    clickhouse.command(
        insert_spans([chat_span(n) for n in range(3)], TRACES)
    )  # the Collector wrote these first
    assert scalar(clickhouse, f"SELECT count() FROM {DATABASE}.usage") == 0
    link = Link(database=DATABASE, attribution=ATTRIBUTION)
    assert link_traces(clickhouse, link) == "linked"
    clickhouse.command(
        insert_spans([chat_span(n) for n in range(3, 5)], TRACES)
    )  # then the views carry new ones
    assert link_traces(clickhouse, link) == "already linked"
    assert scalar(clickhouse, f"SELECT count() FROM {DATABASE}.usage") == 5
    clickhouse.command(f"TRUNCATE TABLE {DATABASE}.{LINK_TABLE}")  # as if killed before the copy was recorded
    assert link_traces(clickhouse, link) == "linked"
    assert scalar(clickhouse, f"SELECT count() FROM {DATABASE}.usage FINAL") == 5


def test_without_the_exporters_table_nothing_is_created(clickhouse: ClickHouse) -> None:
    fresh(clickhouse)
    clickhouse.command(f"DROP VIEW {DATABASE}.{USAGE_VIEW}")
    clickhouse.command(f"DROP VIEW {DATABASE}.{REJECTS_VIEW}")
    clickhouse.command(f"DROP TABLE {TRACES}")
    assert link_traces(clickhouse, Link(database=DATABASE)) == "no otel_traces"
    views = f"SELECT count() FROM system.tables WHERE database = '{DATABASE}' AND name LIKE 'quotascope_%'"
    assert scalar(clickhouse, views) == 0


def test_an_llm_span_without_counts_is_explained_and_an_other_span_ignored(clickhouse: ClickHouse) -> None:
    fresh(clickhouse)
    no_counts = replace(
        chat_span(1), attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    )
    http = replace(chat_span(3), attributes={"http.request.method": "POST"})
    failed = replace(no_counts, span_id="0" * 16, error=True)  # a failed call: nothing to count, no reject
    fraction = chat_span(2, **{"gen_ai.usage.output_tokens": 12.5})
    clickhouse.command(insert_spans([no_counts, http, failed, fraction], TRACES))
    reasons = rejected(clickhouse)
    assert reasons[record_key(no_counts)] == NO_USAGE_REASON
    assert reasons[record_key(fraction)] == 'output token count is "12.5", not a whole number'
    assert len(reasons) == 2 and stored(clickhouse) == []


def test_content_attributes_never_reach_clickhouse_tables(clickhouse: ClickHouse) -> None:
    link = fresh(clickhouse)
    odd = "a count holding some words, not digits"
    batch = [chat_span(n, **{"gen_ai.usage.input_tokens": odd if n == 2 else 10}) for n in range(4)]
    clickhouse.command(insert_spans(batch, TRACES))
    sql = "\n".join(link.views_ddl() + link.backfill_sql())
    read = set(re.findall(r"(?:Span|Resource)Attributes\['([^']*)'\]", sql))
    assert read == ATTRIBUTES_READ | {SDK_NAME, *ATTRIBUTION.values()}  # only what the mapping names
    assert not any(is_content_attribute(name) for name in read)
    assert "Events.Attributes" not in sql and "StatusMessage" not in sql
    for table in ("usage", REJECTS_TABLE):
        text = scalar(clickhouse, f"SELECT toString(groupArray(tuple(*))) FROM {DATABASE}.{table}")
        assert SECRET not in text
    # a count holding text is quoted in its reason, cut to 24 characters, as the ingest does
    assert (
        rejected(clickhouse)[record_key(batch[2])] == f'input token count is "{odd[:24]}", not a whole number'
    )
    with pytest.raises(OtelTracesError, match="prompts or answers"):
        Link(database=DATABASE, attribution={"team": "gen_ai.prompt.0.content"}).views_ddl()
    with pytest.raises(OtelTracesError, match="salted hash"):
        Link(database=DATABASE, attribution={"user": "enduser.id"}).views_ddl()


def test_every_llm_span_row_is_accounted_for(clickhouse: ClickHouse) -> None:
    link = fresh(clickhouse)
    good = [chat_span(n) for n in range(4)]
    bad = chat_span(7, **{"gen_ai.usage.cache_read.input_tokens": 5000})  # more cached than the input
    other = replace(chat_span(8), attributes={"db.system": "postgresql"})
    clickhouse.command(insert_spans([*good, bad, other], TRACES))
    clickhouse.command(insert_spans(good[:2], TRACES))  # a retry
    counted = account(clickhouse, link)
    assert (counted.llm_span_rows, counted.stored, counted.duplicates, counted.rejected) == (7, 4, 2, 1)
    assert counted.balanced
    assert counted.reasons == (
        ("cached (5000) and cache-write (0) tokens exceed all prompt tokens (1207)", 1),
    )


def test_a_new_attribution_replaces_the_rows_only_when_asked(clickhouse: ClickHouse) -> None:
    fresh(clickhouse)
    clickhouse.command(insert_spans([chat_span(n) for n in range(3)], TRACES))
    other = Link(database=DATABASE, attribution={"team": "app.team"})
    with pytest.raises(OtelTracesError, match="relink"):
        link_traces(clickhouse, other)
    assert link_traces(clickhouse, other, relink=True) == "relinked"
    clickhouse.command(insert_spans([chat_span(3, **{"app.team": "search"})], TRACES))
    rows = stored(clickhouse)
    assert [r["team"] for r in rows if r["team"]] == ["search"] and len(rows) == 4
    assert link_traces(clickhouse, other) == "already linked"
