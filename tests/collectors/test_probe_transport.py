"""The probe's connections (`collectors.probe.transport.TimedStream`) on real sockets: a request leaves in one
write when its reply is first read, every read is timed when its bytes reached the event loop, and the
failures httpcore expects of a network stream come as its own exceptions."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpcore
import httpx
import pytest
import trustme
import uvicorn

from collectors.emulator import EmulatorConfig, EmulatorServer, bind, build_app
from collectors.emulator.server import start_in_thread
from collectors.probe import Endpoint, make_client, run_probe
from collectors.probe.loop import run_async
from collectors.probe.transport import (
    FLUSH_BYTES,
    HELD_BYTES,
    SO_TIMESTAMPNS,
    ShardedTransport,
    TimedBackend,
    TimedStream,
)
from models.probe import LoadPlan, ProbeRun

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
# asyncio's own loop (a library user's) and the CLI's (uvloop, where installed: its transports are not
# subclasses of asyncio's, and a protocol must not assume they are)
LOOPS = pytest.mark.parametrize("run", [asyncio.run, run_async], ids=["asyncio", "cli-loop"])


async def _server() -> tuple[asyncio.Server, int, list[bytes], asyncio.Event]:
    """A TCP server that notes each piece it receives and answers `ok` once 4 + 4 bytes have come."""
    received: list[bytes] = []
    whole = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = 0
        while size < 8:
            piece = await reader.read(65536)
            if not piece:
                break
            received.append(piece)
            size += len(piece)
        whole.set()
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received, whole


@LOOPS
def test_a_requests_writes_leave_together_when_its_reply_is_read_and_the_read_is_timed(run: Runner) -> None:
    async def go() -> None:
        server, port, received, whole = await _server()
        async with server:
            stream = await TimedBackend().connect_tcp("127.0.0.1", port)
            assert isinstance(stream, TimedStream)
            await stream.write(b"head")
            await stream.write(b"body")
            await stream.write(b"")  # httpcore's end of a body with a Content-Length
            await asyncio.sleep(0.05)
            assert received == []  # nothing sent yet: the request is not whole until the reply is awaited
            before = time.perf_counter()
            reply = await stream.read(100)
            after = time.perf_counter()
            await asyncio.wait_for(whole.wait(), 5)
            await stream.aclose()
        assert reply == b"ok"
        assert received == [b"headbody"]  # one write, so one piece
        assert before < stream.last_read <= after

    run(go())


@pytest.mark.skipif(SO_TIMESTAMPNS is None, reason="the kernel's receive times are read on 64-bit Linux")
@LOOPS
def test_a_read_is_timed_when_the_kernel_received_it_not_when_a_busy_client_got_to_it(run: Runner) -> None:
    """The reply comes while the client's loop is blocked: its time is the arrival, not the late read."""
    listener = socket.create_server(("127.0.0.1", 0))
    answered: list[float] = []
    sent = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(2):
                conn.recv(100)
                conn.sendall(b"ok")
                answered.append(time.perf_counter())
                sent.set()
            conn.recv(100)  # until the client closes

    server = threading.Thread(target=serve, daemon=True)
    server.start()

    async def go() -> tuple[bytes, float, float]:
        stream = await TimedBackend().connect_tcp("127.0.0.1", listener.getsockname()[1])
        assert isinstance(stream, TimedStream)
        # a first exchange: the kernel turns its packet timestamps on a moment after the first socket asks
        await stream.write(b"ping")
        assert await stream.read(100, timeout=5) == b"ok"
        await asyncio.sleep(0.1)
        sent.clear()
        await stream.write(b"ping")
        await stream.flush()
        assert sent.wait(5)  # a client starved of CPU (its loop blocked): the reply waits in the kernel
        time.sleep(0.3)
        busy_until = time.perf_counter()
        reply = await stream.read(100)
        await stream.aclose()
        return reply, stream.last_read, busy_until

    try:
        reply, arrived, busy_until = run(go())
        server.join(timeout=5)
    finally:
        listener.close()
    assert reply == b"ok"
    assert answered[1] - 0.005 < arrived < busy_until - 0.25


@LOOPS
def test_httpcores_locks_are_taken_without_a_turn_of_the_loop_and_still_exclude(run: Runner) -> None:
    """Between a request's send time and its bytes httpcore takes two locks: a free one costs no turn of the
    event loop (another ready task does not run first), a held one still makes the next taker wait."""

    async def go() -> tuple[list[str], list[str]]:
        lock = httpcore._synchronization.AsyncLock()
        ran: list[str] = []

        async def other() -> None:
            ran.append("other")

        task = asyncio.create_task(other())  # ready to run at the loop's next turn
        async with lock:
            seen = list(ran)
        await task
        order: list[str] = []

        async def taker(name: str) -> None:
            async with lock:
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        await asyncio.gather(taker("a"), taker("b"))
        return seen, order

    seen, order = run(go())
    assert seen == []
    assert order == ["a in", "a out", "b in", "b out"]


@LOOPS
def test_a_body_larger_than_the_flush_size_is_sent_as_it_comes(run: Runner) -> None:
    async def go() -> list[bytes]:
        got: list[bytes] = []
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.readexactly(FLUSH_BYTES))
            done.set()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            stream = await TimedBackend().connect_tcp("127.0.0.1", port)
            await stream.write(b"x" * FLUSH_BYTES)  # no read follows: the server must get it all the same
            await asyncio.wait_for(done.wait(), 5)
            await stream.aclose()
        return got

    assert run(go()) == [b"x" * FLUSH_BYTES]


@LOOPS
def test_every_probe_request_is_one_write_on_make_clients_connections(run: Runner) -> None:
    """Through httpx and httpcore as the probe uses them: headers, body and end of message in one write."""
    writes: list[int] = []

    class Counted(TimedStream):
        async def flush(self, timeout: float | None = None) -> None:
            if self._pending:
                writes.append(len(self._pending))
            await super().flush(timeout)

    class Backend(TimedBackend):
        stream = Counted

    config = EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=2)
    plan = LoadPlan(requests=5, max_tokens=5, input_tokens=(100, 1000))

    async def go(base_url: str) -> int:
        target = Endpoint("emu", base_url, config.model)
        async with make_client(target, plan) as client:
            transport = client._transport
            assert isinstance(transport, ShardedTransport)
            for pool in transport.pools:
                backend = pool._pool._network_backend
                assert isinstance(backend, TimedBackend)
                pool._pool._network_backend = Backend()
            run = await run_probe(client, target, plan)
            return sum(r.ok for r in run.results)

    with EmulatorServer(config) as server:
        ok = run(go(server.base_url))
    assert ok == 5
    assert len(writes) == 5  # one flush per request
    assert all(pieces == 2 for pieces in writes)  # headers and body (the empty end of message adds nothing)


@LOOPS
def test_an_idle_connection_the_server_closed_reads_as_readable_so_httpcore_drops_it(run: Runner) -> None:
    async def go() -> tuple[bool, bool]:
        closed = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()
            closed.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            stream = await TimedBackend().connect_tcp("127.0.0.1", port)
            open_before = stream.get_extra_info("is_readable")
            await stream.write(b"x")
            assert isinstance(stream, TimedStream)
            await stream.flush()
            await asyncio.wait_for(closed.wait(), 5)
            for _ in range(100):  # the FIN arrives a moment after the server's close
                if stream.get_extra_info("is_readable"):
                    break
                await asyncio.sleep(0.01)
            readable_after = stream.get_extra_info("is_readable")
            await stream.aclose()
        return open_before, readable_after

    assert run(go()) == (False, True)


@LOOPS
def test_the_probe_measures_an_endpoint_over_tls(run: Runner) -> None:
    """Real providers are HTTPS: httpcore opens the connection, then `start_tls` on it (asyncio's own TLS)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    config = EmulatorConfig(ttft_ms=20, tokens_per_s=1000, output_tokens=3)
    with cert.private_key_and_cert_chain_pem.tempfile() as pem:
        server = uvicorn.Server(
            uvicorn.Config(build_app(config), ssl_certfile=pem, log_level="warning", log_config=None)
        )
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        thread = start_in_thread(server, sock, "tls-emulator", "the TLS emulator")
        try:
            client_context = ssl.create_default_context()
            ca.configure_trust(client_context)

            async def go() -> ProbeRun:
                target = Endpoint("tls", f"https://127.0.0.1:{port}/v1", config.model)
                plan = LoadPlan(concurrency=(2,), profile="concurrency", requests=4, max_tokens=5)
                transport = ShardedTransport(2, verify=client_context)
                async with httpx.AsyncClient(transport=transport) as client:
                    return await run_probe(client, target, plan)

            probed = run(go())
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    assert [r.ok for r in probed.results] == [True] * 4, [r.error for r in probed.results]
    assert all(r.output_tokens == 3 and (r.ttft_ms or 0) >= 20 for r in probed.results)


@LOOPS
def test_network_failures_come_as_httpcores_own_exceptions(run: Runner) -> None:
    async def go() -> list[str]:
        seen: list[str] = []
        free = bind("127.0.0.1", 0)  # bound, not accepting: a port nothing listens on once closed
        port = free.getsockname()[1]
        free.close()
        try:
            await TimedBackend().connect_tcp("127.0.0.1", port, timeout=5)
        except httpcore.ConnectError:
            seen.append("refused")

        silent = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await silent.wait()  # reads nothing, answers nothing
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            stream = await TimedBackend().connect_tcp("127.0.0.1", server.sockets[0].getsockname()[1])
            await stream.write(b"GET / HTTP/1.1\r\n\r\n")
            try:
                await stream.read(100, timeout=0.05)
            except httpcore.ReadTimeout:
                seen.append("read timeout")
            silent.set()
            assert await stream.read(100, timeout=5) == b""  # the server's close: the end of the stream
            await asyncio.sleep(0.05)
            await stream.write(b"more")
            try:
                assert isinstance(stream, TimedStream)
                await stream.flush()
            except httpcore.WriteError:
                seen.append("write after close")
            await stream.aclose()
        return seen

    assert run(go()) == ["refused", "read timeout", "write after close"]


@LOOPS
def test_a_server_faster_than_its_reader_is_held_back_and_nothing_is_lost(run: Runner) -> None:
    size = 3 * HELD_BYTES

    async def go() -> tuple[bool, int, bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(bytes(range(256)) * (size // 256))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            stream = await TimedBackend().connect_tcp("127.0.0.1", server.sockets[0].getsockname()[1])
            assert isinstance(stream, TimedStream)
            for _ in range(100):  # the client reads nothing while the server sends
                await asyncio.sleep(0.01)
                if stream._protocol.held_back:
                    break
            held_back, held = stream._protocol.held_back, stream._protocol.held
            got = b""
            while piece := await stream.read(65536, timeout=5):
                got += piece
            await stream.aclose()
        return held_back, held, got

    held_back, held, got = run(go())
    assert held_back and HELD_BYTES < held < size  # it stopped reading with the limit passed
    assert got == bytes(range(256)) * (size // 256)
