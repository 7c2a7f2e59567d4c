"""Formats that need Python before DuckDB: JSON documents, organisation usage pages, LiteLLM rows, CSV.

Each reader turns its input into blocks of one-JSON-object-per-line text with the line (or record) number
of every object, which `storage.normalise.Normaliser` then checks and normalises like any JSON-lines log.
Message content (LiteLLM `messages`/`response`) is dropped here, before anything is stored.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from collectors.ingest.detect import DEEP_JSON_REASON, load_json
from collectors.ingest.files import OVERLONG_REASON, ByteSource, text_lines
from models.errors import InputError
from models.usage_record import CSV_FIELDS, redact_excerpt
from storage.usage import Reject

MAX_DOCUMENT_BYTES = 512 << 20  # a single JSON document is parsed whole; bigger ones should be JSON lines
BLOCK_RECORDS = 20_000
CONTENT_KEYS = ("messages", "response", "proxy_server_request")  # LiteLLM columns holding content
_INTEGER = re.compile(r"^\s*-?\d+\s*$")

# Header names a generic CSV may use for a canonical field without --csv-map.
CSV_ALIASES: dict[str, str] = {
    "id": "request_id",
    "timestamp": "ts",
    "time": "ts",
    "created_at": "ts",
    "start_time": "ts",
    "prompt_tokens": "input_tokens",
    "completion_tokens": "output_tokens",
    "cached_tokens": "cached_input_tokens",
    "cache_read_input_tokens": "cached_input_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "num_requests": "requests",
    "n_requests": "requests",
    "cost": "billed_cost",
    "spend": "billed_cost",
    "currency": "billed_currency",
    "user_id": "user",
    "api_key_id": "key_id",
}
REQUIRED_CSV = ("ts", "model", "input_tokens", "output_tokens")
INTEGER_FIELDS = frozenset(
    {
        "requests",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
    }
)


@dataclass
class RecordBlock:
    """JSON objects, one per line, with their line numbers; and records rejected before that."""

    lines: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def add(self, number: int, record: Mapping[str, Any]) -> None:
        self.lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str))
        self.numbers.append(number)

    def reject(self, number: int, reason: str, raw: str) -> None:
        self.rejects.append(Reject(number, reason, redact_excerpt(raw)))

    def __len__(self) -> int:
        return len(self.lines) + len(self.rejects)

    def data(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode() if self.lines else b""


def _blocks(items: Iterable[tuple[int, Mapping[str, Any] | None, str, str]]) -> Iterator[RecordBlock]:
    """Group (number, record or None, reason, raw) into blocks of BLOCK_RECORDS."""
    block = RecordBlock()
    for number, record, reason, raw in items:
        if record is None:
            block.reject(number, reason, raw)
        else:
            try:
                block.add(number, record)
            except RecursionError:
                block.reject(number, DEEP_JSON_REASON, raw)
        if len(block) >= BLOCK_RECORDS:
            yield block
            block = RecordBlock()
    if len(block):
        yield block


def _not_utf8(raw: bytes) -> str:
    """Why `text_lines` gave no text for this line: not UTF-8, or (no bytes kept) far too long."""
    if not raw:
        return OVERLONG_REASON
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    return "not UTF-8 text"


# ------------------------------------------------------------------------------------------ JSON


def json_values(source: ByteSource, container: str) -> Iterator[tuple[int, Any, str, str]]:
    """(number, parsed value or None, reason, raw) for each JSON value: a line, or a document's elements."""
    if container == "jsonl":
        for number, text, raw in text_lines(source.pieces()):
            if text is None:
                yield number, None, _not_utf8(raw), raw.decode("utf-8", "replace")
                continue
            if not text.strip():
                continue
            try:
                yield number, load_json(text), "", text
            except ValueError as e:
                yield number, None, DEEP_JSON_REASON if str(e) == DEEP_JSON_REASON else "not valid JSON", text
        return
    data = bytearray()
    for piece in source.pieces():
        data += piece
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InputError(
                f"{source.path} is one JSON document larger than {MAX_DOCUMENT_BYTES >> 20} MB; "
                "export it as JSON lines (one record per line) instead"
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        yield 1, None, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", ""
        return
    try:
        document = load_json(text)
    except json.JSONDecodeError as e:
        yield e.lineno, None, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", text[e.pos :]
        return
    except ValueError as e:  # nested too deeply
        yield 1, None, str(e), text
        return
    elements = document if isinstance(document, list) else [document]
    for index, element in enumerate(elements, start=1):
        try:
            yield index, element, "", json.dumps(element, default=str)[:1000]
        except RecursionError:
            yield index, None, DEEP_JSON_REASON, ""


def plain_records(values: Iterable[tuple[int, Any, str, str]]) -> Iterator[RecordBlock]:
    """OpenAI or Anthropic responses read from a JSON document: each element is one record."""
    return _blocks(
        (n, v if isinstance(v, dict) else None, reason or "not a JSON object", raw)
        for n, v, reason, raw in values
    )


def usage_export_records(values: Iterable[tuple[int, Any, str, str]]) -> Iterator[RecordBlock]:
    """OpenAI organisation usage pages (or bare buckets) flattened to one record per result."""

    def flatten() -> Iterator[tuple[int, Mapping[str, Any] | None, str, str]]:
        for number, value, reason, raw in values:
            if value is None:
                yield number, None, reason, raw
                continue
            buckets = (
                value.get("data") if isinstance(value, dict) and value.get("object") != "bucket" else [value]
            )
            if not isinstance(buckets, list):
                yield number, None, "not an organization usage page (no data list of buckets)", raw
                continue
            for bucket in buckets:
                results = bucket.get("results") if isinstance(bucket, dict) else None
                if not isinstance(results, list):
                    yield number, None, "a usage bucket without a results list", raw
                    continue
                for result in results:
                    if not isinstance(result, dict):
                        yield number, None, "a usage result that is not an object", raw
                        continue
                    yield number, _export_record(bucket, result), "", raw

    return _blocks(flatten())


def _export_record(bucket: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    identity = [
        bucket.get("start_time"),
        bucket.get("end_time"),
        *(result.get(k) for k in ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")),
    ]
    key = hashlib.sha1(json.dumps(identity, default=str).encode()).hexdigest()
    record = dict(result)
    record["start_time"] = bucket.get("start_time")
    record["end_time"] = bucket.get("end_time")
    record["_key"] = f"oai-usage:{key}"
    if record.get("model") is None:
        record["model"] = "(all models)"  # the export was not grouped by model: stored, left unpriced
    return record


def litellm_records(rows: Iterable[tuple[int, Any, str, str]]) -> Iterator[RecordBlock]:
    """LiteLLM SpendLogs rows: `metadata` parsed when it is JSON text, content columns dropped."""

    def clean() -> Iterator[tuple[int, Mapping[str, Any] | None, str, str]]:
        for number, row, reason, raw in rows:
            if not isinstance(row, dict):
                yield number, None, reason or "not a JSON object", raw
                continue
            record = {k: v for k, v in row.items() if k not in CONTENT_KEYS and v not in ("", None)}
            metadata = record.get("metadata")
            if isinstance(metadata, str):
                try:
                    record["metadata"] = load_json(metadata)
                except ValueError:
                    record.pop("metadata")
            yield number, record, "", raw

    return _blocks(clean())


# ------------------------------------------------------------------------------------------ CSV


class _Feed:
    """Decoded lines for csv.reader, remembering the number of the last line handed out."""

    def __init__(self, source: ByteSource) -> None:
        self._lines = text_lines(source.pieces())
        self.last = 0
        self.bad: list[tuple[int, str, str]] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            number, text, raw = next(self._lines)
            self.last = number
            if text is not None:
                return text
            self.bad.append((number, _not_utf8(raw), raw.decode("utf-8", "replace")))


def csv_rows(source: ByteSource, delimiter: str) -> Iterator[tuple[int, Any, str, str]]:
    """(line number, {column: value} or None, reason, raw) for each CSV record after the header."""
    csv.field_size_limit(MAX_DOCUMENT_BYTES)
    feed = _Feed(source)
    reader = csv.reader(feed, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        start = feed.last + 1
        cells: list[str] | None = None
        error = ""
        try:
            cells = next(reader)
        except StopIteration:
            pass
        except csv.Error as e:
            error = f"not valid CSV ({e})"
            reader = csv.reader(feed, delimiter=delimiter)
        for number, reason, raw in feed.bad:
            yield number, None, reason, raw
        feed.bad.clear()
        if error:
            yield start, None, error, ""
            continue
        if cells is None:
            return
        if header is None:
            header = [h.strip() for h in cells]
            continue
        if not cells or all(not c.strip() for c in cells):
            continue
        raw = delimiter.join(cells)
        if len(cells) != len(header):
            yield start, None, f"has {len(cells)} fields where the header has {len(header)}", raw
            continue
        yield start, dict(zip(header, cells, strict=True)), "", raw


def check_csv_map(explicit: Mapping[str, str]) -> None:
    """`--csv-map` names only canonical fields (checked before any file is read: a mistake in the command)."""
    unknown = sorted(set(explicit.values()) - set(CSV_FIELDS))
    if unknown:
        raise InputError(
            f"--csv-map names unknown field(s) {', '.join(unknown)}; fields are {', '.join(CSV_FIELDS)}"
        )


def csv_mapping(header: list[str], explicit: Mapping[str, str]) -> dict[str, str]:
    """canonical field -> CSV column, from `--csv-map column=field` and header names that say it."""
    check_csv_map(explicit)
    missing_columns = sorted(set(explicit) - set(header))
    if missing_columns:
        raise InputError(
            f"--csv-map names column(s) {', '.join(missing_columns)} that the CSV header does not have "
            f"(it has {', '.join(header)})"
        )
    mapping = {fieldname: column for column, fieldname in explicit.items()}
    for column in header:
        name = column.strip().lower()
        fieldname = name if name in CSV_FIELDS else CSV_ALIASES.get(name)
        if fieldname and fieldname not in mapping and column not in explicit:
            mapping[fieldname] = column
    missing = [f for f in REQUIRED_CSV if f not in mapping]
    if missing:
        raise InputError(
            f"the CSV has no column for {', '.join(missing)}; name them with "
            f"--csv-map COLUMN={missing[0]},... (its columns: {', '.join(header)})"
        )
    return mapping


def generic_csv_records(
    rows: Iterable[tuple[int, Any, str, str]], mapping: Mapping[str, str]
) -> Iterator[RecordBlock]:
    """CSV rows renamed to canonical fields; whole numbers become numbers, empty cells absent."""

    def convert() -> Iterator[tuple[int, Mapping[str, Any] | None, str, str]]:
        for number, row, reason, raw in rows:
            if row is None:
                yield number, None, reason, raw
                continue
            record: dict[str, Any] = {}
            for fieldname, column in mapping.items():
                value = row.get(column, "")
                if value.strip() == "":
                    continue
                record[fieldname] = (
                    int(value) if fieldname in INTEGER_FIELDS and _INTEGER.match(value) else value
                )
            yield number, record, "", raw

    return _blocks(convert())


def csv_litellm_records(rows: Iterable[tuple[int, Any, str, str]]) -> Iterator[RecordBlock]:
    """LiteLLM SpendLogs exported as CSV: numbers converted, then as JSON rows."""

    def convert() -> Iterator[tuple[int, Any, str, str]]:
        for number, row, reason, raw in rows:
            if row is None:
                yield number, None, reason, raw
                continue
            yield (
                number,
                {k: int(v) if _INTEGER.match(v) and k.endswith("tokens") else v for k, v in row.items()},
                "",
                raw,
            )

    return litellm_records(convert())
