"""How commands print: readable text by default, one JSON document with `--json`.

Everything printed passes `models.outside_text`: text through `for_terminal` (table cells one by one, so a
line break inside a value is shown as `\\n`; whole messages keeping their own line breaks), JSON through
`for_json_text`. Print with `say`/`emit`/`table`, never a bare `print` of outside text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

from models.money import Money, plain
from models.outside_text import for_json_text, for_terminal


def _default(value: Any) -> Any:
    if isinstance(value, Money):
        return value.to_json()
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(document: Any) -> str:
    return for_json_text(json.dumps(document, indent=2, default=_default, ensure_ascii=False))


def emit(as_json: bool, document: Any, render_text: Callable[[], str]) -> None:
    sys.stdout.write((dumps(document) if as_json else for_terminal(render_text(), keep_newlines=True)) + "\n")


def say(text: str, *, file: TextIO | None = None, flush: bool = False) -> None:
    """Print a message (its line breaks kept, every other control character shown escaped), in one write."""
    stream = file or sys.stdout
    stream.write(for_terminal(text, keep_newlines=True) + "\n")  # one write: threads never interleave
    if flush:
        stream.flush()


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align_right: Sequence[bool] | None = None
) -> str:
    """A plain-text table with a header rule; numbers right-aligned by default."""
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else for_terminal(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if align_right is None:
        align_right = [
            all(_numeric(row[i]) for row in cells[1:] if row[i]) and len(cells) > 1
            for i in range(len(headers))
        ]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(w) if right and n else c.ljust(w)
            for c, w, right in zip(row, widths, align_right, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    head = text.split(" ")[0].replace(",", "").replace("%", "")
    try:
        float(head)
    except ValueError:
        return False
    return True
