"""The GenAI span table: which spans are LLM calls, each family's names, the cache rule, no content read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import pytest

from models.genai_spans import (
    FIELDS,
    Span,
    SpanEvent,
    classify,
    is_content_attribute,
    usage_from_span,
)

START = 1_765_000_000_123_456_789  # 2025-12-06T05:46:40.123456789Z
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


def span(
    attributes: Mapping[str, object],
    *,
    resource: Mapping[str, object] | None = None,
    scope: str = "",
    duration_ms: float = 1500.0,
    events: tuple[SpanEvent, ...] = (),
    error: bool = False,
) -> Span:
    return Span(
        resource=resource or {"service.name": "checkout"},
        attributes=attributes,  # type: ignore[arg-type]
        name="chat gpt-4o",
        kind="client",
        start_unix_nano=START,
        end_unix_nano=START + int(duration_ms * 1e6),
        trace_id=TRACE,
        span_id=SPAN_ID,
        events=events,
        scope=scope,
        error=error,
    )


SEMCONV = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.usage.cache_creation.input_tokens": 0,
    "gen_ai.usage.reasoning.output_tokens": 120,
    "gen_ai.response.time_to_first_chunk": 0.25,
    "openai.response.service_tier": "flex",
}


def test_current_genai_conventions_map_to_the_canonical_record() -> None:
    usage = usage_from_span(span(SEMCONV), {"team": "service.name"})
    assert usage is not None
    assert usage.record() == {
        "request_id": "chatcmpl-1",  # the response id: the key an ingested log of the response has too
        "ts": "2025-12-06T05:46:40.123456",
        "model": "gpt-4o-2024-08-06",  # what served it, before what was asked for
        "provider": "openai",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cached_input_tokens": 1024,
        "cache_write_tokens": 0,
        "reasoning_tokens": 120,
        "latency_ms": 1500.0,
        "ttft_ms": 250.0,
        "status": "ok",
        "service_tier": "flex",
        "team": "checkout",
    }
    assert usage.rule == "input_includes_cache"
    assert usage.ts == datetime(2025, 12, 6, 5, 46, 40, 123456)


def test_without_a_response_id_the_span_ids_are_the_key() -> None:
    attributes = {k: v for k, v in SEMCONV.items() if k != "gen_ai.response.id"}
    usage = usage_from_span(span(attributes))
    assert usage is not None and usage.record_key == f"otlp:{TRACE}:{SPAN_ID}"


def test_deprecated_genai_names() -> None:
    usage = usage_from_span(
        span(
            {
                "gen_ai.system": "Anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.prompt_tokens": 50,
                "gen_ai.usage.completion_tokens": 7,
                "gen_ai.openai.response.service_tier": "default",
            }
        )
    )
    assert usage is not None
    assert (usage.provider, usage.model, usage.input_tokens, usage.output_tokens) == (
        "anthropic",
        "claude-sonnet-4-5",
        50,
        7,
    )
    assert usage.service_tier == "default"


def test_openllmetry_names_and_chunk_events_give_ttft() -> None:
    chunks = tuple(SpanEvent("gen_ai.content.completion.chunk", START + n * 10_000_000) for n in (4, 5, 6))
    usage = usage_from_span(
        span(
            {
                "gen_ai.system": "openai",
                "llm.request.type": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.prompt_tokens": 10,
                "gen_ai.usage.completion_tokens": 4,
                "gen_ai.usage.cache_read_input_tokens": 3,
                "llm.usage.reasoning_tokens": 2,
                "llm.usage.total_tokens": 14,
            },
            events=chunks,
        )
    )
    assert usage is not None
    assert (usage.cached_input_tokens, usage.reasoning_tokens, usage.total_tokens) == (3, 2, 14)
    assert usage.ttft_ms == pytest.approx(40.0)


def test_openinference_names_and_its_first_token_event() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.model_name": "gpt-4o",
        "llm.token_count.prompt": 100,
        "llm.token_count.completion": 20,
        "llm.token_count.prompt_details.cache_read": 64,
        "llm.token_count.prompt_details.cache_write": 16,
        "llm.token_count.completion_details.reasoning": 5,
        "input.value": "my secret prompt",
        "output.value": "the secret answer",
    }
    usage = usage_from_span(
        span(attributes, events=(SpanEvent("First Token Stream Event", START + 80_000_000),))
    )
    assert usage is not None
    record = usage.record()
    assert (record["input_tokens"], record["cached_input_tokens"], record["cache_write_tokens"]) == (
        100,
        64,
        16,
    )
    assert record["ttft_ms"] == pytest.approx(80.0)
    assert "secret" not in repr(record)


def test_openlit_anthropic_counts_cache_outside_the_input_and_is_normalised_once() -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 20,  # Anthropic's input_tokens: cache excluded
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read_input_tokens": 1000,
        "gen_ai.usage.cache_creation_input_tokens": 200,
        "gen_ai.server.time_to_first_token": 0.4,
    }
    openlit = usage_from_span(span(attributes, resource={"telemetry.sdk.name": "openlit"}))
    assert openlit is not None
    assert openlit.rule == "input_excludes_cache"
    assert (openlit.input_tokens, openlit.cached_input_tokens, openlit.cache_write_tokens) == (
        1220,
        1000,
        200,
    )
    assert openlit.ttft_ms == pytest.approx(400.0)
    # the same numbers from a family that already sums the cache into the input are taken as they are
    summed = dict(attributes, **{"gen_ai.usage.input_tokens": 1220})
    other = usage_from_span(span(summed, scope="opentelemetry.instrumentation.anthropic"))
    assert other is not None and other.rule == "input_includes_cache"
    assert other.input_tokens == 1220
    # OpenLIT reporting OpenAI follows OpenAI's convention (cached tokens inside prompt_tokens)
    openai = usage_from_span(
        span(dict(attributes, **{"gen_ai.system": "openai"}), resource={"telemetry.sdk.name": "openlit"})
    )
    assert openai is not None and openai.input_tokens == 20


@pytest.mark.parametrize(
    ("attributes", "verdict"),
    [
        ({"http.request.method": "POST", "url.full": "https://api.example/v1"}, "not_llm"),
        ({"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 500}, "not_llm"),
        ({"gen_ai.operation.name": "execute_tool", "gen_ai.usage.input_tokens": 5}, "not_llm"),
        ({"openinference.span.kind": "CHAIN", "llm.token_count.prompt": 500}, "not_llm"),
        ({"openinference.span.kind": "AGENT", "llm.token_count.prompt": 500}, "not_llm"),
        ({"llm.request.type": "rerank", "gen_ai.usage.input_tokens": 9}, "not_llm"),
        ({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}, "no_usage"),
        ({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 1}, "usage"),
        ({"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 1}, "usage"),  # no operation named
        ({"gen_ai.usage.prompt_tokens": 1}, "not_llm"),  # counts alone, nothing says it is a model call
    ],
)
def test_which_spans_are_llm_calls(attributes: dict[str, object], verdict: str) -> None:
    assert classify(span(attributes)) == verdict


def test_embeddings_generate_no_output() -> None:
    usage = usage_from_span(
        span(
            {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 8,
            }
        )
    )
    assert usage is not None and usage.output_tokens == 0


def test_counts_as_strings_from_a_clickhouse_map_and_bad_values_passed_on_for_rejection() -> None:
    strings = {k: str(v) for k, v in SEMCONV.items()}
    usage = usage_from_span(span(strings))
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (1200, 300, 1024)
    bad = usage_from_span(span(dict(SEMCONV, **{"gen_ai.usage.input_tokens": -5})))
    assert bad is not None and bad.input_tokens == -5  # the usage checks reject it, with a reason
    fraction = usage_from_span(span(dict(SEMCONV, **{"gen_ai.usage.output_tokens": 2.5})))
    assert fraction is not None and fraction.output_tokens == 2.5
    whole = usage_from_span(span(dict(SEMCONV, **{"gen_ai.usage.output_tokens": 300.0})))
    assert whole is not None and whole.output_tokens == 300
    assert usage.ttft_ms == 250.0  # "0.25" seconds, as a ClickHouse map holds the double 0.25


def test_a_flag_is_no_count_even_where_cache_is_added_to_the_input() -> None:
    openlit = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4",
        "gen_ai.usage.input_tokens": True,
        "gen_ai.usage.output_tokens": 10,
        "gen_ai.usage.cache_read_input_tokens": 5,
    }
    usage = usage_from_span(span(openlit, resource={"telemetry.sdk.name": "openlit"}))
    assert usage is not None and usage.input_tokens is True  # passed on for rejection, not read as 1 + 5


def test_attribution_prefers_the_span_then_the_resource() -> None:
    attributes = dict(SEMCONV, **{"app.project": "search", "enduser.id": "alice"})
    usage = usage_from_span(
        span(attributes, resource={"service.name": "checkout", "app.project": "ignored"}),
        {"team": "service.name", "project": "app.project", "user": "enduser.id", "key_id": "absent"},
    )
    assert usage is not None
    assert dict(usage.attribution) == {"team": "checkout", "project": "search", "user": "alice"}


def test_a_start_time_no_date_can_hold_is_passed_on_for_rejection() -> None:
    far = Span({}, SEMCONV, "chat", "client", 10**30, 10**30, TRACE, SPAN_ID)  # type: ignore[arg-type]
    usage = usage_from_span(far)
    assert usage is not None and usage.ts is None
    assert usage.record()["ts"] == str(10**30)


def test_error_status_and_provider_aliases() -> None:
    usage = usage_from_span(span(dict(SEMCONV, **{"gen_ai.provider.name": "aws.bedrock"}), error=True))
    assert usage is not None and (usage.status, usage.provider) == ("error", "bedrock")


def test_content_attributes_are_named_and_never_mapped() -> None:
    for name in (
        "input.value",
        "output.value",
        "gen_ai.prompt.0.content",
        "gen_ai.completion.0.content",
        "gen_ai.input.messages",
        "llm.input_messages.0.message.content",
        "gen_ai.system_instructions",
    ):
        assert is_content_attribute(name), name
    for name in ("service.name", "gen_ai.system", "gen_ai.usage.input_tokens", "llm.model_name"):
        assert not is_content_attribute(name), name
    mapped = {name for names in FIELDS.values() for name in names}
    assert not any(is_content_attribute(name) for name in mapped)
