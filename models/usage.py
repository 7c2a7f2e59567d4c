"""What stored usage says about a workload: the token profile `quotascope plan --from-usage` takes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Distribution:
    """Average and percentiles of one per-request quantity."""

    mean: float
    p50: float
    p90: float
    p99: float


@dataclass(frozen=True, slots=True)
class UsageProfile:
    """Per-request token profile derived from stored usage (aggregated rows weighted by their requests)."""

    requests: int
    input_tokens: Distribution  # all prompt tokens, cache hits and writes included
    cached_input_tokens: Distribution
    output_tokens: Distribution  # all generated tokens, reasoning included
    reasoning_tokens: Distribution
    cached_share: float  # cached input tokens / input tokens over the whole selection
    ttft_ms: Distribution | None = None
    tokens_per_s: Distribution | None = None
