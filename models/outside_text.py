"""Text that came from outside (log records, file names, HTTP headers, catalog files) on its way to a person.

One function per destination, so whoever adds a page, an export or a command calls the one that fits:

- a terminal: `for_terminal`. Control characters (ESC, BEL, CR, backspace, C1, bidirectional overrides)
  shown escaped (`\\x1b`): a model name cannot clear the screen, retitle the window or fake a line.
- JSON output: `for_json_text`. C1 controls and DEL, which JSON leaves raw, escaped as `\\u009b`.
- a plain-text widget (table cell, option of a select box): `for_display`, `display_frame` for a table.
  Control characters escaped.
- Markdown (st.markdown, st.info, st.caption, widget labels): `for_markdown`. Control characters escaped,
  the text set in an inline code span: a name shows as typed, never as a link, image, colour or formula.
- a Plotly chart (legend, axis, hover): `for_chart`. `<`, `>`, `&` as entities (Plotly obeys `<a href>`).
- a CSV cell: `for_csv_cell`, `csv_safe_frame`, `to_csv`. A text cell starting with `=`, `+`, `-`, `@`,
  tab or carriage return gets a leading `'` (OWASP, "CSV Injection"): a spreadsheet shows it, never runs it.
- anything kept (a reject reason, a header, an error): `redact_secrets`. API keys and bearer tokens, and
  any known secret given, replaced by `***`.

Everything here is pure: strings and polars frames in, strings and frames out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # polars costs a tenth of a second to import; printing to a terminal never needs it
    import polars as pl

# C0 controls and DEL, C1 controls, and the Unicode format characters that reorder or hide text
# ("Trojan Source", CVE-2021-42574): bidirectional embeddings/overrides/isolates, zero-width joiners aside
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]")
_CONTROL_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

_CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")

# Key shapes of the providers quotascope talks to, and generic bearer tokens. Over-matching an id that looks
# like a key costs a few characters of an excerpt; under-matching leaks a key.
_SECRETS = (
    # OpenAI, DeepSeek, Anthropic (sk-ant-...), project and restricted keys
    re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/\-=]{8,}"),
    re.compile(
        r"(?i)\b(api[_-]?key|x-api-key|authorization|access[_-]?token|secret)(\s*[:=]\s*)[A-Za-z0-9._~+/\-=]{8,}"
    ),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),  # Google API key
    re.compile(r"\b(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{20,}"),  # GitHub tokens
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face
    re.compile(r"\bxai-[A-Za-z0-9]{20,}"),  # xAI
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # a JWT
)
REDACTED = "***"


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: object, *, keep_newlines: bool = False) -> str:
    """Text safe to print: every control character shown escaped (`keep_newlines` keeps line breaks, for
    whole messages whose fields were escaped already or came from quotascope itself)."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_escape, str(text))


def for_json_text(text: str) -> str:
    """A JSON document's text with the characters JSON leaves raw (C1 controls, DEL, line/bidi separators)
    escaped; they only ever occur inside strings, so the document stays the same value."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def for_display(text: object) -> str:
    """For a widget that shows plain text (a table cell, an option of a select box)."""
    return _CONTROL.sub(_escape, str(text))


# the same characters as `_CONTROL`, in the syntax of polars' (Rust) regular expressions
_CONTROL_RUST = (
    r"[\x00-\x1f\x7f-\x9f\x{200e}\x{200f}\x{202a}-\x{202e}\x{2066}-\x{2069}\x{2028}\x{2029}\x{feff}]"
)


def display_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame for a table widget: control characters in its text cells shown escaped (`for_display`).

    Only the columns that hold one are rewritten (found vectorised; tables shown on a page are small)."""
    import polars as pl

    for name, dtype in frame.schema.items():
        if dtype == pl.String and frame[name].str.contains(_CONTROL_RUST).any():
            values = [None if v is None else for_display(v) for v in frame[name].to_list()]
            frame = frame.with_columns(pl.Series(name, values, dtype=pl.String))
    return frame


def for_markdown(text: object) -> str:
    """For text placed inside Markdown: an inline code span, shown exactly as typed.

    Backslash-escaping is not enough: GitHub-flavoured Markdown turns any `http://...` in text into a live
    link, escaped or not. Inside a code span nothing is a link, heading, colour (`:red[...]`) or formula
    (`$...$`); the span's fence is one backtick longer than any run of backticks in the text."""
    shown = for_display(text)
    if not shown:
        return ""
    longest = max((len(run) for run in re.findall("`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def for_chart(text: object) -> str:
    """For a Plotly label (legend entry, axis tick, hover text): tags shown, not obeyed."""
    shown = for_display(text)
    return shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def for_csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading `'`.

    Numbers are left as numbers (a negative amount is data, not a formula)."""
    if isinstance(value, str) and value.startswith(_CSV_TRIGGERS):
        return "'" + value
    return value


def csv_safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column's cells through `for_csv_cell` (vectorised; other characters kept as they are:
    CSV quoting carries line breaks, and a spreadsheet shows control characters inert)."""
    import polars as pl

    text_columns = [name for name, dtype in frame.schema.items() if dtype in (pl.String, pl.Categorical)]
    if not text_columns:
        return frame
    triggers = "^[" + re.escape("".join(_CSV_TRIGGERS)) + "]"
    return frame.with_columns(
        pl.when(pl.col(name).cast(pl.String).str.contains(triggers))
        .then(pl.lit("'") + pl.col(name).cast(pl.String))
        .otherwise(pl.col(name).cast(pl.String))
        .alias(name)
        for name in text_columns
    )


def to_csv(frame: pl.DataFrame) -> str:
    """The CSV every export writes: header, then the frame's rows with `csv_safe_frame`'s cells."""
    return csv_safe_frame(frame).write_csv()


def redact_secrets(text: str, known: Iterable[str] = ()) -> str:
    """`text` with API keys, bearer tokens and the `known` secrets (exact values) replaced by `***`."""
    for secret in known:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRETS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text
