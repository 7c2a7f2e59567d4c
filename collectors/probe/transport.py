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

And the costs on the hot path of every request, measured against the emulator (issue #18), which
`TimedBackend` takes away by giving httpcore connections on asyncio's own transports (`TimedStream`):
- httpcore wrote a request's headers and its body with one system call each (plus an empty one for the end
  of the message): two packets, the server woken twice, 0.1–0.4 ms more before the request was whole on the
  wire at concurrency 1. A request's writes now leave in one, when its reply is first read.
- Its stream for asyncio goes through anyio: a cancel scope for every read and write, and a table of the
  socket's attributes rebuilt for every idle-connection check (0.3 s of a 256-stream probe's CPU); 18 % less
  CPU at 256 streams without it.
- A chunk was timed after h11, httpcore and httpx had handed it on (~0.1 ms, more when a collection or
  another task ran between). Now it is timed when the kernel received its bytes (`last_read`): on Linux a
  TCP connection is read with recvmsg and SO_TIMESTAMPNS (`_KernelTimed`), so a client starved of CPU (2
  shared cores, 256 streams) reads late but still times each chunk by its arrival; elsewhere, and under
  TLS (asyncio's own transport beneath), when the bytes reached the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
import struct
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import anyio
import httpcore
import httpcore._synchronization as httpcore_sync
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


def _lock_without_a_turn(lock: httpcore_sync.AsyncLock) -> None:
    """httpcore's lock on asyncio, made with anyio's `fast_acquire`: a free lock is taken without giving the
    event loop a turn first. httpcore takes two such locks (the connection's and its HTTP/1.1 state's)
    between a request's send time and its bytes leaving; each turn on a starved loop is a wait behind every
    other ready task, counted in that request's TTFT. At 256 streams under load ~12, three A/B pairs put the
    median send delay at 0.2 ms with it and 0.7-392 ms without. Exclusion is unchanged: a held lock still
    makes the next taker wait. These are httpcore's private parts: a release without them keeps its own
    locks (timings as before the change), never a failing probe."""
    _plain_setup(lock)
    if getattr(lock, "_backend", None) == "asyncio" and hasattr(lock, "_anyio_lock"):
        lock._anyio_lock = anyio.Lock(fast_acquire=True)


_plain_setup = httpcore_sync.AsyncLock.setup
httpcore_sync.AsyncLock.setup = _lock_without_a_turn  # type: ignore[method-assign,assignment]

T = TypeVar("T")
FLUSH_BYTES = 1 << 16  # a body this large is sent as it comes rather than held until the reply is read
HELD_BYTES = 1 << 20  # received but not yet read: above this the connection stops reading until it is


async def _in_time(awaitable: Awaitable[T], timeout: float | None, late: type[Exception], why: str) -> T:
    """`awaitable`'s result, or `late(why)` raised once `timeout` seconds (None: no limit) have passed."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError as e:
        raise late(why) from e


class _Arrivals(asyncio.Protocol):
    """A connection's bytes as the event loop hands them over, each piece with the time it came."""

    def __init__(self) -> None:
        self.pieces: deque[tuple[float, bytes]] = deque()
        self.held = 0  # bytes in `pieces`
        self.held_back = False  # reading paused until they are read
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one without deriving from it

    def data_received(self, data: bytes, at: float | None = None) -> None:
        """`data` arrived at `at` (perf_counter s; the kernel's receive time where known), else now."""
        self.pieces.append((time.perf_counter() if at is None else at, data))
        self.held += len(data)
        if self.held > HELD_BYTES and self.transport is not None and not self.held_back:
            self.held_back = True
            self.transport.pause_reading()  # a server faster than its reader: hold it back
        self._wake(self.waiter)

    def taken(self, size: int) -> None:
        """`size` bytes were read: reading resumes once what is held is back under the limit."""
        self.held -= size
        if self.held_back and self.held <= HELD_BYTES and self.transport is not None:
            self.held_back = False
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake(self.waiter)
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake(self.waiter)
        self._wake(self.drained)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake(self.drained)

    @staticmethod
    def _wake(waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _kernel_timestamps() -> int | None:
    """SO_TIMESTAMPNS where the kernel offers it with a 64-bit timespec (Linux, 64-bit), else None."""
    if sys.platform != "linux" or struct.calcsize("l") != 8:
        return None
    return getattr(socket, "SO_TIMESTAMPNS", 35)  # 35 in Linux's asm-generic headers; Python lacks the name


SO_TIMESTAMPNS = _kernel_timestamps()
_ANCILLARY = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
_READ_BYTES = 1 << 16


def _arrived(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time of the bytes a recvmsg returned (of its last packet), on perf_counter's
    clock: how long ago it was on the wall clock, taken from now. Now, if the kernel gave none."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanoseconds = struct.unpack("qq", payload[:16])
            age: float = time.time() - (seconds + nanoseconds / 1e9)
            return time.perf_counter() - max(0.0, age)
    return time.perf_counter()


class _KernelTimed(asyncio.Transport):
    """Just enough of an asyncio transport over a connected non-blocking TCP socket, read with recvmsg so
    that every piece carries the time the kernel received it (SO_TIMESTAMPNS): a client starved of CPU
    reads late, but its reads are still timed when the bytes came. Writes go straight to the socket; what
    it does not take waits for it to drain."""

    def __init__(self, sock: socket.socket, protocol: _Arrivals) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._out = bytearray()
        self._closing = False
        self._reading = False
        protocol.connection_made(self)
        self.resume_reading()

    def _readable(self) -> None:
        protocol = self._protocol
        while self._reading:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(_READ_BYTES, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._lost(e)
                return
            if not data:
                self.pause_reading()
                protocol.eof_received()
                self.close()
                return
            protocol.data_received(data, _arrived(ancillary))
            if len(data) < _READ_BYTES:
                return  # the socket is drained: no need to ask again

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if not self._out:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as e:
                self._lost(e)
                return
            data = memoryview(data)[sent:]
            if not data:
                return
            self._loop.add_writer(self._fd, self._writable)
            self._protocol.pause_writing()
        self._out += data

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        del self._out[:sent]
        if not self._out:
            self._loop.remove_writer(self._fd)
            self._protocol.resume_writing()

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._readable)

    def is_reading(self) -> bool:
        return self._reading

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._lost(None)

    def abort(self) -> None:
        self._lost(None)

    def _lost(self, error: BaseException | None) -> None:
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if self._out:
            self._loop.remove_writer(self._fd)
            self._out.clear()
        self._sock.close()
        self._protocol.connection_lost(error)

    def detach(self) -> socket.socket:
        """Stop reading and writing here and give up the socket (for a transport of asyncio's own)."""
        self.pause_reading()
        if self._out:
            raise httpcore.WriteError("bytes still waiting to be sent")
        self._closing = True
        return self._sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name in ("sockname", "peername"):
            try:
                return self._sock.getsockname() if name == "sockname" else self._sock.getpeername()
            except OSError:
                return default
        return default


async def _open_socket(host: str, port: int, local_address: str | None) -> socket.socket:
    """A connected non-blocking TCP socket to the first of `host`'s addresses that answers."""
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if local_address:
                sock.bind((local_address, 0))
            await loop.sock_connect(sock, address)
        except OSError as e:
            sock.close()
            error = e
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


class TimedStream(httpcore.AsyncNetworkStream):
    """One connection on asyncio's own transport (httpcore's stream for an asyncio loop goes through anyio:
    a cancel scope per read and write, and a table of attributes rebuilt for each idle-connection check).

    A request's writes are gathered and sent in one when its reply is first read (or `FLUSH_BYTES` are
    waiting). `last_read` is when the bytes a read returns reached the event loop (`data_received`), before
    any task ran on them: the time a chunk of the reply arrived, as near the socket as Python gets.
    `request_written` is when the current request's first bytes were handed to the socket (a write after a
    read begins the next request on the connection): the moment it actually left."""

    def __init__(
        self, transport: asyncio.Transport, protocol: _Arrivals, under: asyncio.Transport | None = None
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._under = under  # the TCP transport beneath TLS
        self._pending: list[bytes] = []
        self._size = 0
        self.last_read = 0.0
        # when the current request's first bytes were handed to the socket: a write after a read starts
        # the next request on this connection
        self.request_written: float | None = None
        self._read_since_write = False

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._read_since_write:
            self._read_since_write = False
            self.request_written = None
        if buffer:
            self._pending.append(buffer)
            self._size += len(buffer)
        if self._size >= FLUSH_BYTES:
            await self.flush(timeout)

    async def flush(self, timeout: float | None = None) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending, self._size = [], 0
        protocol = self._protocol
        if protocol.error is not None or self._transport.is_closing():
            raise httpcore.WriteError(f"the connection is closed ({protocol.error or 'by the server'})")
        if self.request_written is None:
            self.request_written = time.perf_counter()
        self._transport.write(data)
        if protocol.paused:  # the socket's buffer is full: wait until it drains
            protocol.drained = asyncio.get_running_loop().create_future()
            await _in_time(protocol.drained, timeout, httpcore.WriteTimeout, "timed out sending the request")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # as httpcore does after a failed write: the server may have answered (a 413, say) already
        with contextlib.suppress(httpcore.WriteError):
            await self.flush(timeout)
        self._read_since_write = True
        protocol = self._protocol
        if not protocol.pieces and not protocol.eof:
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                await _in_time(
                    protocol.waiter, timeout, httpcore.ReadTimeout, "timed out waiting for the next byte"
                )
            finally:
                protocol.waiter = None
        if protocol.pieces:
            arrived, data = protocol.pieces.popleft()
            if len(data) > max_bytes:
                protocol.pieces.appendleft((arrived, data[max_bytes:]))
                data = data[:max_bytes]
            protocol.taken(len(data))
            self.last_read = arrived
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(f"the connection broke: {protocol.error}")
        return b""  # the server closed it

    async def aclose(self) -> None:
        self._pending, self._size = [], 0
        self._transport.close()  # under TLS: close_notify handed to the TCP transport
        if self._under is not None:
            self._under.close()  # which sends it and closes, not waiting for the server's (TLS allows it)

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        await self.flush(timeout)  # a proxy's CONNECT has been answered by now: nothing is left here
        loop = asyncio.get_running_loop()
        plain, protocol = self._transport, self._protocol
        if isinstance(plain, _KernelTimed):  # asyncio's TLS needs a transport of its own loop beneath
            if protocol.pieces:
                raise httpcore.ConnectError("the server spoke before the TLS handshake")
            protocol = _Arrivals()
            plain, _ = await loop.create_connection(lambda: protocol, sock=plain.detach())
        tls = loop.start_tls(plain, protocol, ssl_context, server_hostname=server_hostname)
        try:
            transport = await _in_time(
                tls, timeout, httpcore.ConnectTimeout, "timed out in the TLS handshake"
            )
        except (OSError, ssl.SSLError) as e:
            raise httpcore.ConnectError(f"TLS handshake failed: {e}") from e
        if transport is None:
            raise httpcore.ConnectError("TLS handshake failed: the connection closed")
        return type(self)(transport, protocol, plain)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # httpcore's test of an idle connection: has the server sent or closed?
            return bool(self._protocol.pieces) or self._protocol.eof
        key = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername"}
        return self._transport.get_extra_info(key.get(info, info))


class TimedBackend(httpcore.AsyncNetworkBackend):
    """Connections on asyncio's own transports, as `stream` (`TimedStream`)."""

    stream: type[TimedStream] = TimedStream

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        why = f"timed out connecting to {host}:{port}"
        try:
            if SO_TIMESTAMPNS is None:
                local = (local_address, 0) if local_address else None
                connecting = loop.create_connection(_Arrivals, host, port, local_addr=local)
                transport, protocol = await _in_time(connecting, timeout, httpcore.ConnectTimeout, why)
                sock = transport.get_extra_info("socket")
            else:
                opening = _open_socket(host, port, local_address)
                sock = await _in_time(opening, timeout, httpcore.ConnectTimeout, why)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                protocol = _Arrivals()
                transport = _KernelTimed(sock, protocol)
        except OSError as e:
            raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            sock.setsockopt(*option)
        return self.stream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        connecting = loop.create_unix_connection(_Arrivals, path)
        try:
            transport, protocol = await _in_time(
                connecting, timeout, httpcore.ConnectTimeout, f"timed out connecting to {path}"
            )
        except OSError as e:
            raise httpcore.ConnectError(f"cannot connect to {path}: {e}") from e
        for option in socket_options or ():
            transport.get_extra_info("socket").setsockopt(*option)
        return self.stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def timed_pool(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """`transport` with its connections opened by `TimedBackend`. httpx does not pass a network backend on
    to its httpcore pool (direct, HTTP or SOCKS proxy: all subclasses of httpcore's pool, which keeps it as
    `_network_backend`), so it is swapped in before the first connection opens."""
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise TypeError("this httpcore keeps no network backend on its pool; quotascope needs httpcore 1.x")
    pool._network_backend = TimedBackend()
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
