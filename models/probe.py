"""Endpoint probe values: the load plan, one request's measurements, a run, and its summary.

Definitions follow `reference/probe-metrics.md` (binding):
- `t0` is the *intended* send time (the schedule's, or the moment a closed-loop worker's slot freed), so
  client-side queueing shows in the figures instead of hiding (vLLM #54101).
- TTFT = first token of any kind (reasoning included) − t0; TTFO = first answer-content token − t0.
- E2E = last byte − t0; output tokens/s = output_tokens / (t_last_token − t_first_token), needs ≥ 2 tokens;
  ITL = (t_last_token − t_first_token) / (output_tokens − 1).
- Output tokens come from `usage`; where absent they are counted and the result is flagged `estimated`.

Pure: no I/O here. The probe (collectors/probe) fills these values; storage/probes.py stores them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from models.errors import InputError
from models.money import Money

Profile = Literal["sequential", "concurrency", "rate", "poisson", "sweep"]
PROFILES: tuple[Profile, ...] = ("sequential", "concurrency", "rate", "poisson", "sweep")
CLOSED_LOOP: tuple[Profile, ...] = ("concurrency", "sweep")

ErrorClass = Literal["quota_429", "overload_5xx", "timeout", "connection", "protocol", "client_4xx"]
# quota_429: the provider's limits said no (429). overload_5xx: the provider failed (5xx, or an error event
# mid-stream). timeout: no byte within the read timeout, or the whole request over its budget. connection:
# refused, reset, or closed mid-response. protocol: a response we cannot read (bad JSON, missing [DONE]).
# client_4xx: any other 4xx (bad key, unknown model, rejected parameter): our request, not their capacity.
ERROR_CLASSES: tuple[ErrorClass, ...] = (
    "quota_429",
    "overload_5xx",
    "timeout",
    "connection",
    "protocol",
    "client_4xx",
)

RequestKind = Literal["load", "canary", "warmup"]
# warmup: sent before the timed requests (a first connection, and the request duration the ramp is sized
# from); stored and priced, never in the figures
CanaryVerdict = Literal["pass", "fail", "unclear"]
PERCENTILES: tuple[int, ...] = (50, 95, 99)
DEFAULT_WARMUP_REQUESTS = 1


# Who measured a run, and how each tool times its first token (stored with every run: the same endpoint
# reads differently under each). Imported runs keep the tool's TTFT; tokens/s and ITL are recomputed under
# ours from the tool's timings (output tokens / (last token − first token)).
Tool = Literal["quotascope", "aiperf", "guidellm", "vllm"]
TTFT_DEFINITIONS: dict[str, str] = {
    "quotascope": "first token of any kind (content, reasoning or tool call; an empty role chunk is not "
    "one), from the intended send time",
    "aiperf": "first response carrying content or reasoning (empty first responses, such as a role-only "
    "chunk, are ignored), from the request's start",
    "guidellm": "first streamed line carrying content, reasoning or a tool call, from the backend's request "
    "start",
    "vllm": "first SSE message with a non-empty choices list, even a role-only chunk with empty content, "
    "from the request's start",
}


# --------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of load: a fixed concurrency (closed loop) or an arrival rate (open loop)."""

    name: str
    concurrency: int | None = None  # closed loop: this many requests in flight
    rate_per_s: float | None = None  # open loop: arrivals per second
    poisson: bool = False  # open loop with exponential gaps instead of even ones


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What a probe run sends. `requests` is per phase; a sweep has one phase per concurrency."""

    profile: Profile = "sequential"
    concurrency: tuple[int, ...] = (1,)
    requests: int = 10
    rate_per_s: float | None = None
    input_tokens: tuple[int, ...] = (100,)  # request i asks with input_tokens[i % len]
    max_tokens: int = 128
    canary: bool = False  # also ask each canary question once, after the load
    canary_max_tokens: int = 4096  # reasoning models think before a one-character answer
    seed: int = 0  # Poisson gaps and prompt filler are reproducible
    max_in_flight: int = 1024  # open loop: requests waiting beyond this queue in the client (and show it)
    max_429_strikes: int = 3  # stop after this many rounds of 429 in a row despite honouring Retry-After
    max_retry_wait_s: float = 60.0  # a Retry-After longer than this stops the run instead of sleeping
    max_duration_s: float | None = None  # no new request is sent after this long
    # closed loop: worker i starts at i × ramp_s / concurrency; 0 starts them all at once (a burst), None
    # sizes it from the warm-up requests' duration (see `from_options`, which gives a user's defaults)
    ramp_s: float | None = 0.0
    warmup_requests: int = 0  # sent one after another before the timed requests, kept out of the figures
    saturation_lag_ms: float = 20.0  # event-loop lag above this flags a sample as client-saturated

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InputError(f"unknown load profile {self.profile!r}; use one of {', '.join(PROFILES)}")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise InputError("concurrency must be one or more whole numbers of at least 1")
        if self.requests < 1:
            raise InputError("--requests must be at least 1")
        if self.profile in ("rate", "poisson") and (self.rate_per_s is None or not self.rate_per_s > 0):
            raise InputError("a rate profile needs --rate above 0 requests per second")
        if not self.input_tokens or any(n < 32 for n in self.input_tokens):
            raise InputError("--input-tokens must each be at least 32 tokens")
        if self.max_tokens < 1 or self.canary_max_tokens < 1:
            raise InputError("--max-tokens must be at least 1")
        if self.max_in_flight < 1 or self.max_429_strikes < 1:
            raise InputError("max_in_flight and max_429_strikes must be at least 1")
        if (self.ramp_s is not None and self.ramp_s < 0) or self.max_retry_wait_s < 0:
            raise InputError("--ramp-s and waits must be zero or more")
        if self.warmup_requests < 0:
            raise InputError("--warmup must be zero or more requests")
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise InputError("waits and durations must be positive")

    def phases(self) -> list[Phase]:
        if self.profile == "sequential":
            return [Phase("sequential", concurrency=1)]
        if self.profile == "concurrency":
            return [Phase(f"c={self.concurrency[0]}", concurrency=self.concurrency[0])]
        if self.profile == "sweep":
            return [Phase(f"c={c}", concurrency=c) for c in self.concurrency]
        rate = self.rate_per_s
        assert rate is not None
        poisson = self.profile == "poisson"
        return [Phase(f"{'poisson' if poisson else 'rate'}={rate:g}/s", rate_per_s=rate, poisson=poisson)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_options(
        concurrency: Sequence[int] = (1,),
        rate_per_s: float | None = None,
        poisson: bool = False,
        *,
        ramp_s: float | None = None,
        warmup_requests: int = DEFAULT_WARMUP_REQUESTS,
        **kwargs: Any,
    ) -> LoadPlan:
        """The profile a CLI's options mean: a rate → rate/Poisson; several concurrencies → a sweep.

        With a user's defaults, which measure the endpoint rather than the client: one warm-up request first
        (it opens a connection and times one request), then concurrent workers started spread over that
        request's duration (`ramp_s=None`). `ramp_s=0` asks for a burst on purpose."""
        levels = tuple(concurrency) or (1,)
        profile: Profile
        if rate_per_s is not None:
            profile = "poisson" if poisson else "rate"
        elif poisson:
            raise InputError("--poisson needs --rate")
        elif len(levels) > 1:
            profile = "sweep"
        elif levels[0] == 1:
            profile = "sequential"
        else:
            profile = "concurrency"
        return LoadPlan(
            profile=profile,
            concurrency=levels,
            rate_per_s=rate_per_s,
            ramp_s=ramp_s,
            warmup_requests=warmup_requests,
            **kwargs,
        )

    @property
    def peak_concurrency(self) -> int:
        """The most requests a closed-loop phase keeps in flight (open loop: `max_in_flight`)."""
        return self.max_in_flight if self.profile in ("rate", "poisson") else max(self.concurrency)


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One request's measurements. Times in ms from the intended send time `t0`."""

    seq: int
    phase: str
    kind: RequestKind
    intended_at: datetime  # UTC, naive: when the request was meant to leave
    concurrency: int | None = None
    input_tokens_target: int | None = None
    send_delay_ms: float = 0.0  # actual send − intended send: client-side queueing
    http_status: int | None = None
    error_class: ErrorClass | None = None
    error: str = ""  # one sentence; never the key, never message content
    ttft_ms: float | None = None
    ttfo_ms: float | None = None
    itl_ms: float | None = None
    output_tokens_per_s: float | None = None
    e2e_ms: float | None = None
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None  # all generated tokens, reasoning included
    reasoning_tokens: int | None = None  # the reasoning part of output_tokens
    tokens_estimated: bool = False  # counted by the client because `usage` lacked them
    finish_reason: str | None = None
    chunks: int = 0
    retry_after_s: float | None = None
    ratelimit: Mapping[str, str] = field(default_factory=dict)  # every x-ratelimit-* header, as sent
    loop_lag_ms: float = 0.0  # the worst client event-loop lag while this request was open
    client_saturated: bool = False
    cost: Money | None = None
    canary_id: str | None = None
    canary_verdict: CanaryVerdict | None = None

    @property
    def ok(self) -> bool:
        return self.error_class is None


@dataclass(frozen=True, slots=True)
class LagStats:
    """The client's event-loop lag over a run: how late a 10 ms timer woke, in ms."""

    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    samples: int = 0

    @staticmethod
    def of(samples: Sequence[float]) -> LagStats:
        if not samples:
            return LagStats()
        q = percentiles(samples, (50, 99))
        return LagStats(q["p50"] or 0.0, q["p99"] or 0.0, max(samples), len(samples))


@dataclass(frozen=True)
class ProbeRun:
    run_id: str
    endpoint: str
    base_url: str  # without credentials or query string
    model: str
    offer_id: str | None
    plan: LoadPlan
    started_at: datetime  # UTC, naive
    finished_at: datetime
    results: tuple[RequestResult, ...]
    stopped_early: bool = False
    stop_reason: str = ""
    not_sent: int = 0  # planned requests never sent (early stop or time budget)
    loop_lag: LagStats = field(default_factory=LagStats)
    ramp_s: float = 0.0  # how long the closed-loop workers' starts were spread over (0: a burst)
    tool: Tool = "quotascope"  # which client measured it: quotascope, or a peer whose results were imported

    @property
    def burst(self) -> bool:
        """Concurrent workers all started at the same instant: the client's own start-up is in the figures."""
        closed = [c for c in self.plan.concurrency if c > 1] if self.plan.profile in CLOSED_LOOP else []
        return bool(closed) and self.ramp_s == 0


# --------------------------------------------------------------------------------------------- summary


def percentiles(values: Iterable[float], qs: Sequence[int] = PERCENTILES) -> dict[str, float | None]:
    """Linear-interpolation percentiles (numpy's default), `None` for an empty input."""
    data = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        if not data:
            out[f"p{q}"] = None
            continue
        pos = (len(data) - 1) * q / 100
        low = math.floor(pos)
        high = min(low + 1, len(data) - 1)
        out[f"p{q}"] = data[low] + (data[high] - data[low]) * (pos - low)
    return out


def _rounded(stats: Mapping[str, float | None], places: int = 1) -> dict[str, float | None]:
    return {k: None if v is None else round(v, places) for k, v in stats.items()}


def _metric(results: Sequence[RequestResult], name: str, places: int = 1) -> dict[str, float | None]:
    values = [v for r in results if r.ok and (v := getattr(r, name)) is not None]
    stats = percentiles(values)
    stats["mean"] = sum(values) / len(values) if values else None
    return _rounded(stats, places)


def rate_limit_seen(results: Sequence[RequestResult]) -> dict[str, Any]:
    """The limits the endpoint announced: `x-ratelimit-limit-*` values, the lowest remaining, 429s seen."""
    limits: dict[str, str] = {}
    lowest: dict[str, float] = {}
    names: set[str] = set()
    for r in results:
        for name, value in r.ratelimit.items():
            names.add(name)
            if name.startswith("x-ratelimit-limit-"):
                limits[name.removeprefix("x-ratelimit-limit-")] = value
            elif name.startswith("x-ratelimit-remaining-"):
                try:
                    number = float(value)
                except ValueError:
                    continue
                key = name.removeprefix("x-ratelimit-remaining-")
                lowest[key] = min(lowest.get(key, number), number)
    waits = [r.retry_after_s for r in results if r.retry_after_s is not None]
    return {
        "limits": {k: _number(v) for k, v in sorted(limits.items())},
        "lowest_remaining": {k: _number(str(v)) for k, v in sorted(lowest.items())},
        "headers_seen": sorted(names),
        "responses_429": sum(1 for r in results if r.error_class == "quota_429"),
        "retry_after_s_max": max(waits) if waits else None,
    }


def _number(text: str) -> int | float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def cost_total(results: Iterable[RequestResult]) -> Money | None:
    """The probe's own cost; `None` when nothing was priced. Mixed currencies keep the first one's."""
    priced = [r.cost for r in results if r.cost is not None]
    if not priced:
        return None
    currency = priced[0].currency
    return Money(sum((m.amount for m in priced if m.currency == currency), Decimal(0)), currency)


def summarize_results(results: Sequence[RequestResult]) -> dict[str, Any]:
    """Figures over the load requests; `requests` and `ok` count load and canary requests, the cost every
    request sent (warm-ups too)."""
    cost = cost_total(results)
    results = [r for r in results if r.kind != "warmup"]
    load = [r for r in results if r.kind == "load"]
    canaries = [r for r in results if r.kind == "canary" and r.canary_verdict is not None]
    errors = {cls: n for cls in ERROR_CLASSES if (n := sum(1 for r in results if r.error_class == cls))}
    return {
        "requests": len(results),
        "ok": sum(1 for r in results if r.ok),
        "errors": errors,
        "ttft_ms": _metric(load, "ttft_ms"),
        "ttfo_ms": _metric(load, "ttfo_ms"),
        "itl_ms": _metric(load, "itl_ms", 2),
        "output_tokens_per_s": _metric(load, "output_tokens_per_s", 2),
        "e2e_ms": _metric(load, "e2e_ms"),
        "send_delay_ms": _metric(load, "send_delay_ms", 2),
        "tokens_estimated": sum(1 for r in results if r.tokens_estimated),
        "client_saturated": sum(1 for r in results if r.client_saturated),
        "rate_limit": rate_limit_seen(results),
        "canary_pass_rate": (
            round(sum(1 for r in canaries if r.canary_verdict == "pass") / len(canaries), 4)
            if canaries
            else None
        ),
        "cost": cost.to_json(9) if cost is not None else None,
    }


def summarize(run: ProbeRun) -> dict[str, Any]:
    """The run's summary document (`quotascope probe --json` prints it)."""
    document: dict[str, Any] = {
        "run_id": run.run_id,
        "tool": run.tool,
        "endpoint": run.endpoint,
        "model": run.model,
        "offer": run.offer_id,
        "profile": run.plan.profile,
        "started_at": run.started_at,
        "duration_s": round((run.finished_at - run.started_at).total_seconds(), 3),
        **summarize_results(run.results),
        "canaries": {
            r.canary_id: r.canary_verdict for r in run.results if r.kind == "canary" and r.canary_id
        },
        "loop_lag_ms": {
            "p50": round(run.loop_lag.p50_ms, 2),
            "p99": round(run.loop_lag.p99_ms, 2),
            "max": round(run.loop_lag.max_ms, 2),
        },
        "stopped_early": run.stopped_early,
        "stop_reason": run.stop_reason,
        "not_sent": run.not_sent,
        "warmup_requests": sum(1 for r in run.results if r.kind == "warmup"),
        "ramp_s": round(run.ramp_s, 3),
        "burst": run.burst,
    }
    phases = list(dict.fromkeys(r.phase for r in run.results if r.kind == "load"))
    if len(phases) > 1:
        document["phases"] = [
            {"phase": name, **summarize_results([r for r in run.results if r.phase == name])}
            for name in phases
        ]
    sizes = sorted({r.input_tokens_target for r in run.results if r.input_tokens_target is not None})
    if len(sizes) > 1:
        document["by_input_tokens"] = {
            str(size): {
                "ttft_ms": _metric([r for r in run.results if r.input_tokens_target == size], "ttft_ms"),
                "requests": sum(1 for r in run.results if r.input_tokens_target == size),
            }
            for size in sizes
        }
    return document
