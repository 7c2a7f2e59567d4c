"""Running the emulator under uvicorn: in the foreground (`quotascope emulate`) or in a thread (tests)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from collectors.emulator.app import DroppedStream, Emulator, build_app
from collectors.emulator.billing import Billing
from collectors.emulator.config import EmulatorConfig
from models.errors import InputError


class _HideDroppedStreams(logging.Filter):
    """A cut stream is the fault we inject, not a server error: keep it out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is DroppedStream)


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedStreams) for f in logger.filters):
        logger.addFilter(_HideDroppedStreams())


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one. Binding ourselves tells us the port before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it Nagle's
    # algorithm holds the first small chunk until the client's delayed ACK (~40 ms) - a fake TTFT.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _server(app: Starlette, *, access_log: bool, log_level: str, configure_logging: bool) -> uvicorn.Server:
    _install_log_filter()
    config = uvicorn.Config(
        app,
        lifespan="off",
        access_log=access_log,
        log_level=log_level,
        log_config=uvicorn.config.LOGGING_CONFIG if configure_logging else None,
        timeout_graceful_shutdown=2,
        backlog=2048,
    )
    return uvicorn.Server(config)


def serve(
    sock: socket.socket, config: EmulatorConfig, *, access_log: bool = False, billing: Billing | None = None
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn handles both)."""
    server = _server(
        build_app(config, billing), access_log=access_log, log_level="info", configure_logging=True
    )
    server.run(sockets=[sock])


def start_in_thread(server: uvicorn.Server, sock: socket.socket, name: str, what: str) -> threading.Thread:
    """Run `server` on `sock` in a daemon thread and return once it accepts connections."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.005)
    return thread


class EmulatorServer:
    """The emulator on a loopback port in a background thread:

    with EmulatorServer(EmulatorConfig(ttft_ms=50)) as emulator:
        probe(emulator.base_url)
    """

    def __init__(
        self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0, billing: Billing | None = None
    ) -> None:
        self.config = config
        self.app = build_app(config, billing)
        self.host = host
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = _server(self.app, access_log=False, log_level="warning", configure_logging=False)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def billing(self) -> Billing:
        billing: Billing = self.app.state.billing
        return billing

    @property
    def emulator(self) -> Emulator:
        state: Emulator = self.app.state.emulator
        return state

    def start(self) -> EmulatorServer:
        self._thread = start_in_thread(self._server, self._sock, f"emulator:{self.port}", "the emulator")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
