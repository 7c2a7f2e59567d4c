"""The fast paths for JSON-lines logs: DuckDB reads the file itself, in parallel, in file order.

Two readers, fastest first:

- "json": DuckDB's own JSON reader (`read_json`, newline-delimited) parses each line straight into the
  struct of fields a format needs. A line that is not a JSON object comes out as a row of NULLs, so the
  n-th row is still the n-th record; blank lines are skipped. The caller checks afterwards that rows plus
  blank lines make up every line of the file and that no blank line came before a record (else positions
  and line numbers would disagree), and uses the next reader if not. A file starting with a byte-order
  mark never comes here (the reader would take the mark for part of the first record).
- "lines": `read_csv` with a delimiter that never occurs in valid JSON (the control character U+0001)
  and no quoting hands over each line as text, keeps empty lines as NULL rows and keeps file order, so the
  n-th row streamed is line n; `from_json` parses it. About a third slower. DuckDB drops a line that is not
  UTF-8 or longer than its line limit (2 MB; a larger limit makes its buffers grow with the file), and
  treats a lone carriage return as a line break; when the counts differ, what was stored is discarded and
  the file is read by the exact, slower block reader instead.

Either way each record is normalised and checked by the same statement `storage.normalise` builds for
blocks and streamed out as canonical rows in Arrow batches (message content never leaves DuckDB). Nothing
is held but the batch in flight, whatever the file's size. The database file is not touched here:
`storage.usage.store_batch` stores what this yields.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.sql import sql_string
from models.usage_record import RecordSpec
from storage.arrow import int64_array
from storage.db import StorageError
from storage.normalise import _MACROS, IngestContext, _used, build_sql, tag_columns

STAGE_MEMORY = "1GB"
# rows per streamed table: a quarter of a row group, so the writer gets its first one soon after it fills
STREAM_ROWS = 30_720


@dataclass
class StreamedLines:
    """What a stream saw besides the rows it yielded."""

    lines: int = 0  # rows DuckDB produced: one per line ("lines"), one per record ("json")
    blank: int = 0  # empty or whitespace-only lines (not records) the "lines" reader produced
    problems: list[int] = field(default_factory=list)  # line numbers that failed a check


class ReaderGaveUp(StorageError):
    """DuckDB's reader failed on this file; the next reader (the block reader last) takes over."""


class LineStream:
    """Stream a JSON-lines file through DuckDB as canonical rows; close() frees it.

    `name` is what DuckDB opens: a name that is not a pattern (`collectors.ingest.files.OpenedFile`), since
    DuckDB's readers expand `*`, `?`, `[...]` and `{...}` in the names they are given.
    """

    def __init__(
        self,
        name: str,
        spec: RecordSpec,
        context: IngestContext,
        *,
        compressed: bool,
        threads: int = 2,
        reader: Literal["json", "lines"] = "json",
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="quotascope-stream-")
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": max(1, threads),
                "memory_limit": STAGE_MEMORY,
                "temp_directory": self._tmp.name,
            },
        )
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")  # never printed into the output
        for macro in _MACROS:
            self.con.execute(macro)
        self.reader = reader
        compression = sql_string("gzip" if compressed else "none")
        if reader == "json":

            def read_json(columns: str) -> str:
                return (
                    f"read_json({sql_string(name)}, columns = {columns}, format = 'newline_delimited', "
                    f"records = true, ignore_errors = true, compression = {compression})"
                )

            self.sql = build_sql(spec, "stage", tag_columns(context), json_reader=read_json)
        else:
            source = (
                f"read_csv({sql_string(name)}, columns = {{'line': 'VARCHAR'}}, header = false, "
                "delim = '\x01', quote = '', escape = '', auto_detect = false, strict_mode = false, "
                f"ignore_errors = true, compression = {compression})"
            )
            self.sql = build_sql(spec, "stage", tag_columns(context), source)
        self.params = _used(self.sql, context.params())
        self.seen = StreamedLines()

    def rows(self, batch_rows: int = STREAM_ROWS) -> Iterator[pa.Table]:
        """Canonical rows that passed every check, with their line numbers, in file order."""
        try:
            reader = self.con.sql(self.sql, params=self.params).to_arrow_reader(batch_rows)
            for batch in reader:
                yield self._take(pa.Table.from_batches([batch]))
        except duckdb.Error as e:  # a line it cannot take (too long, a count that overflows): the next reader
            raise ReaderGaveUp(f"DuckDB's {self.reader} reader failed: {e}") from e

    def _take(self, table: pa.Table) -> pa.Table:
        first = self.seen.lines + 1
        count = table.num_rows
        self.seen.lines += count
        numbers = int64_array(np.arange(first, first + count))
        table = table.set_column(table.schema.get_field_index("line_no"), "line_no", numbers)
        ok = table.column("ok")
        skipped = pc.or_(table.column("blank"), table.column("null_line"))
        self.seen.blank += pc.sum(skipped).as_py() or 0
        failed = pc.and_(pc.invert(ok), pc.invert(skipped))
        if pc.any(failed).as_py():
            self.seen.problems += pc.filter(numbers, failed).to_pylist()
        checks = ["ok", "blank", "null_line"]
        if ok.null_count == 0 and pc.all(ok).as_py():  # the usual batch: every line kept, nothing to copy
            return table.drop_columns(checks)
        return table.filter(ok).drop_columns(checks)

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()
