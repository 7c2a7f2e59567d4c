"""What the emulated provider does: timing, output, limits, faults. One frozen value, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import InputError


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    model: str = "quotascope-emulator"
    ttft_ms: float = 300.0  # from the request's arrival to the first token (reasoning or answer)
    tokens_per_s: float = 35.4  # decode speed: one token every 1/tokens_per_s after the first
    jitter: float = 0.0  # each request's TTFT and tokens/s are scaled by 1 ± jitter (uniform)
    reasoning_tokens: int = 0  # streamed as `delta.reasoning_content` before the answer
    output_tokens: int = 128  # answer tokens, when `max_tokens` leaves room for them
    prefill_tokens_per_s: float = 0.0  # > 0: TTFT also grows by uncached prompt tokens / this
    chunk_ms: float = 0.0  # 0: one token per chunk; else tokens due within this many ms share a chunk
    tpm: int | None = None  # token bucket: prompt + max_tokens charged on arrival (OpenAI's rule)
    rpm: int | None = None
    max_concurrency: int | None = None  # requests open at once; a request is open until its last byte
    burst_s: float = 60.0  # bucket capacity, in seconds of refill (60: the whole minute's limit at once)
    fault_5xx_rate: float = 0.0  # 503 "overloaded" (after the request was charged, as providers do)
    fault_stall_rate: float = 0.0  # the stream stops for `fault_stall_s` at a random token
    fault_drop_rate: float = 0.0  # the connection is cut mid-stream, no [DONE]
    fault_malformed_rate: float = 0.0  # one chunk is broken JSON, the stream then goes on
    fault_429_rate: float = 0.0  # 429 whatever the buckets say: the quota spent by someone else's key
    fault_stall_s: float = 30.0
    fault_429_retry_ms: int = 1000
    cache: bool = True  # a real prefix cache: hits are whole `cache_unit` blocks matched from token 0
    cache_unit: int = 64  # DeepSeek's storage unit
    cache_blocks: int = 200_000  # LRU capacity in blocks
    usage: bool = True  # False: no `usage` at all, as hosts that ignore `stream_options` do
    # True: a role-only chunk (`{"role":"assistant","content":""}`, no token) on arrival, as vLLM's server
    # sends; clients that time the first chunk with `choices` (vLLM bench) then read TTFT ≈ 0. False: the
    # role rides in the first token's chunk, and every definition of TTFT agrees
    role_chunk: bool = True
    distilled: bool = False  # answer the canary questions wrongly
    require_api_key: bool = False  # a bearer key must be present (any value; it is never logged)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.tokens_per_s <= 0:
            raise InputError("--ttft-ms must be zero or more and --tokens-per-s above zero")
        if not 0 <= self.jitter < 1:
            raise InputError("--jitter is a share between 0 and 1, e.g. 0.1 for ±10 %")
        if self.reasoning_tokens < 0 or self.output_tokens < 1:
            raise InputError("--reasoning-tokens must be zero or more and --output-tokens at least 1")
        for name in ("tpm", "rpm", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        rates = (
            self.fault_5xx_rate,
            self.fault_stall_rate,
            self.fault_drop_rate,
            self.fault_malformed_rate,
            self.fault_429_rate,
        )
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise InputError("fault rates are shares between 0 and 1 and together at most 1")
        if self.burst_s <= 0 or self.fault_stall_s < 0 or self.fault_429_retry_ms < 0:
            raise InputError("--burst-s must be above zero and fault durations zero or more")
        if self.cache_unit < 1 or self.cache_blocks < 1 or self.chunk_ms < 0 or self.prefill_tokens_per_s < 0:
            raise InputError("cache sizes must be at least 1, chunk and prefill settings zero or more")
