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

And two costs on the hot path of every request, measured at concurrency 1 against the emulator (issue #18):
- httpcore writes a request's headers and its body with one system call each (plus an empty one for the end of
  the message): two packets, the server woken twice, and 0.1–0.4 ms more before the request is whole on the
  wire. `TimedStream` gathers a request's writes and sends them in one, when the reply is first read.
- Bytes pass through h11, httpcore and httpx (~0.1 ms, longer when a collection or another task runs between)
  before the reader sees them. `TimedStream` notes when each read returned from the socket; the reader times
  a chunk by the read that brought it (`last_read`), not by when the layers above handed it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpcore
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


FLUSH_BYTES = 1 << 16  # a body this large is sent as it comes rather than held until the reply is read


class TimedStream(httpcore.AsyncNetworkStream):
    """A connection's socket stream whose writes wait for the first read, and whose reads are timed."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._size = 0
        self.last_read = 0.0  # perf_counter s at which the latest read returned
        self._socket: socket.socket | None = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)
            self._size += len(buffer)
        if self._size >= FLUSH_BYTES:
            await self.flush(timeout)

    async def flush(self, timeout: float | None = None) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._size = [], 0
            await self._stream.write(data, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # as httpcore does after a failed write: the server may have answered (a 413, say) already
        with contextlib.suppress(httpcore.WriteError):
            await self.flush(timeout)
        data = await self._stream.read(max_bytes, timeout)
        self.last_read = time.perf_counter()
        return data

    async def aclose(self) -> None:
        self._pending, self._size = [], 0
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        await self.flush(timeout)  # a proxy's CONNECT is read before TLS starts; nothing is left here
        return TimedStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # asked of every idle connection each time a request is placed; anyio rebuilds a table of its
            # attributes to give the socket (34 µs a time, 0.3 s of a 256-stream probe's CPU): kept here
            if self._socket is None:
                self._socket = self._stream.get_extra_info("socket")
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once (data, or the end a server's close left): httpcore's test of an
    idle connection the server may have dropped. A socket already gone counts as readable, as there."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class TimedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, its connections wrapped in `TimedStream`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return TimedStream(
            await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return TimedStream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def timed_pool(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """`transport` with its connections opened through `TimedBackend`. httpx does not pass a network backend
    on to its httpcore pool (direct, HTTP or SOCKS proxy: all subclasses of httpcore's pool, which keeps it as
    `_network_backend`), so it is swapped in before the first connection opens."""
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise TypeError("this httpcore keeps no network backend on its pool; quotascope needs httpcore 1.x")
    pool._network_backend = TimedBackend(pool._network_backend)
    return transport


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
        self.pools = [timed_pool(httpx.AsyncHTTPTransport(limits=limits, **options)) for _ in range(shards)]
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
