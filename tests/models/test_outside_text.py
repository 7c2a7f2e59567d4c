"""The one sanitiser for outside text: each destination's function, and that it cannot be talked round."""

from __future__ import annotations

import csv
import io
import re

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from models.outside_text import (
    csv_safe_frame,
    for_chart,
    for_csv_cell,
    for_json_text,
    for_markdown,
    for_terminal,
    redact_secrets,
    to_csv,
)

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@settings(deadline=None)  # a loaded machine must not fail the test
@given(st.text())
def test_nothing_a_terminal_obeys_survives(text: str) -> None:
    shown = for_terminal(text)
    assert not CONTROL.search(shown)
    assert "\n" not in shown
    assert "\n" not in for_terminal(text + "\n", keep_newlines=True)[:-1] or "\n" in text


def test_escapes_are_shown_not_obeyed() -> None:
    assert for_terminal("\x1b[2J\x1b]0;pwned\x07evil") == "\\x1b[2J\\x1b]0;pwned\\x07evil"
    assert for_terminal("a\u202eb\u009bc\td") == "a\\u202eb\\x9bc\\td"
    assert for_terminal("line\nbreak", keep_newlines=True) == "line\nbreak"


@settings(deadline=None)  # a loaded machine must not fail the test
@given(st.text())
def test_markdown_is_one_code_span_showing_the_text(text: str) -> None:
    shown = for_markdown(text)
    if not text:
        assert shown == ""
        return
    fence = re.match("`+", shown)
    assert fence is not None and shown.endswith(fence.group(0))
    inner = shown[len(fence.group(0)) : -len(fence.group(0))]
    assert fence.group(0) not in inner  # the fence cannot be closed early by the text
    assert not CONTROL.search(inner)


def test_markdown_links_and_directives_are_inside_the_span() -> None:
    assert for_markdown("[x](http://evil.example)") == "`[x](http://evil.example)`"
    assert for_markdown("a ``b`` c") == "```a ``b`` c```"
    assert for_markdown("`x`") == "`` `x` ``"


def test_chart_labels_show_tags() -> None:
    assert for_chart('<a href="http://e">x</a> & y') == '&lt;a href="http://e"&gt;x&lt;/a&gt; &amp; y'


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised() -> None:
    for formula in ("=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx", "\uff1dfullwidth"):
        assert for_csv_cell(formula) == "'" + formula
    assert for_csv_cell("gpt-4o") == "gpt-4o" and for_csv_cell(-5) == -5
    frame = pl.DataFrame({"model": ['=HYPERLINK("http://e")', "ok", None], "cost": [-1.5, 2.0, None]})
    rows = list(csv.DictReader(io.StringIO(to_csv(frame))))
    assert [r["model"] for r in rows] == ['\'=HYPERLINK("http://e")', "ok", ""]
    assert rows[0]["cost"] == "-1.5"  # numbers stay numbers
    assert csv_safe_frame(pl.DataFrame({"n": [1]})).equals(pl.DataFrame({"n": [1]}))


@settings(deadline=None)  # a loaded machine must not fail the test
@given(st.text())
def test_no_csv_text_cell_starts_a_formula(text: str) -> None:
    cell = csv_safe_frame(pl.DataFrame({"t": [text]}))["t"][0]
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_json_text_escapes_what_json_leaves_raw() -> None:
    assert for_json_text('"a\u009bb\u2028"') == '"a\\u009bb\\u2028"'


def test_keys_are_redacted_and_ordinary_words_kept() -> None:
    text = (
        "sk-proj-AbCdEf0123456789 sk-ant-api03-xyz_123456 Bearer abc.def.ghi-jkl "
        "x-api-key: 0123456789abcdef AKIAABCDEFGHIJKLMNOP hf_abcdefghijklmnopqrstuvwx"
    )
    shown = redact_secrets(text)
    for secret in ("AbCdEf0123", "xyz_123456", "abc.def.ghi", "0123456789abcdef", "AKIAABCD", "hf_abcdef"):
        assert secret not in shown
    kept = "the token bucket refills; max_tokens exceeded; task-12345678 failed; gpt-4o-mini"
    assert redact_secrets(kept) == kept
    assert redact_secrets("my key is hunter22!", known=["hunter22"]) == "my key is ***!"


def test_every_csv_export_goes_through_to_csv() -> None:
    """A CSV written anywhere but `models.outside_text` would skip the formula rule: use `to_csv`."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    writers = re.compile(r"\.write_csv\(|csv\.writer\(|csv\.DictWriter\(")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for package in ("collectors", "dashboard", "models", "quotascope", "storage")
        for path in sorted((root / package).rglob("*.py"))
        if path.name != "outside_text.py"
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if writers.search(text)
    ]
    assert not offenders, f"write CSV with models.outside_text.to_csv (formula injection): {offenders}"


@settings(deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=6))
def test_a_table_shows_every_cell_as_for_display_does(cells: list[str | None]) -> None:
    from models.outside_text import display_frame, for_display

    shown = display_frame(
        pl.DataFrame({"name": cells, "n": list(range(len(cells)))}, schema={"name": pl.String, "n": pl.Int64})
    )
    assert shown["name"].to_list() == [None if c is None else for_display(c) for c in cells]
    assert shown["n"].to_list() == list(range(len(cells)))
