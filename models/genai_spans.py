"""Which OpenTelemetry spans are LLM calls, and the canonical usage record each one stands for.

One table (`FIELDS`) says, for every canonical field, which span attributes carry it, in the order they are
tried: the OpenTelemetry GenAI semantic conventions (current names, then deprecated ones), OpenLLMetry's
`llm.usage.*` and its own `gen_ai.*` spellings, OpenInference's `llm.token_count.*`, and OpenLIT's. A second
table (`CACHE_RULES`) says which instrumentations count cached input *outside* `input_tokens` (so the
canonical input, which includes cache reads and writes, adds them) — by default every family counts it
inside, as the GenAI conventions and OpenInference define it. `usage_from_span` applies both to one span.

It is a pure function of what a span carries — resource attributes, span attributes, name, kind, start and
end, trace and span ids, events, instrumentation scope — so the OTLP receiver (`collectors.otlp`) and a
reader of the OpenTelemetry Collector's ClickHouse `otel_traces` table (whose attribute maps hold strings:
counts may arrive as digit strings) share the same definition.

Sources read for the names:
- GenAI semantic conventions, spans (`gen_ai.operation.name`, `gen_ai.provider.name` replacing
  `gen_ai.system`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.response.id`,
  `gen_ai.usage.input_tokens` "SHOULD include all types of input tokens, including cached tokens",
  `gen_ai.usage.output_tokens`, `gen_ai.usage.cache_read.input_tokens`,
  `gen_ai.usage.cache_creation.input_tokens`, `gen_ai.usage.reasoning.output_tokens`,
  `gen_ai.response.time_to_first_chunk` in seconds, `openai.response.service_tier`; deprecated:
  `gen_ai.usage.prompt_tokens` / `completion_tokens`, `gen_ai.openai.response.service_tier`):
  opentelemetry-semantic-conventions 0.66b2, `_incubating/attributes/gen_ai_attributes.py`.
- OpenLLMetry (`opentelemetry-semantic-conventions-ai` 0.5: `llm.usage.total_tokens`,
  `llm.usage.reasoning_tokens`, `gen_ai.usage.reasoning_tokens`, `gen_ai.usage.cache_read_input_tokens`,
  `gen_ai.usage.cache_creation_input_tokens`, `llm.request.type`; streamed chunks are span events
  `gen_ai.content.completion.chunk`, formerly `llm.content.completion.chunk`). Its Anthropic
  instrumentation adds cache reads and writes into `gen_ai.usage.input_tokens` (`_set_token_usage`).
- OpenInference semantic conventions (`openinference.span.kind`, `llm.model_name`, `llm.provider`,
  `llm.system`, `llm.token_count.prompt` including `llm.token_count.prompt_details.cache_read` /
  `cache_write`, `llm.token_count.completion` including `completion_details.reasoning`; the first streamed
  token is the span event "First Token Stream Event").
- OpenLIT (resource `telemetry.sdk.name = "openlit"`; `gen_ai.server.time_to_first_token` in seconds). Its
  Anthropic instrumentation sets `gen_ai.usage.input_tokens` to Anthropic's own `input_tokens`, which
  excludes cache reads and writes ("the cache tokens are added on top", openlit `anthropic/utils.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeGuard

from models.errors import InputError

AttributeValue = str | bool | int | float | bytes | Sequence[object] | None

# --------------------------------------------------------------------------------------- the tables

# Canonical field -> the attributes that carry it, tried in this order (the first present wins).
FIELDS: dict[str, tuple[str, ...]] = {
    "input_tokens": (
        "gen_ai.usage.input_tokens",  # GenAI conventions; OpenLLMetry; OpenLIT
        "gen_ai.usage.prompt_tokens",  # GenAI conventions before 1.27 (deprecated); older OpenLLMetry
        "llm.usage.prompt_tokens",  # early OpenLLMetry
        "llm.token_count.prompt",  # OpenInference
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",  # deprecated
        "llm.usage.completion_tokens",  # early OpenLLMetry
        "llm.token_count.completion",  # OpenInference
    ),
    "cached_input_tokens": (
        "gen_ai.usage.cache_read.input_tokens",  # GenAI conventions; OpenLLMetry 0.4x+
        "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry before, OpenLIT
        "llm.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",  # OpenInference
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",  # OpenLLMetry before, OpenLIT
        "llm.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",  # OpenInference
    ),
    "reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",  # GenAI conventions
        "gen_ai.usage.reasoning_tokens",  # OpenLLMetry, OpenLIT
        "llm.usage.reasoning_tokens",  # OpenLLMetry before
        "llm.token_count.completion_details.reasoning",  # OpenInference
    ),
    "total_tokens": (
        "gen_ai.usage.total_tokens",  # OpenLLMetry 0.4x+
        "llm.usage.total_tokens",  # OpenLLMetry
        "llm.token_count.total",  # OpenInference
        "gen_ai.client.token.usage",  # OpenLIT (a span attribute there, beside the metric of that name)
    ),
    "model": (
        "gen_ai.response.model",  # what served the call (a dated snapshot), before what was asked for
        "gen_ai.request.model",
        "llm.response.model",  # early OpenLLMetry
        "llm.request.model",
        "llm.model_name",  # OpenInference
    ),
    "provider": (
        "gen_ai.provider.name",  # GenAI conventions
        "gen_ai.system",  # deprecated; OpenLLMetry, OpenLIT
        "llm.provider",  # OpenInference: who hosts it (azure, aws, ...)
        "llm.system",  # OpenInference: the API family (openai, anthropic)
        "llm.vendor",  # early OpenLLMetry
    ),
    "response_id": ("gen_ai.response.id",),
    "service_tier": (
        "openai.response.service_tier",  # GenAI conventions
        "gen_ai.openai.response.service_tier",  # deprecated
        "openai.request.service_tier",
        "gen_ai.openai.request.service_tier",
    ),
    "ttft_s": (
        "gen_ai.response.time_to_first_chunk",  # GenAI conventions, seconds
        "gen_ai.server.time_to_first_token",  # OpenLIT, seconds
    ),
    "operation": ("gen_ai.operation.name",),
    "openinference_kind": ("openinference.span.kind",),
    "request_type": ("llm.request.type",),  # OpenLLMetry
}

# Every attribute the table reads (a reader may pass a span's attributes filtered to these, plus the ones
# `--attribute` names); SDK_NAME is read from the resource.
SDK_NAME = "telemetry.sdk.name"
ATTRIBUTES_READ: frozenset[str] = frozenset(name for names in FIELDS.values() for name in names)

# Operations that are one call of a model, billed by its tokens. Agent and tool spans (`invoke_agent`,
# `execute_tool`, OpenInference AGENT/CHAIN/TOOL, OpenLLMetry workflow/task) may carry the summed usage of
# the calls under them: counting them too would count every token twice.
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "completion"})
OPENINFERENCE_INFERENCE_KINDS = frozenset({"LLM", "EMBEDDING"})
OPENLLMETRY_INFERENCE_TYPES = frozenset({"chat", "completion", "embedding"})
EMBEDDING_OPERATIONS = frozenset({"embeddings", "embedding", "EMBEDDING"})

# Span events that mark the first streamed token: TTFT is the first one's time minus the span's start.
FIRST_TOKEN_EVENTS = frozenset(
    {
        "First Token Stream Event",  # OpenInference
        "gen_ai.content.completion.chunk",  # OpenLLMetry (one per chunk: the first is the first token)
        "llm.content.completion.chunk",  # OpenLLMetry before
    }
)

# A duration in seconds written as text (ClickHouse's attribute maps hold every value as a string): a decimal
# number, optionally signed, with an exponent.
SECONDS_PATTERN = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"

# Why an LLM span without usage is not stored (the receiver's and the otel_traces reader's reject reason).
NO_USAGE_REASON = "an LLM span without token counts (a call cut short, or streamed without usage)"

CacheRule = Literal["input_includes_cache", "input_excludes_cache"]


@dataclass(frozen=True, slots=True)
class CacheRuleEntry:
    """Instrumentations matching `sdk` (resource `telemetry.sdk.name`) or a scope name starting with
    `scope_prefix`, reporting calls to `provider`, count input this way."""

    rule: CacheRule
    provider: str
    sdk: str = ""
    scope_prefix: str = ""
    why: str = ""


# Every family not listed counts cached input inside the input (GenAI conventions, OpenInference,
# OpenLLMetry — whose Anthropic instrumentation sums the cache into input itself).
CACHE_RULES: tuple[CacheRuleEntry, ...] = (
    CacheRuleEntry(
        "input_excludes_cache",
        provider="anthropic",
        sdk="openlit",
        scope_prefix="openlit",
        why="OpenLIT sets gen_ai.usage.input_tokens to Anthropic's input_tokens, which excludes cache "
        "reads and writes",
    ),
)

# Attributes that carry prompts, answers, tool arguments or retrieved documents. None of them is ever read
# into a record, and `--attribute` refuses them.
CONTENT_ATTRIBUTE_PREFIXES: tuple[str, ...] = (
    "input.value",
    "output.value",
    "llm.input_messages",
    "llm.output_messages",
    "llm.prompts",
    "llm.prompt_template",
    "llm.tools",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.args",
    "gen_ai.content",
    "gen_ai.retrieval",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "retrieval.documents",
    "embedding.embeddings",
    "message.content",
)

# Usage columns `--attribute COLUMN=ATTRIBUTE` may fill.
ATTRIBUTION_COLUMNS = ("team", "project", "user", "key_id", "endpoint")

# Provider names as instrumentations write them -> the catalog's provider names.
PROVIDER_ALIASES: dict[str, str] = {
    "aws.bedrock": "bedrock",
    "aws": "bedrock",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "google": "google",
    "deepseek": "deepseek",
    "volcengine": "volcengine",
}


def parse_attribution(pairs: Sequence[str]) -> dict[str, str]:
    """`COLUMN=ATTRIBUTE` pairs (`team=service.name`) as a mapping; refuses unknown columns and content."""
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, attribute = pair.partition("=")
        column, attribute = column.strip(), attribute.strip()
        if not sep or not column or not attribute:
            raise InputError(f"--attribute takes COLUMN=ATTRIBUTE, e.g. team=service.name; got {pair!r}")
        if column not in ATTRIBUTION_COLUMNS:
            raise InputError(
                f"--attribute: {column!r} is not a column it can fill (use {', '.join(ATTRIBUTION_COLUMNS)})"
            )
        if is_content_attribute(attribute):
            raise InputError(
                f"--attribute: {attribute!r} holds prompts or answers, which quotascope never stores"
            )
        out[column] = attribute
    return out


def is_content_attribute(name: str) -> bool:
    """Whether an attribute (or one under it: `gen_ai.prompt.0.content`) may hold content."""
    return any(name == p or name.startswith(p + ".") for p in CONTENT_ATTRIBUTE_PREFIXES)


# --------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_unix_nano: int


@dataclass(frozen=True, slots=True)
class Span:
    """What a span carries, whatever brought it (OTLP protobuf or JSON, a ClickHouse row)."""

    resource: Mapping[str, AttributeValue]
    attributes: Mapping[str, AttributeValue]
    name: str
    kind: str  # "client", "internal", "server", "producer", "consumer" or "unspecified"
    start_unix_nano: int
    end_unix_nano: int
    trace_id: str  # lowercase hex
    span_id: str
    events: Sequence[SpanEvent] = ()
    scope: str = ""  # the instrumentation scope's name
    error: bool = False  # status code ERROR


@dataclass(frozen=True, slots=True)
class SpanUsage:
    """One LLM span as a canonical usage record; counts stay as given when they are not whole numbers, so
    the usage checks (`storage.normalise`) reject them with a reason."""

    record_key: str
    ts: datetime | None  # naive UTC; None when the start time is no date at all (rejected as such)
    start_unix_nano: int
    model: str | None
    provider: str | None
    input_tokens: object
    output_tokens: object
    cached_input_tokens: object
    cache_write_tokens: object
    reasoning_tokens: object
    total_tokens: object
    latency_ms: float | None
    ttft_ms: float | None
    status: str
    service_tier: str | None
    attribution: Mapping[str, str]  # column -> value, from --attribute
    rule: CacheRule

    def record(self) -> dict[str, object]:
        """The record in canonical field names (`models.usage_record.CSV_FIELDS`)."""
        out: dict[str, object] = {
            "request_id": self.record_key,
            "ts": self.ts.isoformat() if self.ts else str(self.start_unix_nano),
            "model": self.model,
            "provider": self.provider,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "status": self.status,
            "service_tier": self.service_tier,
        }
        out.update(self.attribution)
        return {k: v for k, v in out.items() if v is not None}


Verdict = Literal["usage", "not_llm", "no_usage"]


# --------------------------------------------------------------------------------------- the function


def classify(span: Span) -> Verdict:
    """Whether a span is one LLM call with usage, an LLM call without any (a failed or cut-short call), or
    not an LLM call at all (HTTP, database, agent and tool spans)."""
    attrs = span.attributes
    operation = _text(_first(attrs, FIELDS["operation"]))
    kind = _text(_first(attrs, FIELDS["openinference_kind"]))
    request_type = _text(_first(attrs, FIELDS["request_type"]))
    if operation is not None:
        inference = operation in INFERENCE_OPERATIONS
    elif kind is not None:
        inference = kind.upper() in OPENINFERENCE_INFERENCE_KINDS
    elif request_type is not None:
        inference = request_type in OPENLLMETRY_INFERENCE_TYPES
    else:  # an instrumentation that names no operation: a provider and a token count say it is a call
        inference = _first(attrs, FIELDS["provider"]) is not None and _has_tokens(attrs)
    if not inference:
        return "not_llm"
    return "usage" if _has_tokens(attrs) else "no_usage"


def _has_tokens(attrs: Mapping[str, AttributeValue]) -> bool:
    return any(name in attrs for name in FIELDS["input_tokens"] + FIELDS["output_tokens"])


def cache_rule(span: Span, provider: str | None) -> CacheRule:
    """Which convention the span's input count follows (`CACHE_RULES`)."""
    sdk = _text(span.resource.get(SDK_NAME))
    for entry in CACHE_RULES:
        if provider != entry.provider:
            continue
        by_sdk = bool(entry.sdk) and sdk == entry.sdk
        by_scope = bool(entry.scope_prefix) and span.scope.startswith(entry.scope_prefix)
        if by_sdk or by_scope:
            return entry.rule
    return "input_includes_cache"


def usage_from_span(span: Span, attribution: Mapping[str, str] | None = None) -> SpanUsage | None:
    """The usage record of one LLM span, or None when the span is not an LLM call with usage.

    `attribution` maps usage columns (`ATTRIBUTION_COLUMNS`) to the attribute that fills them, looked up in
    the span's attributes first, then its resource's (`team` -> `service.name`).
    """
    if classify(span) != "usage":
        return None
    attrs = span.attributes

    def pick(field: str) -> AttributeValue:
        return _first(attrs, FIELDS[field])

    provider = normalise_provider(_text(pick("provider")))
    input_tokens = _count(pick("input_tokens"))
    output_tokens = _count(pick("output_tokens"))
    cached = _count(pick("cached_input_tokens"))
    written = _count(pick("cache_write_tokens"))
    reasoning = _count(pick("reasoning_tokens"))
    total = _count(pick("total_tokens"))
    operation = _text(_first(attrs, FIELDS["operation"])) or _text(_first(attrs, FIELDS["request_type"]))
    kind = _text(_first(attrs, FIELDS["openinference_kind"]))
    if output_tokens is None and (operation in EMBEDDING_OPERATIONS or kind in EMBEDDING_OPERATIONS):
        output_tokens = 0  # an embedding generates nothing
    rule = cache_rule(span, provider)
    if rule == "input_excludes_cache" and _is_count(input_tokens):
        for part in (cached, written):
            input_tokens += part if _is_count(part) else 0
    start, end = span.start_unix_nano, span.end_unix_nano
    return SpanUsage(
        record_key=record_key(span),
        ts=_utc(start),
        start_unix_nano=start,
        model=_text(pick("model")),
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
        total_tokens=total,
        latency_ms=(end - start) / 1e6 if end >= start > 0 else None,
        ttft_ms=_ttft_ms(span, pick("ttft_s")),
        status="error" if span.error else "ok",
        service_tier=_text(pick("service_tier")),
        attribution=_attribution(span, attribution or {}),
        rule=rule,
    )


def record_key(span: Span) -> str:
    """The provider's response id where the span has one, else the span's own ids.

    Either way an exporter's retry carries the same key, so it stores nothing new. The response id is also
    the key the ingest gives a logged response (`chatcmpl-...`, `msg_...`), so one call seen both in a log
    file and as a span, or by two instrumentations at once, is one request (the same key within a week).
    """
    response_id = _text(_first(span.attributes, FIELDS["response_id"]))
    return response_id or f"otlp:{span.trace_id}:{span.span_id}"


def _utc(unix_nano: int) -> datetime | None:
    """Naive UTC time of a span's start, exact to the microsecond; None beyond what a date can be."""
    try:
        at = datetime.fromtimestamp(unix_nano // 1_000_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return at.replace(tzinfo=None, microsecond=(unix_nano // 1000) % 1_000_000)


def normalise_provider(name: str | None) -> str | None:
    if name is None:
        return None
    lowered = name.strip().lower()
    return PROVIDER_ALIASES.get(lowered, lowered) or None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # True is no count of 1


def _seconds(value: AttributeValue) -> float | None:
    """A number of seconds, given as a number or as its text (`SECONDS_PATTERN`); None otherwise."""
    if isinstance(value, str) and re.match(SECONDS_PATTERN, value.strip()):
        return float(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _ttft_ms(span: Span, attribute: AttributeValue) -> float | None:
    seconds = _seconds(attribute)
    if seconds is not None and math.isfinite(seconds):
        return seconds * 1000.0 if seconds >= 0 else None
    if not span.events:
        return None
    first = min((e.time_unix_nano for e in span.events if e.name in FIRST_TOKEN_EVENTS), default=None)
    if first is None or first < span.start_unix_nano:
        return None
    return (first - span.start_unix_nano) / 1e6


def _attribution(span: Span, attribution: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for column, name in attribution.items():
        value = span.attributes.get(name)
        if value is None:
            value = span.resource.get(name)
        text = _text(value)
        if text is not None:
            out[column] = text
    return out


def _first(attrs: Mapping[str, AttributeValue], names: tuple[str, ...]) -> AttributeValue:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


def _text(value: AttributeValue) -> str | None:
    if value is None or isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None  # arrays and maps name nothing


def _count(value: AttributeValue) -> object:
    """A token count as an int when it is one (an integral double, or digits in a string as ClickHouse's
    string maps hold them); anything else is returned as it is, for the checks to reject with a reason."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if isinstance(value, str):
        stripped = value.strip()
        return int(stripped) if stripped.isdigit() and stripped.isascii() else value
    return str(value)
