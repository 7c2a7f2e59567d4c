"""A transport that spreads requests over several small connection pools, each with a send gate.

Two faults of httpcore's pool, both of which the probe would otherwise report as the endpoint's TTFT:
- Its bookkeeping re-examines every connection against every other one each time a request starts or ends
  (`_assign_requests_to_connections` counts idle connections inside a loop over connections): quadratic in
  the pool size. At 256 streams that was 11.5 s of a 16 s probe's CPU.
- It can hand the same idle connection to two requests started in the same instant; the loser waits until
  some other response ends (seconds, at 64+ streams).
Pools of at most `per_pool` connections keep each pass small, and a pool's gate lets one request at a time
take a connection, held until that request is on the wire (httpcore's trace events say when). A request goes
to a pool with a free connection, preferring a free gate, then the fewest open responses.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

# httpcore trace events that mean "this request now owns a connection and is being written"
ON_THE_WIRE = frozenset(
    {
        "http11.send_request_headers.started",
        "http2.send_request_headers.started",
        "connection.connect_tcp.started",
    }
)

Trace = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class _Released(httpx.AsyncByteStream):
    """A response body that tells its pool's counter when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, connections: int, per_pool: int = 16, **options: Any) -> None:
        shards = max(1, math.ceil(connections / per_pool))
        self.size = size = math.ceil(connections / shards)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        options.setdefault("verify", httpx.create_ssl_context())  # one CA load (~35 ms), not one per pool
        self.pools = [httpx.AsyncHTTPTransport(limits=limits, **options) for _ in range(shards)]
        self.gates = [asyncio.Lock() for _ in range(shards)]
        self.open = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # a pool with a free connection first (a full one would make us wait for a reply to end), then one
        # whose gate is free, then the least busy
        index = min(
            range(len(self.pools)),
            key=lambda i: (self.open[i] >= self.size, self.gates[i].locked(), self.open[i]),
        )
        gate = self.gates[index]
        self.open[index] += 1
        held = False

        def open_gate() -> None:
            nonlocal held
            if held:
                held = False
                gate.release()

        def release() -> None:
            self.open[index] -= 1

        caller_trace: Trace | None = request.extensions.get("trace")

        async def trace(name: str, info: Mapping[str, Any]) -> None:
            if name in ON_THE_WIRE:
                open_gate()
            if caller_trace is not None:
                await caller_trace(name, info)

        request.extensions = {**request.extensions, "trace": trace}
        try:
            await gate.acquire()
            held = True
            response = await self.pools[index].handle_async_request(request)
        except BaseException:
            open_gate()
            release()
            raise
        open_gate()
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Released(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()
