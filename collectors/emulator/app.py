"""The emulated provider: a Starlette app speaking OpenAI's chat-completions API.

POST /v1/chat/completions (streaming SSE and plain JSON) and GET /v1/models. A request goes through, in order:
the key check (presence only, if required), body checks (unknown parameters are refused, as strict endpoints
do with vendor flags), the 429 fault, the limiter (TPM/RPM buckets, concurrency), the 5xx fault, the prefix
cache, then the reply: a role chunk at once (unless `role_chunk` is off: then the role comes with the first
token), `reasoning_content` tokens from TTFT, then `content` tokens, each due at `t_first + i / tokens_per_s`,
a finish chunk, the usage chunk if asked for, and `data: [DONE]`.
Every response carries the `x-ratelimit-*` headers of the configured limits.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from collectors.emulator.billing import Billing, billing_routes
from collectors.emulator.cache import PrefixCache
from collectors.emulator.config import EmulatorConfig
from collectors.emulator.limiter import Limiter
from collectors.probe.prompts import BY_QUESTION
from collectors.probe.tokens import message_tokens

# Chat-completions request parameters OpenAI documents; anything else is refused with its 400 wording.
ALLOWED_PARAMS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "modalities",
        "prediction",
        "audio",
        "web_search_options",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
    }
)
REASONING_TEXT = "let me think about this step by step and check each part of the question"
REASONING_WORDS = tuple(REASONING_TEXT.split())
ANSWER_TEXT = "the sea was calm and grey under a low sky while the old boat moved slowly home"
ANSWER_WORDS = tuple(ANSWER_TEXT.split())
FAULTS = ("5xx", "stall", "drop", "malformed", "429")


class DroppedStream(Exception):
    """Raised inside a response to cut the connection: uvicorn closes the socket mid-body."""


@dataclass
class Stats:
    """Counters tests and the benchmark read: what the emulator did, not what a client saw."""

    requests: int = 0
    admitted: int = 0
    limited: int = 0  # refused by the limiter (429)
    faults: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    tokens: tuple[tuple[bool, str], ...]  # (is reasoning, text)
    due: tuple[float, ...]  # loop time each token is due
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    fault: str | None = None
    fault_at: int = 0

    @property
    def reasoning_tokens(self) -> int:
        return sum(1 for reasoning, _ in self.tokens if reasoning)

    def usage(self) -> dict[str, Any]:
        completion = len(self.tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            # DeepSeek's names for the same split
            "prompt_cache_hit_tokens": self.cached_tokens,
            "prompt_cache_miss_tokens": self.prompt_tokens - self.cached_tokens,
        }


class Emulator:
    """State shared by all requests: limiter, prefix cache, the seeded random draws, counters."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.limiter = Limiter(
            time.monotonic(), config.tpm, config.rpm, config.max_concurrency, config.burst_s
        )
        self.cache = PrefixCache(config.cache_unit, config.cache_blocks)
        self.stats = Stats()
        self.created = int(time.time())

    @property
    def precise(self) -> bool:
        """Few requests open: the first and last tokens may be timed precisely (see `SPIN_S`)."""
        return self.limiter.in_flight <= PRECISE_UP_TO

    def draw_fault(self) -> str | None:
        c = self.config
        draw = self.rng.random()
        for name, rate in zip(
            FAULTS,
            (
                c.fault_5xx_rate,
                c.fault_stall_rate,
                c.fault_drop_rate,
                c.fault_malformed_rate,
                c.fault_429_rate,
            ),
            strict=True,
        ):
            if draw < rate:
                self.stats.faults[name] = self.stats.faults.get(name, 0) + 1
                return name
            draw -= rate
        return None

    def plan_reply(
        self,
        messages: list[Mapping[str, Any]],
        budget: int | None,
        prompt_tokens: int,
        cached: int,
        fault: str | None,
        arrival: float,
    ) -> Reply:
        c = self.config
        answer = self.answer_tokens(messages)
        reasoning = c.reasoning_tokens if budget is None else min(c.reasoning_tokens, budget)
        room = len(answer) if budget is None else min(len(answer), budget - reasoning)
        tokens = [(True, word) for word in _words(REASONING_WORDS, reasoning)]
        tokens += [(False, text) for text in answer[:room]]
        finish = "stop" if reasoning + room == c.reasoning_tokens + len(answer) else "length"
        ttft_s = c.ttft_ms / 1000 * self._jitter()
        if c.prefill_tokens_per_s:
            ttft_s += (prompt_tokens - cached) / c.prefill_tokens_per_s
        gap_s = 1 / (c.tokens_per_s * self._jitter())
        due = [arrival + ttft_s + i * gap_s for i in range(len(tokens))]
        fault_at = 0
        if fault in ("stall", "drop", "malformed") and tokens:
            low = 1 if fault == "drop" and len(tokens) > 1 else 0
            fault_at = self.rng.randrange(low, len(tokens))
            if fault == "stall":
                due = due[:fault_at] + [t + c.fault_stall_s for t in due[fault_at:]]
        return Reply(
            f"chatcmpl-{uuid.uuid4().hex[:24]}",
            tuple(tokens),
            tuple(due),
            finish,
            prompt_tokens,
            cached,
            fault,
            fault_at,
        )

    def answer_tokens(self, messages: list[Mapping[str, Any]]) -> list[str]:
        last = messages[-1].get("content") if messages else None
        canary = BY_QUESTION.get(last.strip()) if isinstance(last, str) else None
        if canary is not None:
            return [_wrong(canary.answer) if self.config.distilled else canary.answer]
        return _words(ANSWER_WORDS, self.config.output_tokens)

    def _jitter(self) -> float:
        j = self.config.jitter
        return 1 + j * (2 * self.rng.random() - 1) if j else 1.0


def _words(vocabulary: tuple[str, ...], count: int) -> list[str]:
    """`count` tokens of text, each one word; all but the first carry their leading space."""
    return [("" if i == 0 else " ") + vocabulary[i % len(vocabulary)] for i in range(count)]


def _wrong(answer: str) -> str:
    """A plausible wrong one-character answer: the next digit or letter."""
    if answer.isdigit():
        return str((int(answer) + 1) % 10)
    return chr((ord(answer.upper()) - ord("A") + 1) % 26 + ord("A"))


class ChunkWriter:
    """SSE chunks written by string templates: one `json.dumps` per chunk is too slow at 256 streams."""

    def __init__(self, reply_id: str, created: int, model: str) -> None:
        self.head = (
            f'data: {{"id":"{reply_id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{json.dumps(model)},"system_fingerprint":"fp_quotascope","choices":'
        )
        self.choice = '[{"index":0,"delta":'

    def delta(self, delta: str, finish_reason: str | None = None) -> str:
        finish = "null" if finish_reason is None else f'"{finish_reason}"'
        return f'{self.head}{self.choice}{delta},"logprobs":null,"finish_reason":{finish}}}]}}\n\n'

    def usage(self, usage: Mapping[str, Any]) -> str:
        return f'{self.head}[],"usage":{json.dumps(usage, separators=(",", ":"))}}}\n\n'


# asyncio's timers wake 0.2-2 ms late here (epoll rounds its timeout up to whole milliseconds, then the
# kernel adds its own slack): enough to be most of a 2 ms TTFT error budget. Emissions that define a metric
# (the first token: TTFT; the last: tokens/s and ITL) sleep until SPIN_S before their due time and then yield
# to the loop until it arrives; the tokens in between keep the plain, slightly late timers. Yielding keeps
# the loop polling, so it is done only while few requests are open (at 256 streams it would keep a core
# busy and make every stream later than the timers it replaces).
SPIN_S = 0.003
# Due times use the process's monotonic clock (CLOCK_MONOTONIC, as the probe's perf_counter on Linux), not
# loop.time(): uvloop's is cached per loop iteration at millisecond resolution.
clock = time.perf_counter
PRECISE_UP_TO = 16  # open requests


async def _sleep_until(when: float, precise: bool = False) -> None:
    delay = when - clock() - (SPIN_S if precise else 0.0)
    if delay > 0:
        await asyncio.sleep(delay)
    if precise:
        while clock() < when:
            await asyncio.sleep(0)


async def stream_reply(emulator: Emulator, reply: Reply, include_usage: bool) -> AsyncIterator[bytes]:
    config, created = emulator.config, emulator.created
    writer = ChunkWriter(reply.id, created, config.model)
    role = '"role":"assistant",'
    if config.role_chunk:
        yield writer.delta('{"role":"assistant","content":""}').encode()
        role = ""
    tokens, due, n = reply.tokens, reply.due, len(reply.tokens)
    chunk_s = config.chunk_ms / 1000
    last_emit = -math.inf
    i = 0
    while i < n:
        target = min(max(due[i], last_emit + chunk_s), due[-1]) if chunk_s else due[i]
        await _sleep_until(target, (i == 0 or target >= due[-1]) and emulator.precise)
        out = ""
        if reply.fault == "drop" and i == reply.fault_at:
            raise DroppedStream
        if reply.fault == "malformed" and i == reply.fault_at:
            out += writer.head + '[{"index":0,"delta":{"content":"\n\n'  # cut off mid-JSON
        reasoning = tokens[i][0]
        j = i + 1
        while j < n and due[j] <= target and tokens[j][0] == reasoning and j != reply.fault_at:
            j += 1
        text = json.dumps("".join(t for _, t in tokens[i:j]))
        delta = (
            f'{{{role}"reasoning_content":{text},"content":null}}'
            if reasoning
            else f'{{{role}"content":{text}}}'
        )
        role = ""
        out += writer.delta(delta)
        if j == n:
            out += writer.delta("{}", reply.finish_reason)
            if include_usage:
                out += writer.usage(reply.usage())
            out += "data: [DONE]\n\n"
        yield out.encode()
        last_emit = target
        i = j


class EventStream(Response):
    """A streamed body that stops when the client leaves, re-raises `DroppedStream` to cut the socket, and
    calls `on_close` once either way (the concurrency slot is held until the last byte)."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: Mapping[str, str],
        on_close: Callable[[], None],
        media_type: str = "text/event-stream",
    ) -> None:
        # like StreamingResponse: no `body` attribute, so no content-length header
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(dict(headers))
        self.body_parts = body
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                self.on_close()

        async def produce() -> None:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for part in self.body_parts:
                # the part that ends the stream also ends the body: no extra write for the client to wait on
                last = part.endswith(b"data: [DONE]\n\n")
                if last:
                    close()  # the request stops counting as open with its last byte, before the client's next
                await send({"type": "http.response.body", "body": part, "more_body": not last})
                if last:
                    return
            close()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def client_left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        producer = asyncio.ensure_future(produce())
        watcher = asyncio.ensure_future(client_left())
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, watcher):
                task.cancel()
            await asyncio.gather(producer, watcher, return_exceptions=True)
            close()
        if not producer.cancelled() and (error := producer.exception()) is not None:
            raise error  # DroppedStream cuts the socket; anything else is a bug uvicorn should log


def _error(
    emulator: Emulator,
    status: int,
    message: str,
    kind: str,
    code: str | None,
    retry_after_s: float | None = None,
) -> JSONResponse:
    headers = emulator.limiter.headers(time.monotonic())
    if retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
        headers["retry-after-ms"] = str(math.ceil(retry_after_s * 1000))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status, headers=headers)


def _has_key(request: Request) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(key.strip())


def _check_body(body: Any, model: str) -> tuple[int, str, str | None] | None:
    """(status, message, code) for a request the provider would refuse, or None."""
    if not isinstance(body, dict):
        return 400, "The request body must be a JSON object.", None
    unknown = sorted(set(body) - ALLOWED_PARAMS)
    if unknown:
        return 400, f"Unrecognized request argument supplied: {unknown[0]}", None
    if body.get("model") != model:
        name = str(body.get("model"))[:100]
        return 404, f"The model `{name}` does not exist or you do not have access to it.", "model_not_found"
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        return 400, "'messages' must be a non-empty array of objects with a 'role'.", None
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return 400, f"'{name}' must be a whole number of at least 1.", None
    return None


async def chat_completions(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    config = emulator.config
    arrival = clock()  # TTFT counts from here: parsing, limits and cache lookups are part of it
    emulator.stats.requests += 1
    if config.require_api_key and not _has_key(request):
        return _error(
            emulator, 401, "You didn't provide an API key.", "invalid_request_error", "invalid_api_key"
        )
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(emulator, 400, "The request body is not valid JSON.", "invalid_request_error", None)
    refused = _check_body(body, config.model)
    if refused is not None:
        status, message, code = refused
        return _error(emulator, status, message, "invalid_request_error", code)
    messages: list[Mapping[str, Any]] = body["messages"]
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = (
        config.usage and stream and isinstance(options, dict) and options.get("include_usage") is True
    )
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    prompt = message_tokens(messages)
    fault = emulator.draw_fault()
    if fault == "429":
        emulator.stats.limited += 1
        retry = config.fault_429_retry_ms / 1000
        return _error(
            emulator,
            429,
            "Rate limit reached: quota used by other keys.",
            "tokens",
            "rate_limit_exceeded",
            retry,
        )
    charge = len(prompt) + (budget or config.reasoning_tokens + config.output_tokens)
    admission = emulator.limiter.admit(charge, time.monotonic())
    if not admission.admitted:
        emulator.stats.limited += 1
        if admission.reason == "too_large":
            message = f"Request too large: {charge} tokens is more than the bucket holds."
            return _error(emulator, 429, message, "tokens", "rate_limit_exceeded", 60.0)
        message = (
            f"Rate limit reached for {admission.reason}. Please try again in {admission.retry_after_s:.3f}s."
        )
        return _error(
            emulator, 429, message, admission.reason, "rate_limit_exceeded", admission.retry_after_s
        )
    emulator.stats.admitted += 1
    emulator.stats.max_in_flight = max(emulator.stats.max_in_flight, emulator.limiter.in_flight)
    handed_over = False
    try:
        if fault == "5xx":
            return _error(
                emulator, 503, "The server is overloaded, please try again later.", "server_error", None
            )
        cached = emulator.cache.hit_and_store(prompt) if config.cache else 0
        reply = emulator.plan_reply(messages, budget, len(prompt), cached, fault, arrival)
        request.app.state.billing.record(
            request,
            config.model,
            reply.prompt_tokens,
            reply.cached_tokens,
            len(reply.tokens),
            reply.reasoning_tokens,
            body.get("service_tier"),
        )
        headers = {
            **emulator.limiter.headers(time.monotonic()),
            "x-request-id": reply.id,
            "x-arrival": repr(arrival),
        }
        if stream:
            handed_over = True
            body_parts = stream_reply(emulator, reply, include_usage)
            return EventStream(body_parts, {**headers, "cache-control": "no-cache"}, emulator.limiter.release)
        return await _whole_reply(emulator, reply, headers)
    finally:
        if not handed_over:
            emulator.limiter.release()


async def _whole_reply(emulator: Emulator, reply: Reply, headers: dict[str, str]) -> Response:
    if reply.due:
        await _sleep_until(reply.due[-1], emulator.precise)
    reasoning = "".join(t for r, t in reply.tokens if r)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(t for r, t in reply.tokens if not r)}
    if reasoning:
        message["reasoning_content"] = reasoning
    document: dict[str, Any] = {
        "id": reply.id,
        "object": "chat.completion",
        "created": emulator.created,
        "model": emulator.config.model,
        "system_fingerprint": "fp_quotascope",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
    }
    if emulator.config.usage:
        document["usage"] = reply.usage()
    text = json.dumps(document).encode()
    if reply.fault == "malformed":
        return Response(text[: len(text) // 2], 200, headers=headers, media_type="application/json")
    if reply.fault == "drop":

        async def cut() -> AsyncIterator[bytes]:
            yield text[: len(text) // 2]
            raise DroppedStream

        # the slot was released by the caller; the cut stream holds none
        return EventStream(cut(), headers, lambda: None, media_type="application/json")
    return Response(text, 200, headers=headers, media_type="application/json")


async def list_models(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    if emulator.config.require_api_key and not _has_key(request):
        return _error(
            emulator, 401, "You didn't provide an API key.", "invalid_request_error", "invalid_api_key"
        )
    model = {
        "id": emulator.config.model,
        "object": "model",
        "created": emulator.created,
        "owned_by": "quotascope",
    }
    headers = emulator.limiter.headers(time.monotonic())
    return JSONResponse({"object": "list", "data": [model]}, headers=headers)


def build_app(config: EmulatorConfig, billing: Billing | None = None) -> Starlette:
    """The app; `billing` prices what it answers and serves the admin usage and cost reports."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            *billing_routes(),
        ]
    )
    app.state.emulator = Emulator(config)
    app.state.billing = billing if billing is not None else Billing()
    return app
