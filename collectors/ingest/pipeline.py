"""Ingest one file along the route `collectors.ingest.route` chose once (its format and readers): read and
normalise its records, store them in batches; whatever breaks while reading is a reject with its reason.

JSON-lines responses (OpenAI-compatible, Anthropic) are streamed through DuckDB (`storage.staging`): DuckDB
parses the records in parallel and normalises them, a thread hashes the file and counts its lines, a writer
thread stores whole row groups as they fill. DuckDB's JSON reader is tried first, then its line reader; if
the rows a reader produced cannot be matched to the file's lines (see `_rows_are_lines`), what it stored is
discarded and the next reader takes over, the exact block reader last.

The block reader reads blocks of lines (or, for JSON documents, CSV, LiteLLM and usage exports, records
prepared in Python) and normalises them on worker threads (`storage.normalise`), at most `workers + 1`
blocks in memory at once. Either way the database file is opened only to store a batch, so readers get
their turn between batches, and a killed ingest loses at most the batch in flight.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from collectors.ingest import records
from collectors.ingest.detect import Detection
from collectors.ingest.files import (
    BLOCK_BYTES,
    OVERLONG_REASON,
    ByteSource,
    FileLines,
    OpenedFile,
    blank_lines,
    fetch_lines,
    hash_and_count,
    line_blocks,
)
from collectors.ingest.formats import csv_spec, spec_for
from collectors.ingest.progress import Progress
from collectors.ingest.route import Reader, Route, plan_route
from models.errors import InputError
from models.usage_record import RecordSpec
from storage.db import WriteSession
from storage.staging import LineStream, ReaderGaveUp
from storage.store import StoreLike, as_store
from storage.usage import (
    ROW_GROUP_ROWS,
    BatchCounts,
    IngestContext,
    Normalised,
    Normaliser,
    Reject,
    SourceRun,
    discard_source,
    kept_reject,
    store_batch,
)

SAMPLE_REJECTS = 5


@dataclass(frozen=True)
class IngestOptions:
    format: str = "auto"
    csv_map: Mapping[str, str] = field(default_factory=dict)  # column -> canonical field
    default_time: datetime | None = None  # `--default-time`: records without a time take it (naive UTC)
    # rows stored per write transaction: at most `batch_rows` (about a second of holding the file), and as
    # soon as the writer is free once `min_batch_rows` wait (the rows still waiting when the last line is
    # read are stored after it, so smaller batches shorten that wait: the first row groups are stored while
    # the rest is read). DuckDB's own readers store whole row groups at a time, carrying the rest over:
    # see ROW_GROUP_ROWS. Two row groups at least: a batch's fixed cost (its statements, its commit) made
    # batches of one row group cost the writer 0.07 s more each (1,000,000 responses: 2.25 s of CPU in
    # batches of one row group, 1.96-2.07 s in batches of two).
    batch_rows: int = 4 * ROW_GROUP_ROWS
    min_batch_rows: int = 2 * ROW_GROUP_ROWS
    block_bytes: int = BLOCK_BYTES
    # threads: the block reader's normalising threads; DuckDB's readers take `workers - 1` (at least one),
    # the writer storing the batches beside them the other (see `_ingest_streamed`)
    workers: int = 2
    # JSON-lines responses: "fast" tries DuckDB's JSON reader, then its line reader, then the exact block
    # reader, each when the one before cannot account for every line; "lines" starts at the line reader;
    # "blocks" always uses the block reader
    reader: Literal["fast", "lines", "blocks"] = "fast"


@dataclass(frozen=True)
class FileResult:
    path: Path
    format: str
    description: str
    reader: str  # which reader read it: "duckdb-json", "duckdb-lines", "blocks", or "none" (unreadable)
    source_id: int | None
    counts: BatchCounts
    size_bytes: int
    seconds: float
    sample_rejects: tuple[Reject, ...]
    reject_reasons: Mapping[str, int]
    # why the file, or the rest of it, could not be read (also its last reject); None when read to its end
    unreadable: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "format": self.format,
            "detected": self.description,
            "reader": self.reader,
            "source_id": self.source_id,
            "read": self.counts.read,
            "stored": self.counts.stored,
            "duplicates": self.counts.duplicates,
            "rejected": self.counts.rejected,
            "bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "reject_reasons": dict(self.reject_reasons),
            "unreadable": self.unreadable,
            "rejects": [
                {"line": r.line_no, "reason": r.reason, "excerpt": r.excerpt} for r in self.sample_rejects
            ],
        }


@dataclass(frozen=True)
class _Work:
    spec: RecordSpec
    data: bytes | memoryview
    first_line: int
    numbers: list[int] | None
    early_rejects: list[Reject]
    consumed: int  # bytes of the file read so far, for progress
    n_lines: int = 0  # lines of `data`, when `numbers` is None

    @property
    def last_line(self) -> int:
        """The number of the last line (or record) this work covers."""
        last = self.first_line + self.n_lines - 1 if self.numbers is None else max(self.numbers, default=0)
        return max([last, *(r.line_no for r in self.early_rejects)])


def _work_items(detection: Detection, source: ByteSource, options: IngestOptions) -> Iterator[_Work]:
    fmt, container = detection.format, detection.container
    if container == "jsonl" and fmt in ("openai", "anthropic"):
        spec = spec_for(fmt, detection.root)
        for block in line_blocks(source.pieces(), options.block_bytes):
            overlong = [Reject(n, OVERLONG_REASON, "") for n in block.overlong]
            yield _Work(spec, block.data, block.first_line, None, overlong, source.consumed, block.n_lines)
        return
    if container == "csv":
        rows = records.csv_rows(source, detection.delimiter)
        if fmt == "litellm-spend":
            blocks = records.csv_litellm_records(rows)
            spec = spec_for(fmt)
        elif fmt == "csv":
            mapping = records.csv_mapping(list(detection.columns), options.csv_map)
            blocks = records.generic_csv_records(rows, mapping)
            spec = csv_spec(mapping)
        else:
            raise InputError(f"{source.path} is CSV, which the {fmt} format is not; try --format csv")
    else:
        values = records.json_values(source, container)
        if fmt in ("openai", "anthropic"):
            blocks = records.plain_records(values)
        elif fmt == "openai-usage-export":
            blocks = records.usage_export_records(values)
        elif fmt == "litellm-spend":
            blocks = records.litellm_records(values)
        else:
            raise InputError(f"{source.path} is JSON; the csv format reads CSV files only")
        spec = spec_for(fmt, detection.root)
    for record_block in blocks:
        yield _Work(spec, record_block.data(), 1, record_block.numbers, record_block.rejects, source.consumed)


class _Writer:
    """Stores batches on its own thread, one at a time and in order, while blocks keep being normalised,
    on one connection while they come back to back (`storage.db.WriteSession`)."""

    def __init__(self, db: StoreLike, run: SourceRun) -> None:
        self.db = db
        self.session = WriteSession(as_store(db).db)
        self.run = run
        self.totals = BatchCounts()
        self.reasons: Counter[str] = Counter()
        self.samples: list[Reject] = []
        self.failed = False  # a batch could not be stored: the database's trouble, never the file's
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quotascope-store")
        # the file opened (a new one migrated) while the first rows are read, not after
        self._inflight: Future[None] | None = self._pool.submit(self._open)

    def _open(self) -> None:
        try:
            self.session.open()
        except BaseException:
            self.failed = True
            raise

    def _store(self, batch: list[Normalised], final_hash: str | None, finished: bool, alone: bool) -> None:
        rejects = [kept_reject(r) for n in batch for r in n.rejects]  # as stored: no key in a reason
        try:
            self.run, counts = store_batch(
                self.db,
                self.run,
                [n.rows for n in batch if n.rows.num_rows],
                rejects,
                finished_hash=final_hash,
                finished=finished,
                session=self.session,
                alone=alone,
            )
        except BaseException:
            self.failed = True
            raise
        self.totals = self.totals + counts
        for r in rejects:
            self.reasons[r.reason] += 1
            if len(self.samples) < SAMPLE_REJECTS:
                self.samples.append(r)

    def submit(
        self,
        batch: list[Normalised],
        final_hash: str | None = None,
        *,
        finished: bool = False,
        alone: bool = False,
    ) -> None:
        """Store `batch` once the one before is stored; `alone`: nothing is read beside it any more (the
        file's last batch), so its statements may take every thread (`storage.usage.store_batch`)."""
        self.wait()
        self._inflight = self._pool.submit(self._store, batch, final_hash, finished, alone)

    @property
    def busy(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    def wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.session.close()


def ingest_file(
    db: StoreLike,
    path: Path,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
) -> FileResult:
    """Ingest one file along its route (see `collectors.ingest.route`).

    Never fails for what the file holds: a file that cannot be opened or recognised is one reject (line 0)
    with its reason, a file that breaks off (a cut-off .gz, a read error) keeps what was read before and
    gets one reject for the rest; `FileResult.unreadable` says why. Only the database's trouble (locked,
    full) raises.
    """
    options = options or IngestOptions()
    progress = progress or Progress(enabled=False)
    started = time.perf_counter()
    try:
        file = OpenedFile(path)
    except InputError as e:
        return _unreadable(db, path, 0, "unknown", context, str(e), started)
    with file:
        try:
            route = plan_route(file, options)
        except InputError as e:
            return _unreadable(db, path, file.size, "unknown", context, str(e), started)
        except RecursionError:  # a guard that is missing somewhere: still one file's problem
            reason = f"{path}: JSON nested too deeply to read"
            return _unreadable(db, path, file.size, "unknown", context, reason, started)
        try:
            return _follow(db, route, context, normaliser, options, progress, started)
        finally:
            progress.finish()


def _new_run(path: Path, size: int, fmt: str, context: IngestContext) -> SourceRun:
    return SourceRun(
        path=str(path.resolve()),
        size_bytes=size,
        format=fmt,
        tags=dict(context.tags),
        started_at=datetime.now(UTC).replace(tzinfo=None),
    )


def _unreadable(
    db: StoreLike, path: Path, size: int, fmt: str, context: IngestContext, reason: str, started: float
) -> FileResult:
    """A file nothing could be read from: one reject at line 0, the whole file, with the reason."""
    reject = kept_reject(Reject(0, reason, ""))
    reason = reject.reason
    run, counts = store_batch(db, _new_run(path, size, fmt, context), [], [reject], finished=True)
    return FileResult(
        path=path,
        format=fmt,
        description="not read: " + reason,
        reader="none",
        source_id=run.source_id,
        counts=counts,
        size_bytes=size,
        seconds=time.perf_counter() - started,
        sample_rejects=(reject,),
        reject_reasons={reason: 1},
        unreadable=reason,
    )


def _follow(
    db: StoreLike,
    route: Route,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions,
    progress: Progress,
    started: float,
) -> FileResult:
    """Try the route's readers in order until one accounts for every line (the block reader always does)."""
    file, detection = route.file, route.detection
    run = _new_run(file.path, file.size, detection.format, context)
    writer = _Writer(db, run)
    description = detection.description
    used: Reader = "blocks"
    broke_off: str | None = None
    streamed = [r for r in route.readers if r != "blocks"]
    check = _FileCheck(file) if streamed else None
    try:
        for reader in streamed:
            assert check is not None
            if _ingest_streamed(route, reader, check, context, normaliser, options, writer, progress):
                used = reader
                break
            writer.close()
            writer = _Writer(db, run)
        if used == "blocks":
            if streamed:
                description += " (read line by line: DuckDB's readers could not account for every line)"
            broke_off = _ingest_blocks(route, context, normaliser, options, writer, progress)
    except Exception as e:
        if writer.failed:
            raise  # the database's trouble, not the file's
        # a fault no reader caught (a quotascope bug): what was stored stays, the rest is one reject
        broke_off = f"{file.path}: could not be read to its end ({type(e).__name__}: {e})"
        writer.submit([Normalised(pa.table({}), [Reject(0, broke_off, "")])], finished=True)
        writer.wait()
    finally:
        writer.close()
    return FileResult(
        path=file.path,
        format=detection.format,
        description=description,
        reader=used,
        source_id=writer.run.source_id,
        counts=writer.totals,
        size_bytes=file.size,
        seconds=time.perf_counter() - started,
        sample_rejects=tuple(writer.samples),
        reject_reasons=dict(writer.reasons.most_common()),
        unreadable=broke_off,
    )


class _FileCheck:
    """The file's hash and line count, computed once on a thread beside the first reader that needs it."""

    def __init__(self, file: OpenedFile) -> None:
        self._file = file
        self._result: FileLines | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="quotascope-hash")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = hash_and_count(self._file)
        except BaseException as e:  # handed to the main thread by result()
            self._failed = e

    def result(self) -> FileLines | None:
        """None when the file could not be read to its end (the block reader then says why)."""
        self._thread.join()
        return self._result


def _ingest_streamed(
    route: Route,
    reader: Reader,
    check: _FileCheck,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions,
    writer: _Writer,
    progress: Progress,
) -> bool:
    """DuckDB reads and normalises the file while batches are stored; False (and nothing left stored) if
    DuckDB failed or its rows cannot be matched to the file's lines."""
    file, detection = route.file, route.detection
    kind: Literal["json", "lines"] = "json" if reader == "duckdb-json" else "lines"
    spec = spec_for(detection.format, detection.root)
    # DuckDB reads on one thread fewer than the workers: the writer's batches (the insert, the stored-key
    # lookup, the rollups, the commit: about 2 s of one core's time a million responses) take the other core.
    # With both DuckDB threads reading, three threads shared two cores, the writer fell behind the reader, and
    # the rows left when the last line was read were stored alone, on one core (1,000,000 responses: the last
    # line read at 2.5 s, the last batch stored at 3.7 s).
    stream = LineStream(
        file.duckdb_name,
        spec,
        context,
        compressed=file.compressed,
        threads=max(1, options.workers - 1),
        reader=kind,
    )
    progress.start(file.path.name, file.size)
    try:
        pending: list[pa.Table] = []
        pending_rows = 0
        try:
            for rows in stream.rows():
                pending.append(rows)
                pending_rows += rows.num_rows
                progress.update(
                    min(file.size, int(stream.seen.lines * route.bytes_per_line)), stream.seen.lines
                )
                if pending_rows >= options.batch_rows or (
                    pending_rows >= options.min_batch_rows and not writer.busy
                ):
                    table = pa.concat_tables(pending)
                    whole = min(pending_rows, options.batch_rows) // ROW_GROUP_ROWS * ROW_GROUP_ROWS
                    take = whole or pending_rows
                    writer.submit([Normalised(table.slice(0, take), [])])
                    rest = table.slice(take)
                    pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
            gave_up = False
        except ReaderGaveUp:
            gave_up = True
        lines = check.result()
        if gave_up or lines is None or not _rows_are_lines(file, kind, stream.seen.lines, lines):
            writer.wait()
            writer.session.close()  # the discard is a write of its own
            if writer.run.source_id is not None:
                discard_source(writer.db, writer.run.source_id)
            return False
        rejects: list[Reject] = []
        for numbers, data in fetch_lines(file, stream.seen.problems):
            rejects += normaliser.explain(spec, data, numbers, context)
        # the last rows, the rejects and the file's end in one transaction
        last = pa.concat_tables(pending) if pending else pa.table({})
        writer.submit([Normalised(last, rejects)], lines.content_hash, alone=True)
        writer.wait()
        return True
    finally:
        stream.close()


def _rows_are_lines(file: OpenedFile, reader: Literal["json", "lines"], rows: int, lines: FileLines) -> bool:
    """Whether the n-th row DuckDB produced was the file's n-th line, for every row and every line."""
    if reader == "lines":  # one row per line, blank ones included
        return rows == lines.lines
    # one row per line that is not blank: all is well if the blank lines are all after the last record
    if lines.blank_candidates is None:
        return False
    blank = blank_lines(file, lines.blank_candidates) if lines.blank_candidates else []
    return rows + len(blank) == lines.lines and all(number > rows for number in blank)


def _ingest_blocks(
    route: Route,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions,
    writer: _Writer,
    progress: Progress,
) -> str | None:
    """The exact reader: Python reads blocks of lines (or records), worker threads normalise them.

    It never gives up on a file: when reading breaks off (a cut-off .gz, a read error, a fault in a block),
    what was read before is stored, the rest is one reject with the reason, and the reason is returned.
    """

    def normalise(work: _Work) -> Normalised:
        result = normaliser.normalise(
            work.spec, work.data, context, first_line=work.first_line, line_numbers=work.numbers
        )
        return Normalised(result.rows, work.early_rejects + result.rejects)

    source = ByteSource(route.file)
    pending: list[Normalised] = []
    pending_rows = 0
    rows_seen = 0
    last_line = 0
    broke_off: str | None = None
    progress.start(route.file.path.name, source.size)
    queue: deque[tuple[Future[Normalised], _Work]] = deque()
    pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="quotascope-parse")
    try:

        def take() -> None:
            nonlocal pending, pending_rows, rows_seen, last_line, broke_off
            future, work = queue.popleft()
            try:
                done = future.result()
            except Exception as e:  # a fault while checking one block: its lines are one reject
                reason = f"lines {work.first_line}-{work.last_line} could not be checked: {_first_line(e)}"
                done = Normalised(pa.table({}), [Reject(work.first_line, reason, "")])
            pending.append(done)
            size = done.rows.num_rows + len(done.rejects)
            last_line = max(last_line, work.last_line)
            pending_rows += size
            rows_seen += size
            progress.update(work.consumed, rows_seen)
            if pending_rows >= options.batch_rows:
                writer.submit(pending)
                pending, pending_rows = [], 0

        if route.detection.container != "empty":
            try:
                for work in _work_items(route.detection, source, options):
                    queue.append((pool.submit(normalise, work), work))
                    while len(queue) > options.workers:
                        take()
            except (InputError, ValueError, RecursionError, MemoryError, OSError) as e:
                if writer.failed:
                    raise
                broke_off = _first_line(e)
        while queue:
            take()
        if broke_off is not None:
            where = f"after line {last_line}" if last_line else "before its first line"
            reason = f"{broke_off}; reading stopped {where}, the rest of the file is not read"
            pending.append(Normalised(pa.table({}), [Reject(last_line + 1, reason, "")]))
            broke_off = reason
        writer.submit(pending, source.content_hash, alone=True)
        writer.wait()
    finally:
        for future, _ in queue:
            future.cancel()
        pool.shutdown(wait=True)
    return broke_off


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
