"""Where each log format keeps the canonical fields (DESIGN.md, "Canonical usage record").

Sources, each read for the field names used below:
- OpenAI Chat Completions object and streamed chunk (`usage.prompt_tokens`,
  `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`; the final chunk
  carries `usage` when `stream_options.include_usage` is set):
  platform.openai.com/docs/api-reference/chat/object.
- OpenAI Batch output lines (`response.body` holds the completion; `error` or a non-200 `status_code` is a
  failed request): platform.openai.com/docs/guides/batch. `service_tier` of a response: default, flex,
  priority, scale (platform.openai.com/docs/api-reference/chat/object).
- DeepSeek (`prompt_cache_hit_tokens`, `prompt_cache_miss_tokens`, both inside `prompt_tokens`):
  api-docs.deepseek.com/api/create-chat-completion.
- Volcano Engine Ark and vLLM answer in the OpenAI shape (vLLM sends `prompt_tokens_details: null`).
- Anthropic Messages (`usage.input_tokens` excludes `cache_read_input_tokens` and
  `cache_creation_input_tokens`; `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`
  split the writes by TTL; `usage.service_tier` is standard, priority or batch):
  docs.anthropic.com/en/api/messages; Message Batches results wrap the message in `result.message`
  (`result.type` succeeded, errored, canceled, expired).
- OpenAI organisation usage (`/v1/organization/usage/completions`: buckets of results with `input_tokens`
  (cached included), `input_cached_tokens`, `output_tokens`, `num_model_requests`, `project_id`, `user_id`,
  `api_key_id`, `model`, `batch`): platform.openai.com/docs/api-reference/usage/completions.
- LiteLLM `LiteLLM_SpendLogs` (`request_id`, `startTime`, `endTime`, `completionStartTime`, `model`,
  `custom_llm_provider`, `prompt_tokens`, `completion_tokens`, `spend`, `user`, `team_id`, `api_key`
  (a hash of the virtual key), `metadata.usage_object`): litellm `schema.prisma`.

Our own envelope wraps any response with what the response lacks:
`{"timestamp": ..., "provider": ..., "endpoint": ..., "team": ..., "project": ..., "user": ..., "key_id": ...,
"tags": {...}, "ttft_ms": ..., "latency_ms": ..., "status": ..., "response": {<the provider's response>}}`.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.usage_record import Failure, RecordSpec, TokenField, rooted

FORMATS: tuple[str, ...] = ("openai", "anthropic", "openai-usage-export", "litellm-spend", "csv")

_ENVELOPE = {
    "timestamp": ("$.timestamp", "$.ts"),
    "provider": ("$.provider",),
    "endpoint": ("$.endpoint",),
    "team": ("$.team", "$.tags.team"),
    "project": ("$.project", "$.tags.project"),
    "user": ("$.user", "$.tags.user"),
    "key_id": ("$.key_id", "$.tags.key_id"),
    "tags": ("$.tags",),
    "ttft_ms": ("$.ttft_ms",),
    "latency_ms": ("$.latency_ms",),
}

# Where the provider's response sits in a record: bare, inside our envelope, inside an OpenAI Batch output
# line, inside an Anthropic Message Batches result. Detection picks one per file from its first records, so
# each line is searched for the few paths of that shape only.
OPENAI_ROOTS = ("", "response", "response.body")
ANTHROPIC_ROOTS = ("", "response", "result.message")


def _at(root: str, *suffixes: str) -> tuple[str, ...]:
    base = f"$.{root}" if root else "$"
    return rooted((base,), *suffixes)


def _envelope(root: str) -> dict[str, tuple[str, ...]]:
    """Envelope fields, when the response is wrapped (OpenAI Batch lines carry none of ours)."""
    if root != "response":
        return {}
    return {
        "provider": _ENVELOPE["provider"],
        "endpoint": _ENVELOPE["endpoint"],
        "team": _ENVELOPE["team"],
        "project": _ENVELOPE["project"],
        "user": _ENVELOPE["user"],
        "key_id": _ENVELOPE["key_id"],
        "tags": _ENVELOPE["tags"],
        "ttft_ms": _ENVELOPE["ttft_ms"],
        "latency_ms": _ENVELOPE["latency_ms"],
    }


def _batch(root: str) -> dict[str, object]:
    """Batch-results files: every line is a batch request, and an error line is a request that cost
    nothing. OpenAI Batch output: `error` set, or `response.status_code` not 200
    (platform.openai.com/docs/guides/batch). Anthropic Message Batches results: `result.type` errored,
    canceled or expired (docs.anthropic.com/en/docs/build-with-claude/batch-processing)."""
    failures: tuple[Failure, ...]
    if root == "response.body":
        failures = (Failure("$.error", present=True), Failure("$.response.status_code", not_values=("200",)))
        return {"always_batch": True, "failures": failures}
    if root == "result.message":
        failures = (Failure("$.result.type", not_values=("succeeded",)),)
        return {"always_batch": True, "failures": failures}
    return {}


def openai_spec(root: str = "") -> RecordSpec:
    """OpenAI-compatible chat completions (OpenAI, DeepSeek, Volcano Ark, vLLM), bare or wrapped at `root`."""
    timestamps = _ENVELOPE["timestamp"] if root == "response" else ()
    return RecordSpec(
        name="openai",
        # a failed batch line has no completion id: the batch request's own id keys it
        record_id=(*_at(root, "id"), *(("$.id",) if root == "response.body" else ())),
        model=_at(root, "model"),
        timestamp=(*timestamps, *_at(root, "created")),
        usage_block=_at(root, "usage.prompt_tokens", "usage.completion_tokens"),
        input=TokenField(_at(root, "usage.prompt_tokens"), "usage.prompt_tokens"),
        output=TokenField(_at(root, "usage.completion_tokens"), "usage.completion_tokens"),
        total=TokenField(_at(root, "usage.total_tokens"), "usage.total_tokens"),
        cached_input=TokenField(
            _at(root, "usage.prompt_cache_hit_tokens", "usage.prompt_tokens_details.cached_tokens"),
            "cached tokens",
        ),
        cache_miss=TokenField(_at(root, "usage.prompt_cache_miss_tokens"), "usage.prompt_cache_miss_tokens"),
        reasoning=TokenField(
            _at(root, "usage.completion_tokens_details.reasoning_tokens"),
            "usage.completion_tokens_details.reasoning_tokens",
        ),
        status=("$.response.status_code",) if root == "response.body" else ("$.status",) if root else (),
        object_type=_at(root, "object"),
        provider_evidence=tuple((path, "deepseek") for path in _at(root, "usage.prompt_cache_hit_tokens")),
        service_tier=_at(root, "service_tier"),
        **_batch(root),  # type: ignore[arg-type]
        **_envelope(root),  # type: ignore[arg-type]
    )


def anthropic_spec(root: str = "") -> RecordSpec:
    """Anthropic Messages responses, bare or wrapped at `root`; input is normalised to include the cache."""
    return RecordSpec(
        name="anthropic",
        # a failed batch line has no message id: its custom_id keys it (unique within its batch)
        record_id=(*_at(root, "id"), *(("$.custom_id",) if root == "result.message" else ())),
        model=_at(root, "model"),
        timestamp=_ENVELOPE["timestamp"],
        usage_block=_at(root, "usage.input_tokens", "usage.output_tokens"),
        input=TokenField(_at(root, "usage.input_tokens"), "usage.input_tokens"),
        output=TokenField(_at(root, "usage.output_tokens"), "usage.output_tokens"),
        cached_input=TokenField(_at(root, "usage.cache_read_input_tokens"), "usage.cache_read_input_tokens"),
        cache_write=TokenField(
            _at(root, "usage.cache_creation_input_tokens"), "usage.cache_creation_input_tokens"
        ),
        cache_write_1h=TokenField(
            _at(root, "usage.cache_creation.ephemeral_1h_input_tokens"),
            "usage.cache_creation.ephemeral_1h_input_tokens",
        ),
        input_excludes_cache=True,
        status=("$.result.type",) if root == "result.message" else ("$.status",) if root else (),
        object_type=_at(root, "type"),
        default_provider="anthropic",
        service_tier=_at(root, "usage.service_tier"),
        **_batch(root),  # type: ignore[arg-type]
        **_envelope(root),  # type: ignore[arg-type]
    )


OPENAI = openai_spec()
ANTHROPIC = anthropic_spec()

# One flattened result of an organisation usage page, with its bucket's times and a key made by the reader.
OPENAI_USAGE_EXPORT = RecordSpec(
    name="openai-usage-export",
    record_id=("$._key",),
    model=("$.model",),
    timestamp=("$.start_time",),
    usage_block=("$.input_tokens", "$.output_tokens"),
    requests=TokenField(("$.num_model_requests",), "num_model_requests"),
    input=TokenField(("$.input_tokens",), "input_tokens"),
    output=TokenField(("$.output_tokens",), "output_tokens"),
    cached_input=TokenField(("$.input_cached_tokens",), "input_cached_tokens"),
    project=("$.project_id",),
    user=("$.user_id",),
    key_id=("$.api_key_id",),
    endpoint_flags=(("$.batch", "batch"),),
    batch=("$.batch",),
    default_provider="openai",
)

LITELLM_SPEND = RecordSpec(
    name="litellm-spend",
    record_id=("$.request_id",),
    model=("$.model", "$.model_group"),
    timestamp=("$.startTime",),
    first_token_time=("$.completionStartTime",),
    end_time=("$.endTime",),
    usage_block=("$.prompt_tokens", "$.completion_tokens"),
    input=TokenField(("$.prompt_tokens",), "prompt_tokens"),
    output=TokenField(("$.completion_tokens",), "completion_tokens"),
    total=TokenField(("$.total_tokens",), "total_tokens"),
    cached_input=TokenField(
        ("$.metadata.usage_object.prompt_tokens_details.cached_tokens",), "usage_object cached_tokens"
    ),
    cached_input_fallback=TokenField(
        ("$.metadata.usage_object.cache_read_input_tokens",), "usage_object cache_read_input_tokens"
    ),
    cache_write=TokenField(
        ("$.metadata.usage_object.cache_creation_input_tokens",), "usage_object cache_creation_input_tokens"
    ),
    reasoning=TokenField(
        ("$.metadata.usage_object.completion_tokens_details.reasoning_tokens",),
        "usage_object reasoning_tokens",
    ),
    provider=("$.custom_llm_provider",),
    endpoint=("$.call_type",),
    team=("$.team_id", "$.metadata.user_api_key_team_id"),
    user=("$.user", "$.end_user", "$.metadata.user_api_key_user_id"),
    api_key=("$.api_key", "$.metadata.user_api_key"),
    status=("$.status",),
    billed_cost=("$.spend",),
    default_currency="USD",
)


def csv_spec(columns: Mapping[str, str]) -> RecordSpec:
    """A generic CSV's spec. The reader renames mapped columns to canonical names; `columns` maps each
    canonical name to the user's column, which reject reasons quote."""

    def token(name: str) -> TokenField | None:
        return TokenField((f"$.{name}",), columns[name]) if name in columns else None

    def paths(name: str) -> tuple[str, ...]:
        return (f"$.{name}",) if name in columns else ()

    input_field, output_field = token("input_tokens"), token("output_tokens")
    assert input_field is not None and output_field is not None
    return RecordSpec(
        name="csv",
        record_id=paths("request_id"),
        model=paths("model"),
        timestamp=paths("ts"),
        usage_block=("$.input_tokens", "$.output_tokens"),
        requests=token("requests"),
        input=input_field,
        output=output_field,
        cached_input=token("cached_input_tokens"),
        cache_write=token("cache_write_tokens"),
        cache_write_1h=token("cache_write_1h_tokens"),
        reasoning=token("reasoning_tokens"),
        provider=paths("provider"),
        endpoint=paths("endpoint"),
        team=paths("team"),
        project=paths("project"),
        user=paths("user"),
        key_id=paths("key_id"),
        api_key=paths("api_key"),
        ttft_ms=paths("ttft_ms"),
        latency_ms=paths("latency_ms"),
        status=paths("status"),
        billed_cost=paths("billed_cost"),
        billed_currency=paths("billed_currency"),
        service_tier=paths("service_tier"),
        batch=paths("batch"),
    )


SPECS: dict[str, RecordSpec] = {
    spec.name: spec for spec in (OPENAI, ANTHROPIC, OPENAI_USAGE_EXPORT, LITELLM_SPEND)
}


def spec_for(fmt: str, root: str = "") -> RecordSpec:
    if fmt == "openai":
        return openai_spec(root)
    if fmt == "anthropic":
        return anthropic_spec(root)
    return SPECS[fmt]
