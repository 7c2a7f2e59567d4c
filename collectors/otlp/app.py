"""The OTLP/HTTP receiver as an ASGI app: `POST /v1/traces`, and `/v1/metrics`, `/v1/logs` answered empty.

Answers follow the OTLP specification ("OTLP/HTTP Response"):
- 200 with an `ExportTraceServiceResponse` once every LLM span of the request is committed; when some were
  refused (a count no column can hold, a span without a model...), `partial_success` says how many and why;
- 400 for a body that does not decode (the message never quotes the body), 401 when a token is required and
  the request has no `Authorization: Bearer` with it, 413 over the size limit (compressed or not), 415 for
  an encoding other than protobuf or JSON;
- 429 with `Retry-After` when `max_inflight_requests` are already in hand (before reading the body) or the
  writer already holds as many spans as it may, 503 with `Retry-After` when the database cannot be written
  (locked by another process for long, a full disk): the exporter retries, and since only a committed
  request is acknowledged, an accepted span is never dropped; a retry of a request whose acknowledgement was
  lost stores nothing new (the response or span id is the record key);
- 500 if storing failed for any other reason (a quotascope bug, logged).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collectors.otlp.decode import (
    BodyTooLarge,
    UndecodableBody,
    decode_body,
    encode_response,
    inflate,
    spans_of,
)
from collectors.otlp.writer import Prepared, SpanBatcher, SpanWriter, WriterBusy
from storage.db import StorageError
from storage.usage import Reject

log = logging.getLogger("quotascope.otlp")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
DEFAULT_MAX_BODY_BYTES = 16 << 20  # compressed and decompressed; the Collector's default batch is far under


@dataclass
class ReceiverStats:
    requests: int = 0
    spans: int = 0
    llm_spans: int = 0
    rejected: int = 0
    refused_busy: int = 0
    refused_storage: int = 0


@dataclass(frozen=True)
class ReceiverConfig:
    token: str | None = None  # the bearer token required, if any (its value; never logged)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # requests being read, decoded or waiting for their commit at once; more are answered 429 at once, so a
    # flood waits at the exporters (which retry) instead of in this process, past their timeouts
    max_inflight_requests: int = 16


def _status_body(code: int, message: str, json_body: bool) -> tuple[bytes, str]:
    """A google.rpc.Status (code, message) in the request's encoding, as OTLP asks of failures."""
    if json_body:
        return json.dumps({"code": code, "message": message}).encode(), JSON
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text, PROTOBUF


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _failure(status: int, message: str, json_body: bool, retry_after: int | None = None) -> Response:
    # gRPC codes: 3 invalid argument, 16 unauthenticated, 8 resource exhausted, 14 unavailable
    code = {400: 3, 401: 16, 413: 8, 415: 3, 429: 8, 503: 14}.get(status, 2)
    body, media = _status_body(code, message, json_body)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return Response(body, status_code=status, media_type=media, headers=headers)


class Receiver:
    """The receiver's state: configuration, the span batcher and writer, and running counts."""

    def __init__(self, config: ReceiverConfig, batcher: SpanBatcher, writer: SpanWriter) -> None:
        self.config = config
        self.batcher = batcher
        self.writer = writer
        self.stats = ReceiverStats()
        self.inflight = 0  # requests past admission and not yet answered (one event loop: no lock needed)
        self._seconds_per_request = 0.0  # smoothed time from admission to answer: the Retry-After estimate

    def authorised(self, request: Request) -> bool:
        if self.config.token is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.config.token.encode()
        )

    async def read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"the body is over {limit:,} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the body is over {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def retry_after_s(self) -> int:
        """How long a refused exporter should wait: about the time the requests ahead of it need."""
        per = self._seconds_per_request or 1.0
        waiting = (
            self.inflight * per / max(1, self.config.max_inflight_requests) + self.writer.retry_after_s()
        )
        return int(min(30, max(1, round(waiting))))

    async def traces(self, request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        json_body = media == JSON
        if not self.authorised(request):
            return _failure(401, "a bearer token is required (Authorization: Bearer ...)", json_body)
        if media not in (PROTOBUF, JSON):
            return _failure(415, f"send {PROTOBUF} or {JSON}", json_body)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity", ""):
            return _failure(415, "only gzip content encoding is accepted", json_body)
        if self.inflight >= self.config.max_inflight_requests:
            self.stats.refused_busy += 1
            message = "the receiver is behind; retry after the time Retry-After says"
            return _failure(429, message, json_body, retry_after=self.retry_after_s())
        self.inflight += 1
        started = time.perf_counter()
        try:
            return await self._admitted(request, json_body, encoding == "gzip")
        finally:
            self.inflight -= 1
            took = time.perf_counter() - started
            per = self._seconds_per_request
            self._seconds_per_request = took if per <= 0 else 0.8 * per + 0.2 * took

    async def _admitted(self, request: Request, json_body: bool, gzipped: bool) -> Response:
        try:
            body = await self.read_body(request)
            prepared = await anyio.to_thread.run_sync(self._prepare, body, json_body, gzipped)
        except BodyTooLarge as e:
            return _failure(413, str(e), json_body)
        except UndecodableBody as e:
            return _failure(400, str(e), json_body)
        self.stats.requests += 1
        self.stats.spans += prepared.spans
        self.stats.llm_spans += prepared.llm_spans
        refused: list[Reject] = []
        if prepared.llm_spans:
            try:
                done = self.writer.submit(prepared)
            except WriterBusy as e:
                if e.unavailable:
                    self.stats.refused_storage += 1
                    return _failure(503, str(e), json_body, retry_after=e.retry_after_s)
                self.stats.refused_busy += 1
                return _failure(429, str(e), json_body, retry_after=e.retry_after_s)
            try:
                refused = await asyncio.wrap_future(done)
            except StorageError as e:
                self.stats.refused_storage += 1
                log.warning("a batch of spans could not be stored: %s", e)
                return _failure(503, "the database cannot be written now; retry later", json_body, 5)
            except Exception:  # logged by the writer; the spans were not stored
                self.stats.refused_storage += 1
                return _failure(500, "the receiver failed to store the spans (a quotascope bug)", json_body)
        self.stats.rejected += len(refused)
        body_out, media_out = encode_response(len(refused), _reasons(refused), json_body=json_body)
        return Response(body_out, media_type=media_out)

    def _prepare(self, body: bytes, json_body: bool, gzipped: bool) -> Prepared:
        if gzipped:
            body = inflate(body, self.config.max_body_bytes)
        if not json_body:
            return self.batcher.prepare_protobuf(body)
        request = decode_body(body, json_body=True, gzipped=False, limit=self.config.max_body_bytes)
        return self.batcher.prepare(spans_of(request, self.batcher.wanted))

    async def other_signal(self, request: Request) -> Response:
        """Metrics and logs: accepted and dropped (usage lives in spans), so exporters log no errors."""
        json_body = request.headers.get("content-type", "").split(";")[0].strip().lower() == JSON
        if not self.authorised(request):
            return _failure(401, "a bearer token is required (Authorization: Bearer ...)", json_body)
        async for _ in request.stream():
            pass
        return Response(b"{}" if json_body else b"", media_type=JSON if json_body else PROTOBUF)


def _reasons(rejects: list[Reject]) -> str:
    """The partial-success message: each distinct reason once, with its count."""
    counts = Counter(reject.reason for reject in rejects)
    return "; ".join(f"{n} span(s): {reason}" for reason, n in counts.items())


def build_app(receiver: Receiver) -> Starlette:
    routes = [
        Route("/v1/traces", receiver.traces, methods=["POST"]),
        Route("/v1/metrics", receiver.other_signal, methods=["POST"]),
        Route("/v1/logs", receiver.other_signal, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.receiver = receiver
    return app
