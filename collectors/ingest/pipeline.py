"""Ingest one file: detect its format, read and normalise its records, store them in batches.

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
from collectors.ingest.detect import Detection, detect
from collectors.ingest.files import (
    BLOCK_BYTES,
    ByteSource,
    FileLines,
    blank_lines,
    fetch_lines,
    hash_and_count,
    line_blocks,
)
from collectors.ingest.formats import csv_spec, spec_for
from collectors.ingest.progress import Progress
from models.errors import InputError
from models.usage_record import RecordSpec
from storage.staging import LineStream, ReaderGaveUp
from storage.usage import (
    ROW_GROUP_ROWS,
    BatchCounts,
    IngestContext,
    Normalised,
    Normaliser,
    Reject,
    SourceRun,
    discard_source,
    store_batch,
)

SAMPLE_REJECTS = 5


@dataclass(frozen=True)
class IngestOptions:
    format: str = "auto"
    csv_map: Mapping[str, str] = field(default_factory=dict)  # column -> canonical field
    # rows stored per write transaction: at most `batch_rows` (about a second of holding the file), and as
    # soon as the writer is free once `min_batch_rows` wait (the rows still waiting when the last line is
    # read are stored after it, so smaller batches shorten that wait). DuckDB's own readers store whole
    # row groups at a time, carrying the rest over: see ROW_GROUP_ROWS.
    batch_rows: int = 4 * ROW_GROUP_ROWS
    min_batch_rows: int = 2 * ROW_GROUP_ROWS
    block_bytes: int = BLOCK_BYTES
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
    reader: str  # which reader read it: "duckdb-json", "duckdb-lines" or "blocks" (see ingest_file)
    source_id: int | None
    counts: BatchCounts
    size_bytes: int
    seconds: float
    sample_rejects: tuple[Reject, ...]
    reject_reasons: Mapping[str, int]

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


def _work_items(detection: Detection, source: ByteSource, options: IngestOptions) -> Iterator[_Work]:
    fmt, container = detection.format, detection.container
    if container == "jsonl" and fmt in ("openai", "anthropic"):
        spec = spec_for(fmt, detection.root)
        for block in line_blocks(source.pieces(), options.block_bytes):
            overlong = [Reject(n, "a line longer than 64 MB (not a log record)", "") for n in block.overlong]
            yield _Work(spec, block.data, block.first_line, None, overlong, source.consumed)
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
    """Stores batches on its own thread, one at a time and in order, while blocks keep being normalised."""

    def __init__(self, db: Path, run: SourceRun) -> None:
        self.db = db
        self.run = run
        self.totals = BatchCounts()
        self.reasons: Counter[str] = Counter()
        self.samples: list[Reject] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quotascope-store")
        self._inflight: Future[None] | None = None

    def _store(self, batch: list[Normalised], final_hash: str | None, extra: BatchCounts | None) -> None:
        rejects = [r for n in batch for r in n.rejects]
        self.run, counts = store_batch(
            self.db,
            self.run,
            [n.rows for n in batch if n.rows.num_rows],
            rejects,
            finished_hash=final_hash,
            extra=extra,
        )
        self.totals = self.totals + counts
        for r in rejects:
            self.reasons[r.reason] += 1
            if len(self.samples) < SAMPLE_REJECTS:
                self.samples.append(r)

    def submit(
        self, batch: list[Normalised], final_hash: str | None = None, extra: BatchCounts | None = None
    ) -> None:
        self.wait()
        self._inflight = self._pool.submit(self._store, batch, final_hash, extra)

    @property
    def busy(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    def wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def ingest_file(
    db: Path,
    path: Path,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
) -> FileResult:
    """Ingest one file: JSON-lines responses are streamed through DuckDB, everything else the block reader."""
    options = options or IngestOptions()
    progress = progress or Progress(enabled=False)
    started = time.perf_counter()
    forced = None if options.format == "auto" else options.format
    with ByteSource(path) as source:
        sample = source.peek()
        detection = detect(sample, str(path), forced)
        size, compressed, bom = source.size, source.compressed, source.bom
    # for the progress bar: how many bytes of the file a line stands for, judged by its first megabyte
    bytes_per_line = len(sample) / max(1, sample.count(b"\n")) if not compressed else 0.0
    run = SourceRun(
        path=str(path.resolve()),
        size_bytes=size,
        format=detection.format,
        tags=dict(context.tags),
        started_at=datetime.now(UTC).replace(tzinfo=None),
    )
    writer = _Writer(db, run)
    description = detection.description
    used = "blocks"
    try:
        readers: list[Literal["json", "lines"]] = []
        if detection.container == "jsonl" and detection.format in ("openai", "anthropic"):
            if options.reader == "fast" and not bom:
                readers.append("json")
            if options.reader in ("fast", "lines"):
                readers.append("lines")
        check = _FileCheck(path) if readers else None
        for reader in readers:
            assert check is not None
            if _ingest_streamed(
                path,
                reader,
                check,
                detection,
                compressed,
                context,
                normaliser,
                options,
                writer,
                progress,
                bytes_per_line,
            ):
                used = f"duckdb-{reader}"
                break
            writer.close()
            writer = _Writer(db, run)
        if used == "blocks":
            if readers:
                description += " (read line by line: DuckDB's readers could not account for every line)"
            _ingest_blocks(path, detection, context, normaliser, options, writer, progress)
    finally:
        writer.close()
        progress.finish()
    return FileResult(
        path=path,
        format=detection.format,
        description=description,
        reader=used,
        source_id=writer.run.source_id,
        counts=writer.totals,
        size_bytes=size,
        seconds=time.perf_counter() - started,
        sample_rejects=tuple(writer.samples),
        reject_reasons=dict(writer.reasons.most_common()),
    )


class _FileCheck:
    """The file's hash and line count, computed once on a thread beside the first reader that needs it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._result: FileLines | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="quotascope-hash")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = hash_and_count(self._path)
        except BaseException as e:  # handed to the main thread by result()
            self._failed = e

    def result(self) -> FileLines:
        self._thread.join()
        if self._failed is not None:
            raise self._failed
        assert self._result is not None
        return self._result


def _ingest_streamed(
    path: Path,
    reader: Literal["json", "lines"],
    check: _FileCheck,
    detection: Detection,
    compressed: bool,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions,
    writer: _Writer,
    progress: Progress,
    bytes_per_line: float,
) -> bool:
    """DuckDB reads and normalises the file while batches are stored; False (and nothing left stored) if
    DuckDB's rows cannot be matched to the file's lines."""
    spec = spec_for(detection.format, detection.root)
    stream = LineStream(path, spec, context, compressed=compressed, threads=options.workers, reader=reader)
    size = path.stat().st_size
    progress.start(path.name, size)
    try:
        pending: list[pa.Table] = []
        pending_rows = 0
        try:
            for rows in stream.rows():
                pending.append(rows)
                pending_rows += rows.num_rows
                progress.update(min(size, int(stream.seen.lines * bytes_per_line)), stream.seen.lines)
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
        file = check.result()
        if gave_up or not _rows_are_lines(path, reader, stream.seen.lines, file):
            writer.wait()
            if writer.run.source_id is not None:
                discard_source(writer.db, writer.run.source_id)
            return False
        rejects: list[Reject] = []
        for numbers, data in fetch_lines(path, stream.seen.problems):
            rejects += normaliser.explain(spec, data, numbers, context)
        # the last rows, the rejects and the file's end in one transaction
        last = pa.concat_tables(pending) if pending else pa.table({})
        writer.submit([Normalised(last, rejects)], file.content_hash)
        writer.wait()
        return True
    finally:
        stream.close()


def _rows_are_lines(path: Path, reader: Literal["json", "lines"], rows: int, file: FileLines) -> bool:
    """Whether the n-th row DuckDB produced was the file's n-th line, for every row and every line."""
    if reader == "lines":  # one row per line, blank ones included
        return rows == file.lines
    # one row per line that is not blank: all is well if the blank lines are all after the last record
    if file.blank_candidates is None:
        return False
    blank = blank_lines(path, file.blank_candidates) if file.blank_candidates else []
    return rows + len(blank) == file.lines and all(number > rows for number in blank)


def _ingest_blocks(
    path: Path,
    detection: Detection,
    context: IngestContext,
    normaliser: Normaliser,
    options: IngestOptions,
    writer: _Writer,
    progress: Progress,
) -> None:
    """The exact reader: Python reads blocks of lines (or records), worker threads normalise them."""

    def normalise(work: _Work) -> Normalised:
        result = normaliser.normalise(
            work.spec, work.data, context, first_line=work.first_line, line_numbers=work.numbers
        )
        return Normalised(result.rows, work.early_rejects + result.rejects)

    with ByteSource(path) as source:
        pending: list[Normalised] = []
        pending_rows = 0
        rows_seen = 0
        progress.start(path.name, source.size)
        queue: deque[tuple[Future[Normalised], int]] = deque()
        pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="quotascope-parse")
        try:

            def take() -> None:
                nonlocal pending, pending_rows, rows_seen
                future, consumed = queue.popleft()
                done = future.result()
                pending.append(done)
                size = done.rows.num_rows + len(done.rejects)
                pending_rows += size
                rows_seen += size
                progress.update(consumed, rows_seen)
                if pending_rows >= options.batch_rows:
                    writer.submit(pending)
                    pending, pending_rows = [], 0

            if detection.container != "empty":
                for work in _work_items(detection, source, options):
                    queue.append((pool.submit(normalise, work), work.consumed))
                    while len(queue) > options.workers:
                        take()
            while queue:
                take()
            writer.submit(pending, source.content_hash)
            writer.wait()
        finally:
            for future, _ in queue:
                future.cancel()
            pool.shutdown(wait=True)
