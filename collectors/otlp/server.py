"""Running the receiver: under uvicorn in the foreground (`quotascope otlp`), or in a thread (the scheduler,
tests). Stopping (SIGTERM, Ctrl-C, `stop()`) stops accepting connections, lets the requests in flight finish
— each waits for its spans' commit — then stores whatever is still queued, and returns."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn

from collectors.emulator.server import bind, start_in_thread
from collectors.otlp.app import DEFAULT_MAX_BODY_BYTES, Receiver, ReceiverConfig, build_app
from collectors.otlp.spool import Spool
from collectors.otlp.writer import SpanBatcher, SpanWriter
from storage.store import StoreLike

DEFAULT_PORT = 4318  # OTLP/HTTP's registered port
# With a spool and its drain process (`OtlpOptions.spooled`, what `quotascope otlp --spool` runs), spans
# acknowledged and not yet committed wait on disk, and the receiver keeps only where each request's entry
# ends: the bound on them can be ten times the in-memory one, and the drain's batches large (a commit's
# fixed cost per statement falls with its size: benchmarks/write_path.py).
SPOOLED_MAX_PENDING_SPANS = 1_000_000
SPOOLED_BATCH_SPANS = 250_000


@dataclass(frozen=True)
class OtlpOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    attribution: Mapping[str, str] = field(default_factory=dict)  # column -> attribute
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflight_requests: int = 16
    max_pending_spans: int = 100_000
    batch_spans: int = 50_000
    linger_s: float = 0.05  # without a spool: how long a batch waits for more requests to share its commit
    shutdown_grace_s: float = 30.0
    # acknowledge once spooled (fsynced) here, commit in large batches after (`collectors.otlp.spool`);
    # None: acknowledge once committed
    spool: Path | None = None
    # with a spool: commit in a process of its own (`collectors.otlp.drain`), whose Python does not take
    # turns with the threads answering exporters; else in a thread of the receiver's process
    drain_process: bool = False

    @classmethod
    def spooled(cls, spool: Path, **given: Any) -> OtlpOptions:
        """The receiver with a spool as `quotascope otlp --spool` runs it (and `benchmarks/otlp.py` measures
        it): the drain in a process of its own, with the spooled bounds."""
        bounds = {"max_pending_spans": SPOOLED_MAX_PENDING_SPANS, "batch_spans": SPOOLED_BATCH_SPANS}
        return cls(**(bounds | given), spool=spool, drain_process=True)


class OtlpServer:
    """The receiver on a socket, in a background thread:

    with OtlpServer(db, salt, OtlpOptions(port=0)) as server:
        export_to(server.endpoint)
    """

    def __init__(
        self,
        db: StoreLike,
        salt: str,
        options: OtlpOptions,
        *,
        lock: threading.Lock | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.options = options
        self._sock = sock or bind(options.host, options.port)
        self.host = options.host
        self.port: int = self._sock.getsockname()[1]
        self.batcher = SpanBatcher(options.attribution)
        self.batcher.compile_in_background()
        spool = None
        try:
            spool = Spool(options.spool) if options.spool is not None else None
            self.writer = SpanWriter(
                db,
                salt,
                origin=f"otlp://{self.address}",
                max_pending_spans=options.max_pending_spans,
                batch_spans=options.batch_spans,
                # with a spool, requests checked together share an fsync without waiting: those that arrive
                # during one group's fsync form the next group
                linger_s=options.linger_s if spool is None else 0.0,
                lock=lock,
                spool=spool,
                drain_process=options.drain_process,
            )
        except BaseException:  # a start that fails (a spool replay the database cannot take) holds nothing
            if spool is not None:
                spool.close()
            if sock is None:
                self._sock.close()
            raise
        self.receiver = Receiver(
            ReceiverConfig(options.token, options.max_body_bytes, options.max_inflight_requests),
            self.batcher,
            self.writer,
        )
        config = uvicorn.Config(
            build_app(self.receiver),
            lifespan="off",
            access_log=False,  # a request line names no content, but keep logs to what we say ourselves
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=int(options.shutdown_grace_s),
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The base URL an exporter's OTEL_EXPORTER_OTLP_ENDPOINT takes (it appends /v1/traces)."""
        return f"http://{self.address}"

    def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM, then drain and return (the process then exits 0; uvicorn's own
        handlers would re-raise the signal). A second signal stops waiting for requests in flight.
        `ready` is called once the signals are handled and the socket served (say where it listens then:
        a supervisor's SIGTERM right after is a clean stop)."""
        stop = threading.Event()

        def handle(number: int, frame: FrameType | None) -> None:
            if stop.is_set():
                self._server.force_exit = True
            stop.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if ready is not None:
                ready()
            while not stop.wait(0.5):
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError("the OTLP receiver stopped by itself")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start(self) -> OtlpServer:
        self._thread = start_in_thread(self._server, self._sock, f"otlp:{self.port}", "the OTLP receiver")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.options.shutdown_grace_s + 10)
        self.close()

    def close(self) -> None:
        """Store what is queued and release everything (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        self._sock.close()

    def __enter__(self) -> OtlpServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
