"""The checks of `storage.normalise` over records that arrive typed, as Arrow columns, without a statement.

`storage.normalise` parses JSON lines and checks them in one DuckDB statement per block; planning that
statement costs about 20 ms of CPU however few the lines, and reading JSON costs more than the checks. The
OTLP receiver's compiled scan (`collectors.otlp.wire`) already has each record's values typed: counts as
integers, the time as a timestamp, texts stripped. This module applies the same rules to such columns with
numpy and pyarrow.compute: the same checks (`models.usage_record.shared_checks`: each check's comparison,
bound and reason, in order, which the SQL renders too; the first failed check is the reason), and
gives rows of the same columns and types as the SQL's (`Normaliser.schema`).
`tests/collectors/test_otlp_columnar.py` holds both to the same rows and reasons on hostile records.

It takes the specs whose every field is a top-level key named as the canonical field (`csv_spec`, the
receiver's), holding values that need no reading: counts, times and texts already typed. Records whose
values are of another type (a count given as text, a fraction) take the SQL's path, which says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from models.usage_record import (
    SHOWN_CHARS,
    SHOWN_TIME,
    USER_HASH,
    Check,
    RecordSpec,
    redact_excerpt,
    shared_checks,
)
from storage.normalise import RAW_CHARS, IngestContext, Normalised, Reject

__all__ = ["check_records", "unsupported"]

# The counts a record may give, in the order `RecordSpec.token_fields` checks them.
_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def unsupported(spec: RecordSpec) -> list[str]:
    """What of `spec` these checks do not apply (empty: they apply all of it)."""
    out = []
    for name, paths in (
        ("request_id", spec.record_id),
        ("model", spec.model),
        ("ts", spec.timestamp),
        ("provider", spec.provider),
        ("endpoint", spec.endpoint),
        ("team", spec.team),
        ("project", spec.project),
        ("user", spec.user),
        ("key_id", spec.key_id),
        ("ttft_ms", spec.ttft_ms),
        ("latency_ms", spec.latency_ms),
        ("status", spec.status),
        ("service_tier", spec.service_tier),
    ):
        if paths not in ((), (f"$.{name}",)):
            out.append(f"{name} read from {', '.join(paths)}")
    for name, token in spec.token_fields():
        if name not in _COUNTS or token.paths != (f"$.{name}",):
            out.append(f"the count {name}")
    if spec.usage_block != ("$.input_tokens", "$.output_tokens"):
        out.append("a usage block other than the input and output counts")
    for name in (
        "api_key",
        "tags",
        "first_token_time",
        "end_time",
        "billed_cost",
        "batch",
        "failures",
        "provider_evidence",
        "endpoint_flags",
    ):
        if getattr(spec, name):
            out.append(name)
    if spec.input_excludes_cache or spec.always_batch or spec.default_provider:
        out.append("a count convention or default of its own")
    return out


def check_records(
    spec: RecordSpec,
    records: pa.Table,
    line_numbers: npt.NDArray[np.int64],
    context: IngestContext,
    schema: pa.Schema,
) -> Normalised:
    """The rows (`schema`: the SQL's, `Normaliser.schema`) and rejects of typed records (columns named as
    the canonical fields: counts int64, `ts` a timestamp, texts strings; a column missing is NULL), each
    record's line number given."""
    problems = unsupported(spec)
    if problems:
        raise ValueError(f"the columnar checks do not apply to spec {spec.name!r}: {'; '.join(problems)}")
    n = records.num_rows
    if len(line_numbers) != n:
        raise ValueError(f"{len(line_numbers)} line numbers for {n} records")
    present = set(records.column_names)
    if "request_id" not in present or records.column("request_id").null_count:
        raise ValueError("records without a request_id take the SQL checks (their key is a hash of them)")

    def column(name: str, kind: pa.DataType) -> pa.ChunkedArray | pa.Array:
        return records.column(name) if name in present else pa.nulls(n, kind)

    counts = {name: column(name, pa.int64()) for name in _COUNTS}
    values: dict[str, npt.NDArray[np.int64]] = {
        name: pc.fill_null(array, 0).to_numpy() for name, array in counts.items()
    }
    ts = column("ts", pa.timestamp("us"))
    micros: npt.NDArray[np.int64] = pc.fill_null(ts.cast(pa.int64()), 0).to_numpy()
    absent: dict[str, npt.NDArray[np.bool_]] = {  # each field: which records do not give it
        name: pc.is_null(array).to_numpy(zero_copy_only=False)
        for name, array in [*counts.items(), ("ts", ts), ("model", column("model", pa.string()))]
    }
    no_ts = absent["ts"]
    labels = {name: token.label for name, token in spec.token_fields()}

    def failed(check: Check) -> npt.NDArray[np.bool_]:
        """Which records fail `check` (`models.usage_record.shared_checks`, as the SQL renders it)."""
        name = check.fields[0] if check.fields else ""
        if check.test == "no_usage":  # the spec's usage block is the input and output counts
            return absent["input_tokens"] & absent["output_tokens"]
        if check.test == "missing":
            return absent[name]
        if check.test == "negative":
            return values[name] < 0
        if check.test == "too_large":
            assert isinstance(check.bound, int)
            return values[name] > check.bound
        if check.test == "exceeds":
            *parts, whole = (values[field] for field in check.fields)
            return sum(parts[1:], parts[0]) > whole
        if check.test == "before":
            return ~no_ts & (micros < _micros(check.bound))
        assert check.test == "after" and isinstance(check.bound, timedelta)
        return ~no_ts & (micros > _micros(context.now + check.bound))

    # the checks in the SQL's order, each (failed, why): the first failed one is the record's reason
    checks = [(failed(check), _said(check, spec, labels)) for check in shared_checks(spec)]
    first = np.full(n, len(checks), dtype=np.int16)
    for index in range(len(checks) - 1, -1, -1):
        first[checks[index][0]] = index
    failing = np.flatnonzero(first < len(checks))
    rejects = [
        Reject(
            int(line_numbers[row]),
            _reason(checks[first[row]][1], labels, values, micros, row),
            redact_excerpt(_record_text(records, int(row))[:RAW_CHARS]),
        )
        for row in failing.tolist()
    ]
    kept = records
    numbers = line_numbers
    if len(failing):
        ok = first == len(checks)
        kept = records.filter(pa.array(ok))
        numbers = line_numbers[ok]
    return Normalised(_rows(kept, numbers, context, schema), rejects)


def _micros(at: object) -> int:
    return int(pa.scalar(at, pa.timestamp("us")).cast(pa.int64()).as_py())


def _said(check: Check, spec: RecordSpec, labels: dict[str, str]) -> str | Check:
    """A check's reason when it names no value of the record (the same for every record), else the check."""
    if check.test == "no_usage":
        return check.reason.text(path=spec.usage_block[0])
    if check.test == "missing":
        return check.reason.text(label=labels.get(check.fields[0], ""))
    return check


def _reason(
    why: str | Check,
    labels: dict[str, str],
    values: dict[str, npt.NDArray[np.int64]],
    micros: npt.NDArray[np.int64],
    row: int,
) -> str:
    """The reason of the first check record `row` failed, with its values as the SQL shows them."""
    if isinstance(why, str):
        return why
    name = why.fields[0]
    if why.test in ("negative", "too_large"):
        return why.reason.text(label=labels[name], value=str(int(values[name][row]))[:SHOWN_CHARS])
    if why.test == "exceeds":
        names = why.reason.names()
        return why.reason.text(**{n: int(values[f][row]) for n, f in zip(names, why.fields, strict=True)})
    shown = pa.scalar(int(micros[row]), pa.timestamp("us")).as_py().strftime(SHOWN_TIME)
    if why.test == "before":
        assert isinstance(why.bound, datetime)
        return why.reason.text(ts=shown, year=why.bound.year)
    return why.reason.text(ts=shown)


def _record_text(records: pa.Table, row: int) -> str:
    """A refused record as the JSON line the SQL checks would have quoted (no value is content: the
    records hold none)."""
    (record,) = records.slice(row, 1).to_pylist()
    if record.get("ts") is not None:
        record["ts"] = record["ts"].isoformat()
    shown = {k: v for k, v in record.items() if v is not None}
    return json.dumps(shown, separators=(",", ":"), ensure_ascii=False)


def _rows(
    records: pa.Table, line_numbers: npt.NDArray[np.int64], context: IngestContext, schema: pa.Schema
) -> pa.Table:
    """The canonical rows, as `storage.normalise`'s "rows" statement makes them."""
    n = records.num_rows
    present = set(records.column_names)

    def column(name: str) -> pa.ChunkedArray | pa.Array:
        if name in present:
            return records.column(name)
        return pa.nulls(n, pa.int64() if name in _COUNTS else pa.string())

    def tagged(name: str) -> pa.ChunkedArray | pa.Array:
        tag = context.tags.get(name)
        if tag is None:
            return column(name)
        return pc.coalesce(column(name), pa.scalar(tag, pa.string()))

    zeros = pa.array(np.zeros(n, dtype=np.int64))
    made: dict[str, object] = {
        "record_key": column("request_id"),
        "line_no": pa.array(line_numbers, pa.int64()),
        "ts": column("ts"),
        "provider": pc.utf8_lower(tagged("provider")),
        "model": column("model"),
        "n_requests": pa.array(np.ones(n, dtype=np.int64)),
        "input_tokens": column("input_tokens"),
        "cached_input_tokens": pc.fill_null(column("cached_input_tokens"), 0),
        "cache_write_tokens": pc.fill_null(column("cache_write_tokens"), 0),
        "output_tokens": column("output_tokens"),
        "reasoning_tokens": pc.fill_null(column("reasoning_tokens"), 0),
        "cache_write_1h_tokens": zeros,
        "service_tier": column("service_tier"),
        "batch": pa.array(np.zeros(n, dtype=np.bool_)),
        "endpoint": tagged("endpoint"),
        "team": tagged("team"),
        "project": tagged("project"),
        "user_hash": _hashed(tagged("user"), context.salt),
        "key_id": tagged("key_id"),
        "ttft_ms": column("ttft_ms") if "ttft_ms" in present else pa.nulls(n, pa.float64()),
        "latency_ms": column("latency_ms") if "latency_ms" in present else pa.nulls(n, pa.float64()),
        "status": column("status"),
    }
    unknown = [name for name in schema.names if name not in made]
    if unknown:
        raise ValueError(f"the columnar checks cannot fill {', '.join(unknown)}")
    return pa.table([made[name] for name in schema.names], schema=schema)


def _hashed(users: pa.ChunkedArray | pa.Array, salt: str) -> pa.Array | pa.ChunkedArray:
    """`models.usage_record.USER_HASH` of each user (computed once per distinct user)."""
    if users.null_count == len(users):
        return pa.nulls(len(users), pa.string())
    encoded = pc.dictionary_encode(users)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names: Sequence[str] = encoded.dictionary.to_pylist()
    hashed = pa.array([USER_HASH.of(salt, name) for name in names], pa.string())
    return pc.take(hashed, encoded.indices)
