"""Running the receiver: under uvicorn in the foreground (`quotascope otlp`), or in a thread (the scheduler,
tests). Stopping (SIGTERM, Ctrl-C, `stop()`) stops accepting connections, lets the requests in flight finish
— each waits for its spans' commit — then stores whatever is still queued, and returns."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn

from collectors.emulator.server import bind
from collectors.otlp.app import DEFAULT_MAX_BODY_BYTES, Receiver, ReceiverConfig, build_app
from collectors.otlp.writer import SpanBatcher, SpanWriter
from models.errors import InputError
from models.genai_spans import ATTRIBUTION_COLUMNS, is_content_attribute

DEFAULT_PORT = 4318  # OTLP/HTTP's registered port


@dataclass(frozen=True)
class OtlpOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    attribution: Mapping[str, str] = field(default_factory=dict)  # column -> attribute
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pending_spans: int = 100_000
    batch_spans: int = 50_000
    linger_s: float = 0.05
    shutdown_grace_s: float = 30.0


def parse_attribution(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`COLUMN=ATTRIBUTE` pairs (`team=service.name`) as a mapping; refuses unknown columns and content."""
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, attribute = pair.partition("=")
        column, attribute = column.strip(), attribute.strip()
        if not sep or not column or not attribute:
            raise InputError(f"--attribute takes COLUMN=ATTRIBUTE, e.g. team=service.name; got {pair!r}")
        if column not in ATTRIBUTION_COLUMNS:
            raise InputError(
                f"--attribute: {column!r} is not a column it can fill (use {', '.join(ATTRIBUTION_COLUMNS)})"
            )
        if is_content_attribute(attribute):
            raise InputError(
                f"--attribute: {attribute!r} holds prompts or answers, which quotascope never stores"
            )
        out[column] = attribute
    return out


class OtlpServer:
    """The receiver on a socket, in a background thread:

    with OtlpServer(db, salt, OtlpOptions(port=0)) as server:
        export_to(server.endpoint)
    """

    def __init__(
        self,
        db: Path,
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
        self.batcher = SpanBatcher(salt, options.attribution)
        self.writer = SpanWriter(
            db,
            origin=f"otlp://{self.address}",
            max_pending_spans=options.max_pending_spans,
            batch_spans=options.batch_spans,
            linger_s=options.linger_s,
            lock=lock,
        )
        self.receiver = Receiver(
            ReceiverConfig(options.token, options.max_body_bytes), self.batcher, self.writer
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

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (uvicorn's handlers in the main thread), then drain."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.close()

    def start(self) -> OtlpServer:
        self._thread = threading.Thread(target=self._run, name=f"otlp:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the OTLP receiver did not start")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

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
        self.batcher.close()
        self._sock.close()

    def __enter__(self) -> OtlpServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
