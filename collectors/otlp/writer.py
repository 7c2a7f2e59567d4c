"""From decoded spans to stored usage rows, as the ingest stores them.

`SpanBatcher` turns one request's spans into canonical records on the request's thread: the compiled scan's
as Arrow columns, the reference path's (`models.genai_spans`, pure Python) as JSON lines. `SpanWriter`
takes the records of whatever requests are queued as one batch, checks them with the ingest's rules (the
columns by `storage.columnar`, the lines by the ingest's own statement, `storage.normalise`: the same
bounds and reject reasons as a log file's records), stores them in one transaction through
`storage.usage.store_batch` (the usage write path: deduplication by record key within a week, rejects with
reasons, the source's counts), and tells each request which of its spans were refused. It keeps the
database open across back-to-back batches and closes it when idle (`IDLE_S`) or after `storage.db.HOLD_S`,
so readers take turns.

A request is acknowledged only after the transaction holding its spans committed; a request that would
queue more spans than `max_pending_spans` is refused up front (HTTP 429 with Retry-After) so that nothing
accepted is ever dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from collectors.ingest.formats import csv_spec
from collectors.otlp.decode import ExportTraceServiceRequest, decode_body, spans_at, spans_of
from collectors.otlp.drain import GATHER_S, IDLE_S, QUIET_S, DrainConfig, DrainProcess, source_run
from collectors.otlp.spool import Entry, Position, Spool, encode
from collectors.otlp.wire import IGNORED, NO_USAGE, RECORD, SPAN_DOUBT, WirePlan, scan
from models.genai_spans import (
    ATTRIBUTES_READ,
    NO_USAGE_REASON,
    SDK_NAME,
    Span,
    classify,
    usage_from_span,
)
from models.usage_record import RecordSpec
from storage.columnar import check_records
from storage.db import StorageError, WriteSession
from storage.store import StoreLike, as_store
from storage.usage import (
    BatchCounts,
    IngestContext,
    Normaliser,
    Reject,
    SourceRun,
    kept_reject,
    store_batch,
)

# What each canonical field is called in a reject reason.
_LABELS = {
    "request_id": "span id",
    "ts": "span start time",
    "model": "model (gen_ai.response.model / gen_ai.request.model / llm.model_name)",
    "provider": "provider",
    "endpoint": "endpoint",
    "team": "team",
    "project": "project",
    "user": "user",
    "key_id": "key_id",
    "input_tokens": "input token count",
    "output_tokens": "output token count",
    "cached_input_tokens": "cache read token count",
    "cache_write_tokens": "cache write token count",
    "reasoning_tokens": "reasoning token count",
    "ttft_ms": "TTFT",
    "latency_ms": "span duration",
    "status": "span status",
}
SPEC: RecordSpec = replace(csv_spec(_LABELS), name="otlp", service_tier=("$.service_tier",))

log = logging.getLogger("quotascope.otlp")


@dataclass
class Prepared:
    """One request's spans: the record of each LLM span with usage, and how many spans were what.

    The scan's records come as columns (`columns`, checked by `storage.columnar`), those of the reference
    path as JSON lines (`lines`, checked by `storage.normalise`, which also says why a value of an odd type
    is refused)."""

    lines: bytes  # the reference path's records, each ending in a newline, in span order
    places: list[int]  # each line's span: its place among the request's spans (from 0)
    no_usage: list[int]  # places of LLM calls without token counts: refused, with that reason
    spans: int  # every span in the request
    ignored: int  # not LLM calls, or failed calls with no usage
    columns: pa.Table | None = None  # the scan's records (`wire.record_schema`), in span order
    column_places: list[int] = field(default_factory=list)  # each row's span

    @property
    def llm_spans(self) -> int:
        return len(self.places) + len(self.column_places) + len(self.no_usage)

    def records(self) -> list[tuple[int, dict[str, object]]]:
        """(place, record) of every record, in span order, as `SpanUsage.record()` gives it."""
        out = [
            (place, json.loads(line))
            for place, line in zip(self.places, self.lines.splitlines(), strict=True)
        ]
        if self.columns is not None:
            for place, row in zip(self.column_places, self.columns.to_pylist(), strict=True):
                row["ts"] = row["ts"].isoformat()
                out.append((place, {k: v for k, v in row.items() if v is not None}))
        return sorted(out, key=lambda pair: pair[0])


@dataclass
class _Queued:
    prepared: Prepared
    done: Future[list[Reject]] = field(default_factory=Future)  # this request's refused spans


@dataclass
class _Checked:
    """A checked batch on its way to the spool: its entry's frame and what is answered once it is synced."""

    frame: bytes
    rows: pa.Table | None
    rejects: list[Reject]
    weight: int
    answers: list[tuple[_Queued, list[Reject]]]


class SpanBatcher:
    """Turns one request's spans into canonical records (`models.genai_spans`); thread-safe, no I/O.

    Protobuf bodies take the compiled scan (`collectors.otlp.wire`), which writes the same records without
    a Python object per span, and hands back what it is not sure of: a request it cannot vouch for goes
    through upb and `usage_from_span` whole, a span with rare attribute values alone. JSON bodies always
    take the reference path (they are the exception among exporters, and parse slower than that anyway)."""

    def __init__(self, attribution: Mapping[str, str]) -> None:
        self.attribution = dict(attribution)
        self.wanted = ATTRIBUTES_READ | {SDK_NAME} | frozenset(self.attribution.values())
        self.plan = WirePlan.build(self.attribution)
        self._compiled = threading.Event()
        self._compiled.set()  # compiled on first use, unless `compile_in_background` is called

    def compile_in_background(self) -> None:
        """Compile the scan (or load it from numba's cache) on a thread, taking the reference path until
        it is ready: the first compile on a machine takes 10-20 s, longer than an exporter waits."""
        self._compiled.clear()

        def warm() -> None:
            try:
                scan(ExportTraceServiceRequest().SerializeToString(), self.plan)
            finally:
                self._compiled.set()

        threading.Thread(target=warm, name="quotascope-otlp-compile", daemon=True).start()

    def wait_compiled(self, timeout_s: float | None = None) -> bool:
        """Whether the scan is ready (waiting up to `timeout_s`)."""
        return self._compiled.wait(timeout_s)

    def prepare(self, spans: Iterable[Span]) -> Prepared:
        """The reference path: each span through `usage_from_span`."""
        lines: list[str] = []
        places: list[int] = []
        no_usage: list[int] = []
        place = -1
        for place, span in enumerate(spans):
            verdict, record = self._reference(span)
            if verdict == RECORD:
                lines.append(record)
                places.append(place)
            elif verdict == NO_USAGE:
                no_usage.append(place)
        total = place + 1
        return Prepared(_joined(lines), places, no_usage, total, total - len(places) - len(no_usage))

    def prepare_protobuf(self, body: bytes) -> Prepared:
        """A protobuf `ExportTraceServiceRequest` (decompressed); raises `UndecodableBody`."""
        scanned = scan(body, self.plan) if self._compiled.is_set() else None
        if scanned is None:
            request = decode_body(body, json_body=False, gzipped=False, limit=len(body))
            return self.prepare(spans_of(request, self.wanted))
        verdicts = scanned.verdicts
        column_places = np.flatnonzero(verdicts == RECORD).tolist()
        no_usage = np.flatnonzero(verdicts == NO_USAGE).tolist()
        doubtful = np.flatnonzero(verdicts == SPAN_DOUBT).tolist()
        lines: list[str] = []
        places: list[int] = []
        if doubtful:  # those spans alone through the reference path
            request = decode_body(body, json_body=False, gzipped=False, limit=len(body))
            spans = spans_at(request, self.wanted, set(doubtful))
            for place in doubtful:
                verdict, record = self._reference(spans[place])
                if verdict == RECORD:
                    lines.append(record)
                    places.append(place)
                elif verdict == NO_USAGE:
                    no_usage.append(place)
            no_usage.sort()
        total = len(verdicts)
        ignored = total - len(places) - len(column_places) - len(no_usage)
        columns = scanned.records if column_places else None
        return Prepared(_joined(lines), places, no_usage, total, ignored, columns, column_places)

    def _reference(self, span: Span) -> tuple[int, str]:
        usage = usage_from_span(span, self.attribution)
        if usage is not None:
            return RECORD, json.dumps(usage.record(), separators=(",", ":"), ensure_ascii=False)
        if not span.error and classify(span) == "no_usage":
            return NO_USAGE, ""
        return IGNORED, ""


def _joined(records: list[str]) -> bytes:
    return "".join(record + "\n" for record in records).encode()


class WriterBusy(Exception):
    """The writer holds as many spans as it may; the request is refused, to be retried (HTTP 429, or 503
    when what it holds is held because the database cannot be written: `unavailable`)."""

    def __init__(self, retry_after_s: int, *, unavailable: bool = False) -> None:
        behind = "the database cannot be written now" if unavailable else "the writer is behind"
        super().__init__(f"{behind}; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.unavailable = unavailable


class SpanWriter:
    """Checks and stores queued requests' rows in batches on its own threads; `submit` returns when to
    acknowledge.

    Without a spool, a request's future is answered once the transaction holding its rows committed. With a
    spool (`collectors.otlp.spool`), it is answered once its checked rows are fsynced there, and a second
    thread drains the spool into the database in batches of up to `batch_spans` rows; spooled rows not yet
    committed count against `max_pending_spans` too, so a database that falls behind still turns exporters
    away (429) rather than letting the spool grow without end.
    """

    def __init__(
        self,
        db: StoreLike,
        salt: str,
        *,
        origin: str,
        max_pending_spans: int = 100_000,
        batch_spans: int = 50_000,
        linger_s: float = 0.05,
        lock: threading.Lock | None = None,
        spool: Spool | None = None,
        drain_process: bool = False,
    ) -> None:
        self.db = db
        self.origin = origin
        self.run = source_run(origin)
        self.salt = salt
        self.normaliser = Normaliser()
        self._next_line = 1  # the `line_no` of this receiver's records, in the order they are checked
        self.max_pending_spans = max_pending_spans
        self.batch_spans = batch_spans
        self.linger_s = linger_s
        self.totals = BatchCounts()
        self.failing: str | None = None  # the last storage error, until a batch commits again
        self._lock = lock or threading.Lock()  # shared with other writers of this process (the scheduler)
        # the connection the thread that stores (the drain with a spool, else the writer) keeps across
        # back-to-back batches (opening and closing the file, which checkpoints, cost 0.2 s a batch); it
        # lets readers in after `storage.db.HOLD_S`, and whenever nothing waits to be stored
        self._session = WriteSession(as_store(db).db)
        try:  # a new file's migrations now, not in the first request's time
            self._session.open()
            self._session.close()
        except StorageError as e:  # said again by each batch that cannot be stored (503)
            log.warning("the database cannot be opened yet: %s", e)
        self._queue: deque[_Queued] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closing = False
        self._rate = 0.0  # spans per second stored, smoothed: the Retry-After estimate
        self.spool = spool
        self._spooled: deque[tuple[Entry, int]] = deque()  # spooled, not yet committed (entry, its weight)
        self._last_spooled = 0.0  # when the last entry was spooled (monotonic)
        self._checking_done = False  # set once the writer and the syncer have stopped
        self._checked_all = False  # set once the writer has stopped
        self._drainer: threading.Thread | None = None
        # checked batches not yet in the spool: written and fsynced by a thread of their own, together,
        # while the writer checks the next ones (an fsync took half of the writer's time)
        self._to_sync: deque[_Checked] = deque()
        self._syncer: threading.Thread | None = None
        self._drain_process: DrainProcess | None = None
        self._committed_at = time.monotonic()  # when the drain process last said it committed
        if spool is not None and drain_process:
            config = DrainConfig(db, spool.folder, spool.first_segment, origin, batch_spans)
            self._drain_process = DrainProcess(
                config, on_committed=self._committed, on_failing=self._drain_failing
            )
            self._drain_process.wait_replayed()
        elif spool is not None:
            self._replay(spool)
            self._drainer = threading.Thread(target=self._drain, name="quotascope-otlp-drain", daemon=True)
            self._drainer.start()
        if spool is not None:
            self._syncer = threading.Thread(target=self._sync, name="quotascope-otlp-spool", daemon=True)
            self._syncer.start()
        self._thread = threading.Thread(target=self._loop, name="quotascope-otlp-writer", daemon=True)
        self._thread.start()

    @property
    def drain_pid(self) -> int | None:
        """The spool's drain process's id, if it drains in one."""
        return self._drain_process.process.pid if self._drain_process is not None else None

    @property
    def pending_spans(self) -> int:
        return self._pending

    def submit(self, prepared: Prepared) -> Future[list[Reject]]:
        """Queue one request's records; the future gives its refused spans once the batch holding them is
        committed, or spooled (or raises `StorageError` when it could not be).

        Raises `WriterBusy` when taking them would hold more than `max_pending_spans`.
        """
        size = max(1, prepared.llm_spans)
        with self._cond:
            if self._closing:
                raise WriterBusy(1)
            if self._pending and self._pending + size > self.max_pending_spans:
                if self.failing is not None:  # the spool's drain cannot commit: say so, as without a spool
                    raise WriterBusy(5, unavailable=True)
                raise WriterBusy(self.retry_after_s())
            item = _Queued(prepared)
            self._queue.append(item)
            self._pending += size
            self._cond.notify_all()
        return item.done

    def retry_after_s(self) -> int:
        """About how long the spans already queued take to store (at least 1 s)."""
        if self._rate <= 0:
            return 1
        return int(min(30, max(1, round(self._pending / self._rate))))

    def wait_stored(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing is queued, being stored, or spooled and not committed (tests, benchmarks)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.5))
        return True

    def close(self) -> None:
        """Store everything queued (and spooled), then stop the threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        if self._syncer is not None:
            with self._cond:
                self._checked_all = True
                self._cond.notify_all()
            self._syncer.join()
        if self._drainer is not None:
            with self._cond:
                self._checking_done = True
                self._cond.notify_all()
            self._drainer.join()
        if self._drain_process is not None:
            self._drain_process.close()
        if self.spool is not None:
            self.spool.close()
        self._session.close()
        self.normaliser.close()

    def _take(self) -> list[_Queued]:
        if self.spool is None:
            self._idle_wait(lambda: bool(self._queue) or self._closing)
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return []
        time.sleep(self.linger_s)  # let a burst of requests share one transaction
        batch: list[_Queued] = []
        spans = 0
        with self._cond:
            while self._queue and (
                not batch or spans + self._queue[0].prepared.llm_spans <= self.batch_spans
            ):
                item = self._queue.popleft()
                batch.append(item)
                spans += item.prepared.llm_spans
        return batch

    def _loop(self) -> None:
        delay = 0.1
        while True:
            batch = self._take()
            if not batch:
                return
            weight = sum(max(1, i.prepared.llm_spans) for i in batch)
            started = time.perf_counter()
            kept = False  # handed to the spool's threads (the drain, or the syncer if it fails, releases it)
            try:
                kept = self._store(batch, weight)
            except Exception as e:  # nothing of the batch was stored: its requests are refused, to be retried
                self._refuse(batch, e, "storing a batch of spans")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.1
                if self.spool is None:
                    self.failing = None
                    self._measured(sum(i.prepared.llm_spans for i in batch), started)
            finally:
                if not kept:
                    self._release(weight)

    def _measured(self, spans: int, started: float) -> None:
        rate = spans / max(1e-6, time.perf_counter() - started + self.linger_s)
        self._rate = rate if self._rate <= 0 else 0.7 * self._rate + 0.3 * rate

    def _refuse(self, items: Iterable[_Queued], e: Exception, what: str) -> None:
        """Nothing of these requests was kept: each is refused, for its exporter to retry."""
        if not isinstance(e, StorageError | OSError):  # a quotascope bug: say so, keep serving
            log.exception("%s failed", what)
        self.failing = str(e)
        error = StorageError(str(e)) if isinstance(e, OSError) else e
        for item in items:
            if not item.done.done():
                item.done.set_exception(error)

    def _release(self, weight: int) -> None:
        with self._cond:
            self._pending -= weight
            self._cond.notify_all()

    def _store(self, batch: list[_Queued], weight: int) -> bool:
        """Check the batch's records together (one DuckDB statement for many requests), then store them in
        one transaction, or hand them to the spool's syncer, and give each request its own refused spans
        (with a spool, the syncer gives them once fsynced). True when the batch went to the syncer (its
        weight is released by the drain once committed, or by the syncer if it cannot be spooled)."""
        numbers: list[int] = []  # a span's `line_no`: its place in this receiver's stream of spans (from 1)
        blocks: list[bytes] = []
        tables: list[pa.Table] = []
        table_numbers: list[np.ndarray] = []
        rejects: list[Reject] = []
        ranges: list[tuple[int, int]] = []
        line = self._next_line
        for item in batch:
            prepared = item.prepared
            numbers.extend(line + place for place in prepared.places)
            blocks.append(prepared.lines)
            if prepared.columns is not None:
                tables.append(prepared.columns)
                table_numbers.append(line + np.asarray(prepared.column_places, dtype=np.int64))
            rejects.extend(Reject(line + place, NO_USAGE_REASON, "") for place in prepared.no_usage)
            ranges.append((line, line + prepared.spans))
            line += prepared.spans
        # the checks' "now" is this batch's (a receiver runs for weeks: spans are not in the future of the
        # day it started)
        context = IngestContext(salt=self.salt)
        parts: list[pa.Table] = []
        if tables:  # the scan's records: checked over their columns, no statement to plan
            schema = self.normaliser.schema(SPEC, context)
            records = pa.concat_tables(tables)
            checked = check_records(SPEC, records, np.concatenate(table_numbers), context, schema)
            parts.append(checked.rows)
            rejects += checked.rejects
        if numbers:  # the reference path's: the ingest's statement
            normalised = self.normaliser.normalise(SPEC, b"".join(blocks), context, line_numbers=numbers)
            parts.append(normalised.rows)
            rejects += normalised.rejects
        rows = None
        if parts:
            rows = pa.concat_tables(parts)
            if len(parts) > 1:
                rows = rows.sort_by("line_no")
        rejects = [kept_reject(r) for r in sorted(rejects, key=lambda r: r.line_no)]
        answers = [
            (item, [r for r in rejects if start <= r.line_no < stop])
            for item, (start, stop) in zip(batch, ranges, strict=True)
        ]
        if self.spool is not None:  # answered by the syncer, once fsynced
            handed = _Checked(encode(rows, rejects), rows, rejects, weight, answers)
            with self._cond:
                self._to_sync.append(handed)
                self._cond.notify_all()
            self._next_line = line
            return True
        with self._lock:
            self.run, counts = store_batch(
                self.db, self.run, [rows] if rows is not None else [], rejects, session=self._session
            )
        self.totals = self.totals + counts
        self._next_line = line
        for item, refused in answers:
            item.done.set_result(refused)
        return False

    def _sync(self) -> None:
        """Append the checked batches waiting to the spool with one fsync for them all, then answer their
        requests (acknowledged) and hand them to the drain; a batch that could not be spooled is refused
        (its requests are retried by their exporters)."""
        assert self.spool is not None
        delay = 0.1
        while True:
            with self._cond:
                while not self._to_sync and not self._checked_all:
                    self._cond.wait()
                if not self._to_sync:
                    return
                waiting = list(self._to_sync)
                self._to_sync.clear()
            try:
                ends = self.spool.append_many([checked.frame for checked in waiting])
            except Exception as e:
                items = (item for checked in waiting for item, _ in checked.answers)
                self._refuse(items, e, "spooling a batch of spans")
                for checked in waiting:
                    self._release(checked.weight)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            with self._cond:
                for checked, end in zip(waiting, ends, strict=True):
                    # the drain process reads the rows back from the spool: only where they end is kept
                    kept = (
                        Entry(None, [], end)
                        if self._drain_process
                        else Entry(checked.rows, checked.rejects, end)
                    )
                    self._spooled.append((kept, checked.weight))
                self._last_spooled = time.monotonic()
                self._cond.notify_all()
            if self._drain_process is not None:
                self._drain_process.durable(ends[-1])
            for checked in waiting:
                for item, refused in checked.answers:
                    item.done.set_result(refused)

    # ------------------------------------------------------------------------------ the spool's drain

    def _committed(self, position: Position, counts: dict[str, int]) -> None:
        """The drain process committed the spool up to `position`: those spans no longer count as pending."""
        weight = 0
        with self._cond:
            while self._spooled and (self._spooled[0][0].end.segment, self._spooled[0][0].end.offset) <= (
                position.segment,
                position.offset,
            ):
                weight += self._spooled.popleft()[1]
        now = time.monotonic()
        rate = counts["records"] / max(1e-6, now - self._committed_at)
        self._committed_at = now
        self._rate = rate if self._rate <= 0 else 0.7 * self._rate + 0.3 * rate
        self.totals = self.totals + BatchCounts(
            counts["read"], counts["stored"], counts["duplicates"], counts["rejected"]
        )
        self.failing = None
        if weight:
            self._release(weight)

    def _drain_failing(self, why: str) -> None:
        self.failing = why

    def _replay(self, spool: Spool) -> None:
        """Store what a previous run spooled and did not mark committed, before taking anything new."""
        run = source_run(f"{self.origin} (spool replay)")
        group: list[Entry] = []
        for entry in spool.replay():
            group.append(entry)
            if sum(e.records for e in group) >= self.batch_spans:
                run = self._commit(run, group)
                group = []
        if group:
            self._commit(run, group)

    def _commit(self, run: SourceRun, entries: list[Entry]) -> SourceRun:
        tables = [e.rows for e in entries if e.rows is not None]
        rejects = [r for e in entries for r in e.rejects]
        with self._lock:
            run, counts = store_batch(self.db, run, tables, rejects, session=self._session)
        self.totals = self.totals + counts
        assert self.spool is not None
        self.spool.mark_committed(entries[-1].end)
        return run

    def _idle_wait(self, ready: Callable[[], bool]) -> None:
        """Before the thread that stores waits for work: more is usually on its way, so the database stays
        open for it `IDLE_S`; then it is closed, and readers have their turn."""
        with self._cond:
            if not ready():
                self._cond.wait(IDLE_S)
            idle = not ready()
        if idle:
            with self._lock:
                self._session.close()

    def _gather(self) -> None:
        """Wait while spooled requests keep coming, so that one commit holds many (`GATHER_S`); the
        database is closed while it waits past `IDLE_S`, so readers have their turn."""
        started = time.monotonic()
        closed = False
        while True:
            with self._cond:
                now = time.monotonic()
                if (
                    self._checking_done
                    or not self._spooled
                    or sum(entry.records for entry, _ in self._spooled) >= self.batch_spans
                    or 2 * self._pending >= self.max_pending_spans
                    or now - started >= GATHER_S
                    or now - self._last_spooled >= QUIET_S
                ):
                    return
                self._cond.wait(QUIET_S)
            if not closed and time.monotonic() - started >= IDLE_S:
                closed = True
                with self._lock:
                    self._session.close()

    def _take_spooled(self) -> list[tuple[Entry, int]]:
        with self._cond:
            while not self._spooled and not self._checking_done:
                self._cond.wait()
            if not self._spooled:
                return []
            taken: list[tuple[Entry, int]] = []
            records = 0
            while self._spooled and (not taken or records + self._spooled[0][0].records <= self.batch_spans):
                entry = self._spooled.popleft()
                taken.append(entry)
                records += entry[0].records
            return taken

    def _drain(self) -> None:
        delay = 0.1
        failures = 0
        taken: list[tuple[Entry, int]] = []
        while True:
            if not taken:
                self._idle_wait(lambda: bool(self._spooled) or self._checking_done)
                self._gather()
                taken = self._take_spooled()
                if not taken:
                    return
            started = time.perf_counter()
            try:
                self.run = self._commit(self.run, [entry for entry, _ in taken])
            except Exception as e:  # spooled and acknowledged: kept, and tried again until it commits
                if not isinstance(e, StorageError | OSError):
                    log.exception("storing spooled spans failed")
                self.failing = str(e)
                failures += 1
                if self._checking_done and failures >= 3:  # stopping: the next start replays the spool
                    log.warning("stopping with spooled spans not yet stored (kept for the next start): %s", e)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.failing = None
            delay = 0.1
            failures = 0
            self._measured(sum(entry.records for entry, _ in taken), started)
            self._release(sum(weight for _, weight in taken))
            taken = []
