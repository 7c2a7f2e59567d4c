"""One streamed chat-completions exchange, timed chunk by chunk, with every failure classified.

Times are `time.perf_counter()` seconds taken when bytes arrive, before any JSON parsing: on `make_client`'s
connections, when the bytes reached the event loop (`collectors.probe.transport.TimedStream`), not when h11,
httpcore and httpx have handed them on. A token of any
kind is a non-empty `delta.reasoning_content` (or `delta.reasoning`), `delta.content` or `delta.tool_calls`;
the empty role chunk many servers send first is not a token. Nothing here keeps the key: error text that
could echo it goes through `redact` first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio._backends._asyncio
import anyio._core._sockets
import httpcore
import httpx

from collectors.probe.transport import ON_THE_WIRE, TimedStream
from models.outside_text import redact_secrets
from models.probe import ErrorClass

# httpx imports httpcore and anyio's socket layer on its first request (~60 ms here): imported above, so
# neither the first request's timing nor the event-loop lag monitor pays for it.
_PRELOADED = (anyio._backends._asyncio, anyio._core._sockets, httpcore)

now = time.perf_counter
MAX_ERROR_CHARS = 200


@dataclass
class Exchange:
    """What one HTTP exchange gave. Times in perf_counter seconds; `content` lives in memory only."""

    t_sent: float = 0.0  # when the request actually started: its connect, or its first byte to the socket
    connected: bool = False  # it opened its connection (so `t_sent` is the connect's start)
    status: int | None = None
    error_class: ErrorClass | None = None
    error: str = ""
    first_any: float | None = None
    first_content: float | None = None
    last_token: float | None = None
    last_byte: float | None = None
    content_parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    usage: Mapping[str, Any] | None = None
    finish_reason: str | None = None
    chunks: int = 0
    done: bool = False
    retry_after_s: float | None = None
    ratelimit: dict[str, str] = field(default_factory=dict)

    @property
    def content(self) -> str:
        return "".join(self.content_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    def fail(self, error_class: ErrorClass, message: str) -> None:
        if self.error_class is None:
            self.error_class = error_class
            self.error = message


def redact(text: str, secret: str | None) -> str:
    """`text` with the secret, and anything shaped like a key or a bearer token
    (`models.outside_text.redact_secrets`), replaced; whitespace collapsed, cut short."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = " ".join(redact_secrets(text).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def parse_retry_after(headers: Mapping[str, str], wall_now: datetime | None = None) -> float | None:
    """Seconds to wait: `retry-after-ms` (OpenAI's, precise) first, else `Retry-After` seconds or date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = -1
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (wall_now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


def classify_status(status: int) -> ErrorClass | None:
    if status == 200:
        return None
    if status == 429:
        return "quota_429"
    if status >= 500:
        return "overload_5xx"
    if 400 <= status < 500:
        return "client_4xx"
    return "protocol"


def _error_message(body: bytes, status: int) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error", document)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return f"HTTP {status}: {error['message']}"
        if isinstance(error, str):
            return f"HTTP {status}: {error}"
    text = body[:MAX_ERROR_CHARS].decode("utf-8", "replace").strip()
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def _mid_stream_error(error: Any) -> tuple[ErrorClass, str]:
    """An `{"error": ...}` event inside a 200 stream: a quota message or a provider failure."""
    message = error.get("message") if isinstance(error, dict) else error
    code = error.get("code") if isinstance(error, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    quota = code in (429, "429", "rate_limit_exceeded") or "rate" in str(kind).lower()
    return ("quota_429" if quota else "overload_5xx"), f"error event mid-stream: {message}"


class StreamReader:
    """Reads SSE bytes into `Exchange`: events end at a blank line, `data:` lines join with newlines,
    `:` comments (keep-alives) and other fields are skipped, `data: [DONE]` ends the stream."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.pending = b""
        self.data: list[bytes] = []

    def feed(self, data: bytes, t: float) -> bool:
        """Consume bytes received at `t`; False once the stream is over or broken."""
        self.exchange.last_byte = t
        *lines, self.pending = (self.pending + data).split(b"\n")
        return all(self._line(line.rstrip(b"\r"), t) for line in lines)

    def close(self, t: float) -> None:
        """End of body: an event not closed by a blank line still counts."""
        if self.pending:
            self._line(self.pending.rstrip(b"\r"), t)
            self.pending = b""
        if self.data:
            self._dispatch(t)

    def _line(self, line: bytes, t: float) -> bool:
        if not line:
            return self._dispatch(t) if self.data else True
        if line.startswith(b"data:"):
            value = line[5:]
            self.data.append(value[1:] if value.startswith(b" ") else value)
        return True

    def _dispatch(self, t: float) -> bool:
        payload = b"\n".join(self.data)
        self.data = []
        exchange = self.exchange
        if payload.strip() == b"[DONE]":
            exchange.done = True
            return False
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            exchange.fail("protocol", "malformed chunk: not JSON")
            return False
        if not isinstance(chunk, dict):
            exchange.fail("protocol", "malformed chunk: not a JSON object")
            return False
        exchange.chunks += 1
        if chunk.get("error"):
            exchange.fail(*_mid_stream_error(chunk["error"]))
            return False
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            exchange.usage = usage
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            exchange.fail("protocol", "malformed chunk: choices is not a list")
            return False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                self._delta(delta, t)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                exchange.finish_reason = finish
        return True

    def _delta(self, delta: Mapping[str, Any], t: float) -> None:
        exchange = self.exchange
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content = delta.get("content")
        token = False
        if isinstance(reasoning, str) and reasoning:
            exchange.reasoning_parts.append(reasoning)
            token = True
        if isinstance(content, str) and content:
            exchange.content_parts.append(content)
            if exchange.first_content is None:
                exchange.first_content = t
            token = True
        if delta.get("tool_calls"):
            token = True
        if token:
            if exchange.first_any is None:
                exchange.first_any = t
            exchange.last_token = t


def _whole_body(exchange: Exchange, body: bytes, t: float) -> None:
    """A server that ignored `stream: true` and sent one JSON document: every token arrived at `t`."""
    reader = StreamReader(exchange)
    reader.data = [body]
    reader._dispatch(t)
    exchange.done = exchange.error_class is None


def build_request(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    timeout: httpx.Timeout,
) -> httpx.Request:
    """The POST of `body`, ready for `exchange`: built ahead, so that its send time holds only the send."""
    return client.build_request(
        "POST", url, content=json.dumps(body).encode(), headers=headers, timeout=timeout
    )


async def exchange(
    client: httpx.AsyncClient,
    request: httpx.Request,
    total_timeout_s: float,
    secret: str | None,
    gate: asyncio.Lock | None = None,
    ahead: Callable[[], None] | None = None,
) -> Exchange:
    """Send `request` (from `build_request`, used once) and read the streamed reply; never raises for anything
    the server or network does.

    `gate`, shared by the requests of one run, lets one request at a time take a pooled connection, for
    clients whose transport does not do so itself (see `collectors.probe.transport`, which `make_client`
    uses). `t_sent` is when the request actually started: the start of its connect if it opened one, else
    when its bytes were handed to the socket (on `make_client`'s connections; httpcore's event before
    writing on any other), so the send delay shows client-side queueing.
    `ahead` is called once the first token is in (TTFT taken, the rest of the reply not yet due): a closed
    loop builds its next request then.
    """
    result = Exchange()
    held = False

    def open_gate() -> None:
        nonlocal held
        if held and gate is not None:
            held = False
            gate.release()

    async def trace(name: str, info: Mapping[str, Any]) -> None:
        if name in ON_THE_WIRE:
            if not result.t_sent:
                result.t_sent = now()
                result.connected = name == "connection.connect_tcp.started"
            open_gate()

    try:
        async with asyncio.timeout(total_timeout_s):
            if gate is not None:
                await gate.acquire()
                held = True
            start = now()
            request.extensions = {**request.extensions, "trace": trace}
            response = await client.send(request, stream=True)
            try:
                open_gate()  # a transport that sends no trace events
                result.t_sent = result.t_sent or start
                stream = response.extensions.get("network_stream")
                if isinstance(stream, TimedStream) and stream.request_written and not result.connected:
                    result.t_sent = stream.request_written  # its bytes handed to the socket
                await _read(response, result, secret, ahead)
            finally:
                await response.aclose()
    except TimeoutError:
        result.fail("timeout", f"no complete reply within the {total_timeout_s:g} s total timeout")
    except httpx.TimeoutException as e:
        phase = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the next byte",
            httpx.WriteTimeout: "sending",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(e), "waiting")
        result.fail("timeout", f"timed out {phase}")
    except httpx.RemoteProtocolError as e:
        result.fail("connection", redact(f"the server closed the connection: {e}", secret))
    except (httpx.ProtocolError, httpx.DecodingError) as e:
        result.fail("protocol", redact(f"unreadable HTTP response: {e}", secret))
    except httpx.TransportError as e:
        result.fail("connection", redact(f"connection failed: {e or type(e).__name__}", secret))
    finally:
        open_gate()
    result.t_sent = result.t_sent or now()
    if result.last_byte is None and result.error_class is None:
        result.last_byte = now()
    return result


async def _read(
    response: httpx.Response, result: Exchange, secret: str | None, ahead: Callable[[], None] | None
) -> None:
    result.status = response.status_code
    # kept and shown later: a server that echoes the key in one of them must not get it stored
    result.ratelimit = {
        redact(name.lower(), secret): redact(value, secret)
        for name, value in response.headers.items()
        if name.lower().startswith("x-ratelimit-")
    }
    result.retry_after_s = parse_retry_after(response.headers)
    failure = classify_status(response.status_code)
    if failure is not None:
        body = await response.aread()
        result.last_byte = now()
        result.fail(failure, redact(_error_message(body, response.status_code), secret))
        return
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        body = await response.aread()
        result.last_byte = now()
        _whole_body(result, body, result.last_byte)
        return
    reader = StreamReader(result)
    reading = True
    # a chunk's bytes came with the stream's latest read: its time is when they reached the event loop
    stream = response.extensions.get("network_stream")
    socket = stream if isinstance(stream, TimedStream) else None
    async for data in response.aiter_bytes():  # decoded: some hosts gzip their event streams
        if reading and not reader.feed(data, socket.last_read if socket is not None else now()):
            if not result.done:
                break  # a broken stream: drop the connection
            reading = False  # after [DONE], drain the body so the connection goes back to the pool
        if ahead is not None and result.first_any is not None:
            ahead()
            ahead = None
    if reading:
        reader.close(now())
    if not result.done:
        result.fail("protocol", "the stream ended without data: [DONE]")
    result.error = redact(result.error, secret)  # a mid-stream error event may quote the key
