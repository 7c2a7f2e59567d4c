"""The normaliser's two statements agree: a line is stored exactly when the reasons statement finds nothing
wrong with it, and every other line gets a reason (never the fallback that would mean they disagree). And
DuckDB's two readers (its JSON reader; its line reader with from_json) make the same rows of a file."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.ingest.formats import ANTHROPIC, OPENAI, openai_spec
from models.usage_record import KEY_HASH, USER_HASH
from storage.normalise import _MACROS, IngestContext, Normaliser, build_sql
from storage.staging import LineStream

CONTEXT = IngestContext(salt="s", now=datetime(2026, 11, 23))
NORMALISER = Normaliser()

count = st.one_of(
    st.integers(0, 5000),
    st.integers(-5, -1),
    st.integers(10**9, 2**64 - 1),
    st.floats(0, 100, allow_nan=False).map(lambda f: round(f, 1)),
    st.integers(0, 99).map(str),
    st.none(),
    st.booleans(),
    st.just({"n": 1}),
)
timestamp = st.one_of(
    st.integers(1_700_000_000, 1_800_000_000),
    st.integers(1_700_000_000_000, 1_800_000_000_000),  # milliseconds
    st.just(0),
    st.just("2025-03-01T10:00:00Z"),
    st.just("yesterday"),
    st.none(),
)


@st.composite
def openai_record(draw: st.DrawFn) -> str:
    usage: dict[str, Any] = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_cache_hit_tokens"):
        if draw(st.booleans()):
            usage[key] = draw(count)
    if draw(st.booleans()):
        usage["prompt_tokens_details"] = draw(
            st.one_of(st.none(), st.fixed_dictionaries({"cached_tokens": count}))
        )
    if draw(st.booleans()):
        usage["completion_tokens_details"] = {"reasoning_tokens": draw(count)}
    record: dict[str, Any] = {"object": draw(st.sampled_from(["chat.completion", "chat.completion.chunk"]))}
    if draw(st.booleans()):
        record["id"] = draw(st.sampled_from(["a", "b", "", "  ", " c\t", "\u3000d", 5, {"x": 1}]))
    if draw(st.integers(0, 4)):
        record["model"] = draw(st.sampled_from(["gpt-4o", "", 7, None]))
    if draw(st.integers(0, 4)):
        record["created"] = draw(timestamp)
    if draw(st.integers(0, 5)):
        record["usage"] = usage
    text = json.dumps(record)
    return draw(
        st.sampled_from(
            [text, text, text, text[: len(text) // 2], "[1]", '"x"', text + " {}", text.replace(" ", "")]
        )
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(openai_record(), min_size=1, max_size=30))
def test_stored_or_rejected_with_a_reason_never_both_never_neither(lines: list[str]) -> None:
    result = NORMALISER.normalise(OPENAI, ("\n".join(lines) + "\n").encode(), CONTEXT)
    stored = set(result.rows.column("line_no").to_pylist())
    rejected = {r.line_no: r.reason for r in result.rejects}
    assert not stored & set(rejected)
    assert stored | set(rejected) == set(range(1, len(lines) + 1))
    assert not any("quotascope bug" in reason for reason in rejected.values()), rejected
    for row in result.rows.to_pylist():
        assert row["cached_input_tokens"] + row["cache_write_tokens"] <= row["input_tokens"]
        assert row["reasoning_tokens"] <= row["output_tokens"]


def test_anthropic_statement_reads_each_record_once() -> None:
    # every path the spec reads goes into one from_json structure: the record is parsed once
    sql = build_sql(ANTHROPIC, "rows")
    assert sql.count("from_json(") == 1 and "json_extract(line" not in sql
    assert "cache_read_input_tokens" in sql and "cache_creation_input_tokens" in sql


def test_an_envelope_spec_reads_envelope_fields() -> None:
    sql = build_sql(openai_spec("response"), "rows")
    assert '"timestamp"' in sql and '"tags"' in sql
    bare = build_sql(OPENAI, "rows")
    assert '"tags"' not in bare  # a bare response has no envelope: fewer paths to look up per line


@settings(max_examples=60, deadline=None)
@given(st.lists(openai_record(), min_size=1, max_size=30))
def test_duckdbs_json_reader_and_line_reader_make_the_same_rows(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "log.jsonl"
        log.write_text("\n".join(lines) + "\n")
        seen = {}
        for reader in ("json", "lines"):
            stream = LineStream(str(log), OPENAI, CONTEXT, compressed=False, threads=2, reader=reader)
            try:
                rows = [row for table in stream.rows() for row in table.to_pylist()]
            finally:
                stream.close()
            seen[reader] = (rows, stream.seen.problems, stream.seen.lines)
    assert seen["json"] == seen["lines"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=6), min_size=1, max_size=20))
def test_qs_text_trims_as_trim_does(texts: list[str]) -> None:
    con = duckdb.connect()
    for macro in _MACROS:
        con.execute(macro)
    rows = con.execute(
        "SELECT qs_text(x) IS NOT DISTINCT FROM nullif(trim(x), '') FROM unnest(?::VARCHAR[]) t(x)", [texts]
    ).fetchall()
    assert all(row[0] for row in rows), texts


# the characters where the test of the first and last character could go wrong: either side of visible ASCII,
# white space trim removes or keeps, a combining mark, multi-byte letters and spaces, NUL
_EDGES = [" ", "!", "~", "\x7f", "\x1f", "\t", "\n", "\r", "\x00", "\u00a0", "\u0301", "\u3000", "é", "a"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.sampled_from(_EDGES), max_size=5), min_size=1, max_size=20))
def test_qs_text_trims_as_trim_does_at_the_edges_of_visible_ascii(texts: list[str]) -> None:
    test_qs_text_trims_as_trim_does.hypothesis.inner_test(texts)  # type: ignore[attr-defined]


@settings(max_examples=50, deadline=None)
@given(salt=st.text(max_size=20), value=st.text(min_size=1, max_size=40))
def test_a_pseudonym_is_the_same_in_python_and_in_the_ingests_sql(salt: str, value: str) -> None:
    """`USER_HASH` and `KEY_HASH` are one rule each: the columnar checks compute it in Python, the ingest's
    statement in DuckDB; quotes, NULs and any other text give both the same pseudonym."""
    with duckdb.connect() as con:
        for rule in (USER_HASH, KEY_HASH):
            sql = f"SELECT {rule.sql('$salt', '$value')}"
            row = con.execute(sql, {"salt": salt, "value": value}).fetchone()
            assert row is not None and row[0] == rule.of(salt, value)
    # the rule itself: stored pseudonyms stay those of earlier ingests
    assert USER_HASH.of("s4lt", "alice") == "uada5ea580d68147"
    assert KEY_HASH.of("s4lt", "sk-abc") == "k984e29182f6"
