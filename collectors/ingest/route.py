"""One route per file: open it once, look at it once, choose its readers once.

Every file an ingest takes (from the CLI or the scheduler's watcher) goes this way:

1. `files.OpenedFile` opens it once. Every later pass (detection, the content hash, the readers, fetching a
   rejected line again) reads that one descriptor by position, and DuckDB is handed a name for it that is
   never expanded as a pattern.
2. `plan_route` reads its first megabyte once: the container and record format (`detect`), whether it is
   gzip or starts with a byte-order mark, and the readers to try, in order (`Route.readers`).
3. `pipeline.ingest_file` runs them. A streamed DuckDB reader that cannot account for every line hands the
   file to the next; the exact block reader comes last and never gives up on a file: whatever goes wrong
   while reading becomes a reject with its reason, and what was read before it stays stored.

The rules every reader passes, each in one place:

- a path is a path: `files.OpenedFile.duckdb_name`;
- a file that cannot be opened, recognised or read to its end is one reject with its reason
  (`pipeline.ingest_file`), and the next file is read;
- a line longer than `files.MAX_LINE_BYTES` is one reject, its neighbours read (`files.line_blocks`);
- JSON nested deeper than Python's parser goes (about 1,000 levels) is one reject wherever Python parses
  it (`detect.load_json`: JSON documents, LiteLLM metadata, detection); DuckDB's parser, which reads JSON
  lines, has no such limit and reads it;
- counts beyond what a column holds, implausible timestamps and the other record checks: the one statement
  `storage.normalise` builds, which every reader's records go through; a record that makes the statement
  itself fail is found by bisection and rejected alone (`storage.normalise.Normaliser`);
- every reject's reason and excerpt is redacted of secrets on its way into the database
  (`storage.usage.store_batch`, the one write path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from collectors.ingest.detect import Detection, detect
from collectors.ingest.files import ByteSource, OpenedFile

if TYPE_CHECKING:
    from collectors.ingest.pipeline import IngestOptions

Reader = Literal["duckdb-json", "duckdb-lines", "blocks"]
STREAMED_FORMATS = ("openai", "anthropic")


@dataclass(frozen=True)
class Route:
    """What one look at a file decided: its format, the readers to try in order, and progress scaling."""

    file: OpenedFile
    detection: Detection
    readers: tuple[Reader, ...]
    bom: bool
    bytes_per_line: float  # how many bytes of the file a line stands for, judged by its first megabyte


def plan_route(file: OpenedFile, options: IngestOptions) -> Route:
    """Detect the file's format from its first megabyte and choose its readers (InputError if it has none)."""
    forced = None if options.format == "auto" else options.format
    source = ByteSource(file)
    sample = source.peek()
    detection = detect(sample, str(file.path), forced)
    readers: list[Reader] = []
    if detection.container == "jsonl" and detection.format in STREAMED_FORMATS:
        if options.reader == "fast" and not source.bom:
            # DuckDB's JSON reader would take a byte-order mark for part of the first record
            readers.append("duckdb-json")
        if options.reader in ("fast", "lines"):
            readers.append("duckdb-lines")
    readers.append("blocks")
    bytes_per_line = 0.0 if file.compressed else len(sample) / max(1, sample.count(b"\n"))
    return Route(file, detection, tuple(readers), source.bom, bytes_per_line)
