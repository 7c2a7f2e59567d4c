"""Hostile and unlucky input (issue #14): whatever one record, line or file does, every other record is still
read, stored or rejected with its reason, and read = stored + duplicates + rejected holds per file.

The corpus is generated here: each case is a bad line between two good ones (or a bad file between two good
files), read by each of the three readers; each test asserts the identity, the reason, and that the
neighbours were stored.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.ingest.files import OpenedFile
from tests.collectors.ingest_support import identity_holds, ingest, query

READERS = ("fast", "lines", "blocks")


def response(key: str, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": f"chatcmpl-{key}",
        "object": "chat.completion",
        "created": 1764000000,
        "model": "deepseek-chat",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    body.update(overrides)
    return body


def line(key: str, **overrides: object) -> str:
    return json.dumps(response(key, **overrides))


def between_good(bad: str) -> str:
    return line("before") + "\n" + bad + "\n" + line("after") + "\n"


def usage(prompt: object, completion: object = 5) -> dict[str, object]:
    return {"prompt_tokens": prompt, "completion_tokens": completion}


DEEP = 10_000
HOSTILE_LINES = {
    "int64 max counts": (
        line("x", usage=usage(2**63 - 1, 2**63 - 1)),
        "usage.prompt_tokens is implausibly large (9223372036854775807)",
    ),
    "int64 min count": (
        line("x", usage=usage(-(2**63))),
        "usage.prompt_tokens is negative (-9223372036854775808)",
    ),
    "2**70 tokens": (
        line("x", usage=usage(2**70)),
        "usage.prompt_tokens is the whole number 1180591620717411303424, more than a count can hold",
    ),
    "1e30 tokens": (
        line("x", usage=usage(1e30)).replace("1e+30", "1e30"),
        "usage.prompt_tokens is the number 1e30, not a whole number",
    ),
    "nested 10,000 deep": (
        line("x")[:-1] + ', "deep": ' + "[" * DEEP + "]" * DEEP + "}",
        None,  # DuckDB's parser has no depth limit: the record is read (Python's readers reject it)
    ),
    "seconds of year 9999": (
        line("x", created=253402300799),
        "timestamp 9999-12-31 23:59:59 is implausible (in the future)",
    ),
    "milliseconds of 1978": (line("x", created=253402300), "is implausible (before 2020"),
    "NUL and escapes in the model": (line("x", model="\u0000\u001b[2J\u009b"), None),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", list(HOSTILE_LINES))
def test_a_hostile_line_is_one_reject_and_its_neighbours_are_stored(
    tmp_path: Path, reader: str, case: str
) -> None:
    bad, reason = HOSTILE_LINES[case]
    log = tmp_path / "log.jsonl"
    log.write_text(between_good(bad))
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert identity_holds(result) and result.counts.read == 3 and result.unreadable is None
    keys = {k for (k,) in query(db, "SELECT record_key FROM usage")}
    assert {"chatcmpl-before", "chatcmpl-after"} <= keys
    if reason is None:
        assert result.counts.stored == 3
    else:
        assert result.counts.rejected == 1
        (stored_reason,) = query(db, "SELECT reason FROM rejects WHERE line_no = 2")
        assert reason in stored_reason[0]


def test_a_hostile_line_in_a_json_document_or_csv_is_one_reject(tmp_path: Path) -> None:
    deep = "[" * DEEP + "]" * DEEP
    document = tmp_path / "doc.json"
    document.write_text("[" + line("a") + ', {"deep": ' + deep + "}, " + line("b") + "]")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, document)
    # Python's parser cannot take the whole document: one reject that says why, nothing invented
    assert identity_holds(result) and result.counts.rejected >= 1
    assert "nested too deeply" in query(db, "SELECT reason FROM rejects")[0][0]
    table = tmp_path / "t.csv"
    table.write_text(
        "ts,model,input_tokens,output_tokens\n"
        f"2025-11-24T00:00:00Z,m,{2**70},1\n"
        f"2025-11-24T00:00:01Z,m,{2**63 - 1},{2**63 - 1}\n"
        "2025-11-24T00:00:02Z,m,10,1\n"
    )
    (result,) = ingest(db, table)
    assert identity_holds(result) and (result.counts.stored, result.counts.rejected) == (1, 2)


@pytest.mark.parametrize("reader", READERS)
def test_a_line_over_16_mb_after_a_normal_one_is_read_and_its_neighbours_too(
    tmp_path: Path, reader: str
) -> None:
    big = line("big", system_fingerprint="x" * (17 << 20))
    log = tmp_path / "log.jsonl"
    log.write_text(between_good(big))
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert identity_holds(result) and (result.counts.stored, result.counts.rejected) == (3, 0)


def test_a_line_longer_than_the_limit_is_one_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors.ingest import files

    monkeypatch.setattr(files, "MAX_LINE_BYTES", 1 << 20)  # 64 MB in use; 1 MB keeps the test small
    monkeypatch.setattr(files, "BLOCK_BYTES", 256 << 10)  # read in pieces smaller than the line
    log = tmp_path / "log.jsonl"
    log.write_text(between_good(line("big", pad="y" * (3 << 20))))
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader="blocks", block_bytes=1 << 20)
    assert identity_holds(result) and (result.counts.stored, result.counts.rejected) == (2, 1)
    assert "a line longer than" in query(db, "SELECT reason FROM rejects")[0][0]


def test_a_file_named_like_a_pattern_is_that_file(tmp_path: Path) -> None:
    (tmp_path / "log1.jsonl").write_text(line("one") + "\n")
    pattern = tmp_path / "log[1].jsonl"
    pattern.write_text(line("bracket") + "\n")
    for name in ("log*.jsonl", "log?.jsonl", "log{1,2}.jsonl"):
        (tmp_path / name).write_text(line(name) + "\n")
    db = tmp_path / "q.duckdb"
    for reader in READERS:
        for path in (pattern, tmp_path / "log*.jsonl", tmp_path / "log?.jsonl", tmp_path / "log{1,2}.jsonl"):
            (result,) = ingest(db, path, reader=reader)
            assert identity_holds(result) and result.counts.read == 1
    keys = {k for (k,) in query(db, "SELECT record_key FROM usage")}
    assert "chatcmpl-one" not in keys
    assert keys == {
        "chatcmpl-bracket",
        "chatcmpl-log*.jsonl",
        "chatcmpl-log?.jsonl",
        "chatcmpl-log{1,2}.jsonl",
    }


def test_duckdb_is_never_shown_the_files_name(tmp_path: Path) -> None:
    path = tmp_path / "a[b]*?.jsonl"
    path.write_text("{}\n")
    with OpenedFile(path) as opened:
        assert not set("[]*?{}") & set(opened.duckdb_name)
        with Path(opened.duckdb_name).open("rb") as other:
            assert other.read() == b"{}\n"


def test_a_folder_goes_on_past_every_kind_of_bad_file(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    packed = gzip.compress(("\n".join(line(f"gz{i}") for i in range(300)) + "\n").encode())
    (folder / "a_cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (folder / "b_binary.log").write_bytes(os.urandom(4096))
    (folder / "c_unknown.jsonl").write_text('{"hello": "world"}\n')
    (folder / "d_deep.json").write_text("[" * DEEP + "]" * DEEP)
    (folder / "e_locked.jsonl").write_text(line("locked") + "\n")
    (folder / "e_locked.jsonl").chmod(0)
    (folder / "f_good.jsonl").write_text(line("good") + "\n")
    db = tmp_path / "q.duckdb"
    results = ingest(db, folder)
    assert [r.path.name for r in results] == sorted(p.name for p in folder.iterdir())
    assert all(identity_holds(r) for r in results)
    by_name = {r.path.name: r for r in results}
    assert by_name["f_good.jsonl"].counts.stored == 1 and by_name["f_good.jsonl"].unreadable is None
    assert by_name["a_cut.jsonl.gz"].counts.stored > 100
    assert by_name["a_cut.jsonl.gz"].unreadable is not None
    for name in ("b_binary.log", "c_unknown.jsonl"):
        assert by_name[name].unreadable is not None, name
    if os.geteuid() != 0:  # root reads any file
        assert "permission denied" in (by_name["e_locked.jsonl"].unreadable or "")
    sources = query(db, "SELECT count(*), count(finished_at) FROM sources")
    assert sources == [(len(results), len(results))]
    assert query(db, "SELECT count(*) FROM rejects WHERE line_no = 0") >= [(2,)]


# ------------------------------------------------------------------------------------------ fuzzing

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def hostile_record(draw: st.DrawFn) -> str:
    """A response whose fields are each either sound or any JSON value; or bytes that are no JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        raw = draw(st.binary(max_size=40))
        return raw.replace(b"\n", b" ").replace(b"\r", b" ").decode("latin-1")
    body = response(str(draw(st.integers(0, 10**6))))
    for field in ("created", "model", "usage"):
        if draw(st.booleans()):
            body[field] = draw(JSON_VALUES)
    if draw(st.booleans()):
        body["usage"] = {
            "prompt_tokens": draw(JSON_VALUES | st.integers(-(2**70), 2**70)),
            "completion_tokens": draw(JSON_VALUES | st.integers(-(2**70), 2**70)),
        }
    return json.dumps(body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(hostile_record(), min_size=1, max_size=12), st.sampled_from(READERS))
def test_fuzzed_lines_never_cost_a_neighbour(
    tmp_path_factory: pytest.TempPathFactory, bad: list[str], reader: str
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    log = folder / "log.jsonl"
    log.write_text(line("first") + "\n" + "\n".join(bad) + "\n" + line("last") + "\n", encoding="latin-1")
    db = folder / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert identity_holds(result), result.counts
    assert result.unreadable is None
    keys = {k for (k,) in query(db, "SELECT record_key FROM usage")}
    assert {"chatcmpl-first", "chatcmpl-last"} <= keys
    assert query(db, "SELECT count(*) FROM rejects WHERE reason IS NULL OR reason = ''") == [(0,)]


def test_a_litellm_row_with_shifted_columns_never_stores_the_key(tmp_path: Path) -> None:
    header = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,model"
    good = "r1,acompletion,88dc28d0,0.01,12,10,2,2025-11-24 08:00:00.000,gpt-4o"
    # a gateway wrote two extra columns before the key: it lands in total_tokens, the first bad count
    shifted = "r2,acompletion,proxy,0.01,sk-live-0123456789abcdefghijklmn,10,2,2025-11-24 08:01:00.000,gpt-4o"
    log = tmp_path / "spend.csv"
    log.write_text("\n".join([header, good, shifted, good.replace("r1", "r3")]) + "\n")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log)
    assert identity_holds(result) and (result.counts.stored, result.counts.rejected) == (2, 1)
    kept = " ".join(str(v) for row in query(db, "SELECT * FROM rejects") for v in row)
    kept += " ".join(str(v) for row in query(db, "SELECT * FROM usage") for v in row)
    assert "0123456789abcdef" not in kept and "sk-live-01" not in kept
    assert "total_tokens is the string" in kept  # the reason is kept, the key in it is not
    assert "0123456789abcdef" not in json.dumps(result.to_json())


CSV_CELLS = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["=1+1", "+cmd|' /C calc'!A0", "@SUM(1)", '"', "\x00", "1e30", "9223372036854775807"]),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(CSV_CELLS, min_size=4, max_size=4), min_size=1, max_size=10))
def test_fuzzed_csv_rows_never_cost_a_neighbour(
    tmp_path_factory: pytest.TempPathFactory, bad: list[list[str]]
) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ts", "model", "input_tokens", "output_tokens"])
    writer.writerow(["2025-11-24T00:00:00Z", "first", "10", "1"])
    writer.writerows(bad)
    writer.writerow(["2025-11-24T00:00:01Z", "last", "10", "1"])
    folder = tmp_path_factory.mktemp("fuzzcsv")
    log = folder / "log.csv"
    log.write_text(buffer.getvalue())
    db = folder / "q.duckdb"
    (result,) = ingest(db, log, fmt="csv")
    assert identity_holds(result), result.counts
    assert result.unreadable is None
    models = {m for (m,) in query(db, "SELECT model FROM usage")}
    assert {"first", "last"} <= models


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(JSON_VALUES, min_size=1, max_size=8))
def test_fuzzed_json_document_elements_never_cost_a_neighbour(
    tmp_path_factory: pytest.TempPathFactory, bad: list[object]
) -> None:
    folder = tmp_path_factory.mktemp("fuzzdoc")
    log = folder / "doc.json"
    log.write_text(json.dumps([response("first"), *bad, response("last")]))
    db = folder / "q.duckdb"
    (result,) = ingest(db, log, fmt="openai")
    assert identity_holds(result), result.counts
    assert result.unreadable is None and result.counts.read == len(bad) + 2
    keys = {k for (k,) in query(db, "SELECT record_key FROM usage")}
    assert {"chatcmpl-first", "chatcmpl-last"} <= keys
