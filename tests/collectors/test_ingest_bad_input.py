"""Bad input is accounted for, never swallowed: read = stored + duplicates + rejected, each reject with its
line,
reason and a redacted excerpt. All three readers (DuckDB's JSON reader, DuckDB's line reader and the exact
block reader) must agree."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.errors import InputError
from tests.collectors.ingest_support import identity_holds, ingest, query, totals


def response(i: int, prompt: object = 100, completion: object = 20, **usage: object) -> str:
    body = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1741000000 + i,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"secret answer {i}"}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, **usage},
    }
    return json.dumps(body)


BAD_LINES = {
    "truncated": (response(1)[:60], "not valid JSON (the record is cut short)"),
    "string count": (
        response(2, prompt="100"),
        'usage.prompt_tokens is the string "100", not a whole number',
    ),
    "fraction": (
        response(3, completion=2.5),
        "usage.completion_tokens is the fraction 2.5, not a whole number",
    ),
    "negative": (response(4, prompt=-7), "usage.prompt_tokens is negative (-7)"),
    "absurd": (response(5, prompt=10**12), "usage.prompt_tokens is implausibly large (1000000000000)"),
    "overflow": (response(6, completion=2**64 - 1), "usage.completion_tokens is implausibly large"),
    "cached above prompt": (
        response(7, prompt_tokens_details={"cached_tokens": 500}),
        "cached (500) and cache-write (0) tokens exceed all prompt tokens (100)",
    ),
    "reasoning above output": (
        response(8, completion_tokens_details={"reasoning_tokens": 50}),
        "reasoning tokens (50) exceed output tokens (20)",
    ),
    "bad total": (response(9, total_tokens=999), "usage.total_tokens (999) is not"),
    "no usage": (
        json.dumps({"id": "x", "object": "chat.completion", "created": 1741000000}),
        "no usage block",
    ),
    "error response": (
        json.dumps({"error": {"message": "Rate limit reached", "type": "requests"}}),
        "an error response",
    ),
    "chunk without usage": (
        json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1741000000, "model": "gpt-4o"}),
        "a stream chunk without usage",
    ),
    "not an object": ("[1, 2, 3]", "not a JSON object"),
    "no model": (response(10).replace('"model": "gpt-4o", ', ""), "no model name"),
    "seconds as ms": (
        response(11).replace('"created": 1741000011', '"created": 1741000011000000000'),
        "implausible",
    ),
}


READERS = {"fast": "duckdb-json", "lines": "duckdb-lines", "blocks": "blocks"}


@pytest.mark.parametrize("reader", list(READERS))
def test_every_bad_line_is_rejected_with_its_line_and_reason(tmp_path: Path, reader: str) -> None:
    log = tmp_path / "mixed.jsonl"
    lines = [response(100)]
    for text, _ in BAD_LINES.values():
        lines += [text, response(100 + len(lines))]
    log.write_text("\n".join(lines) + "\n")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert result.reader == READERS[reader]  # each reader accounted for every line itself
    assert identity_holds(result)
    assert result.counts.rejected == len(BAD_LINES)
    assert result.counts.stored == len(BAD_LINES) + 1
    rejects = query(db, "SELECT line_no, reason, excerpt FROM rejects ORDER BY line_no")
    assert [r[0] for r in rejects] == [2 + 2 * k for k in range(len(BAD_LINES))]
    for (_, reason, excerpt), (_, expected) in zip(rejects, BAD_LINES.values(), strict=True):
        assert expected in reason
        assert "secret answer" not in (excerpt or "")  # content is redacted from excerpts
    stored = query(db, "SELECT rows_read, rows_stored, rows_duplicate, rows_rejected FROM sources")
    assert stored == [(len(lines), len(BAD_LINES) + 1, 0, len(BAD_LINES))]


@pytest.mark.parametrize("reader", ["fast", "lines"])
def test_non_utf8_bytes_reject_only_their_line(tmp_path: Path, reader: str) -> None:
    log = tmp_path / "latin1.jsonl"
    log.write_bytes(
        (response(1) + "\n").encode()
        + b'{"id": "caf\xe9", "model": "gpt-4o"}\n'
        + (response(2) + "\n").encode()
    )
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert (result.counts.read, result.counts.stored, result.counts.rejected) == (3, 2, 1)
    if reader == "fast":  # DuckDB's JSON reader keeps the line's place (a row of NULLs)
        assert result.reader == "duckdb-json"
    else:  # its line reader drops the line; the exact one takes over
        assert result.reader == "blocks" and "read line by line" in result.description
    assert query(db, "SELECT line_no, reason FROM rejects") == [
        (2, "not UTF-8 text (byte 0xe9 at column 12)")
    ]


@pytest.mark.parametrize("reader", list(READERS))
def test_bom_crlf_and_blank_lines(tmp_path: Path, reader: str) -> None:
    log = tmp_path / "windows.jsonl"
    text = "\r\n".join([response(1), "", "   ", response(2), response(2)]) + "\r\n\r\n"
    log.write_bytes(b"\xef\xbb\xbf" + text.encode())
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    # the byte-order mark keeps DuckDB's JSON reader away (it would take it for part of the first record)
    assert result.reader == {"fast": "duckdb-lines"}.get(reader, READERS[reader])
    # blank lines are not records; the repeated line is a duplicate
    assert (result.counts.read, result.counts.stored, result.counts.duplicates) == (3, 2, 1)
    assert query(db, "SELECT record_key, line_no FROM usage ORDER BY line_no") == [
        ("chatcmpl-1", 1),
        ("chatcmpl-2", 4),
    ]


@pytest.mark.parametrize(
    ("lines", "reader"),
    [
        ([1, 2, 3, "", " \t", "\f"], "duckdb-json"),  # blank lines only at the end: places still agree
        ([" " + response(1), 2, "\t", 3], "duckdb-lines"),  # a blank line before a record: they do not
        (["", 1, 2], "duckdb-lines"),
        ([1, "\f", 2], "duckdb-lines"),
    ],
)
def test_blank_lines_before_a_record_hand_the_file_to_the_line_reader(
    tmp_path: Path, lines: list[int | str], reader: str
) -> None:
    log = tmp_path / "blanks.jsonl"
    log.write_text("\n".join(response(x) if isinstance(x, int) else x for x in lines) + "\n")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log)
    assert result.reader == reader
    records = [n for n, x in enumerate(lines, 1) if not isinstance(x, str) or x.strip()]
    assert result.counts.read == result.counts.stored == len(records)
    assert [r[0] for r in query(db, "SELECT line_no FROM usage ORDER BY line_no")] == records
    assert query(db, "SELECT count(*) FROM sources") == [(1,)]  # the abandoned read left nothing behind


def test_an_empty_file_reads_nothing(tmp_path: Path) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_bytes(b"")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log)
    assert (result.format, result.counts.read) == ("empty", 0)
    assert query(db, "SELECT format, rows_read, finished_at IS NOT NULL FROM sources") == [("empty", 0, True)]


def test_a_folder_stands_for_its_log_files(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text(response(1) + "\n")
    (folder / "sub" / "b.jsonl").write_text(response(2) + "\n")
    (folder / "notes.md").write_text("# not a log\n")
    db = tmp_path / "q.duckdb"
    results = ingest(db, folder)
    assert [r.path.name for r in results] == ["a.jsonl", "b.jsonl"]
    assert totals(db)["rows"] == 2
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="folder with no log files"):
        ingest(db, tmp_path / "nothing")
    with pytest.raises(InputError, match="no such file"):
        ingest(db, tmp_path / "missing.jsonl")


def test_unrecognisable_content_is_one_reject_naming_the_options(tmp_path: Path) -> None:
    log = tmp_path / "odd.jsonl"
    log.write_text(json.dumps({"hello": "world"}) + "\n")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log)
    assert result.unreadable is not None and "cannot tell which log format" in result.unreadable
    assert "--format openai" in result.unreadable
    assert identity_holds(result) and (result.counts.read, result.counts.rejected) == (1, 1)
    assert query(db, "SELECT line_no, reason LIKE '%cannot tell%' FROM rejects") == [(0, True)]


def test_a_csv_without_the_needed_columns_says_how_to_map_them(tmp_path: Path) -> None:
    log = tmp_path / "g.csv"
    log.write_text("when,what,in,out\n2025-03-01,gpt-4o,1,2\n")
    (result,) = ingest(tmp_path / "q.duckdb", log)
    assert result.unreadable is not None and "--csv-map" in result.unreadable
    assert identity_holds(result)
    with pytest.raises(InputError, match="unknown field"):  # a mistake in the command: nothing is read
        ingest(tmp_path / "q.duckdb", log, fmt="csv", csv_map={"when": "timestamp"})


def test_csv_rows_with_the_wrong_shape_or_types_are_rejected(tmp_path: Path) -> None:
    log = tmp_path / "g.csv"
    log.write_text(
        "ts,model,input_tokens,output_tokens\n"
        "2025-03-01T00:00:00Z,gpt-4o,10,2\n"
        "2025-03-01T00:01:00Z,gpt-4o,ten,2\n"
        "2025-03-01T00:02:00Z,gpt-4o,10\n"
        "not a date,gpt-4o,10,2\n"
    )
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log)
    assert (result.counts.read, result.counts.stored, result.counts.rejected) == (4, 1, 3)
    assert query(db, "SELECT line_no, reason FROM rejects ORDER BY line_no") == [
        (3, 'input_tokens is the string "ten", not a whole number'),
        (4, "has 3 fields where the header has 4"),
        (5, 'timestamp the string "not a date" is not a date-time'),
    ]


@pytest.mark.parametrize("reader", list(READERS))
def test_a_truncated_gzip_keeps_its_whole_lines_and_rejects_the_rest(tmp_path: Path, reader: str) -> None:
    import gzip

    packed = gzip.compress(("\n".join(response(i) for i in range(200)) + "\n").encode())
    log = tmp_path / "cut.jsonl.gz"
    log.write_bytes(packed[: len(packed) // 2])
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert result.unreadable is not None and "gzip data ends early" in result.unreadable
    assert identity_holds(result) and result.counts.rejected == 1 and result.counts.stored > 50
    (last,) = query(db, "SELECT line_no, reason FROM rejects")
    assert last[0] == result.counts.stored + 1 and "the rest of the file is not read" in last[1]


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from collectors.ingest import IngestOptions, ingest_paths
    options = IngestOptions(batch_rows=20_000, block_bytes=4 << 20, reader=sys.argv[3])
    (result,) = ingest_paths(Path(sys.argv[1]), [Path(sys.argv[2])], salt="s", options=options)
    assert result.counts.stored == result.counts.read, result.counts
    print(result.counts.stored, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def _peak_rss_kib(tmp_path: Path, log: Path, mode: str) -> tuple[int, int]:
    db = tmp_path / f"{log.stem}-{mode}.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(db), str(log), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    stored, peak = done.stdout.split()
    return int(stored), int(peak)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "lines", "blocks"])
def test_memory_stays_flat_as_the_file_grows(tmp_path: Path, mode: str) -> None:
    """A stand-in for the 2 GB file (which would take minutes here): going from a 100 MB file to a 300 MB one
    must cost far less memory than the 226 MB it adds. Peak RSS of a fresh process each time; the readers
    hold a block or a batch at a time, so past DuckDB's and Python's warm-up the peak stays put. Measured
    here, three runs each: +24 to +29 MB DuckDB's JSON reader, +11 to +72 MB its line reader (its buffers
    vary from run to run), -6 to +34 MB the block reader; a reader that held the file would add 226 MB."""
    line = response(0).replace("secret answer 0", "x" * 900)
    sizes = {"mid": 100_000, "big": 300_000}
    files = {}
    for name, count in sizes.items():
        files[name] = tmp_path / f"{name}.jsonl"
        with files[name].open("w") as out:
            for i in range(count):
                out.write(line.replace("chatcmpl-0", f"chatcmpl-{i}") + "\n")
    added = files["big"].stat().st_size - files["mid"].stat().st_size
    assert added > 190e6
    stored_mid, rss_mid = _peak_rss_kib(tmp_path, files["mid"], mode)
    stored_big, rss_big = _peak_rss_kib(tmp_path, files["big"], mode)
    assert (stored_mid, stored_big) == (sizes["mid"], sizes["big"])
    growth = (rss_big - rss_mid) * 1024
    assert growth < added / 3, f"peak RSS grew by {growth / 1e6:.0f} MB for {added / 1e6:.0f} MB more file"


def test_rss_is_measured_in_kib_here() -> None:
    # ru_maxrss is KiB on Linux (bytes on macOS); the memory test above relies on it
    assert sys.platform.startswith("linux")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 10_000


@pytest.mark.parametrize("reader", list(READERS))
def test_lines_of_other_white_space_are_rejected_by_every_reader(tmp_path: Path, reader: str) -> None:
    # blank means spaces, tabs, \f and line ends; a vertical tab, a no-break space or an ideographic space
    # alone is not valid JSON (DuckDB's JSON reader skips \v lines: the file goes to its line reader)
    odd = ["\v", "\u00a0", "\u3000", "\x1c", " \f "]
    log = tmp_path / "odd.jsonl"
    log.write_text("\n".join([response(1), *odd, response(2)]) + "\n")
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, log, reader=reader)
    assert (result.counts.read, result.counts.stored, result.counts.rejected) == (6, 2, 4)
    reason = (
        "not valid JSON (only white space JSON does not allow, such as a vertical tab or a no-break space)"
    )
    assert query(db, "SELECT line_no, reason FROM rejects ORDER BY line_no") == [
        (n, reason) for n in (2, 3, 4, 5)
    ]


def test_one_bad_result_on_a_usage_export_page_costs_its_page_mates_nothing(tmp_path: Path) -> None:
    """The results of one page share its line number: a bad one is one reject, the others are stored once."""
    from tests.collectors.ingest_support import SAMPLES

    page = json.loads((SAMPLES / "openai_usage_export.json").read_text())
    first = page["data"][0]["results"][0]
    page["data"][0]["results"] = [first, {**first, "input_tokens": -5}, {**first, "model": "gpt-4o-mini"}]
    log = tmp_path / "usage.json"
    log.write_text(json.dumps(page))
    (result,) = ingest(tmp_path / "q.duckdb", log)
    assert identity_holds(result)
    assert (result.counts.read, result.counts.stored, result.counts.rejected) == (4, 3, 1)
    assert [r[0] for r in query(tmp_path / "q.duckdb", "SELECT reason FROM rejects")] == [
        "input_tokens is negative (-5)"
    ]
