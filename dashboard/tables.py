"""Tables a reader takes in without a glossary: headers in words with their unit, and never an empty
(`None`) cell — a cell with nothing to show says why in words ("unpriced", "not queued").

Pure frame work (no `st.*`): a view declares its columns once and `in_words` gives the frame to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import polars as pl


@dataclass(frozen=True, slots=True)
class Column:
    """One shown column: `source` in the frame, shown as `label` (words and unit: "Cost (USD)")."""

    source: str
    label: str
    places: int | None = None  # numbers: decimals shown (None: text, or whole numbers as they are)
    missing: str = "—"  # what a cell with no value says


def in_words(frame: pl.DataFrame, columns: Sequence[Column]) -> pl.DataFrame:
    """`frame`'s `columns`, renamed to their labels. Decimal money becomes Float64 (rounded to `places`)
    so it sorts and aligns as numbers; a column holding any empty cell becomes text, each number written
    out with `places` decimals and thousands separators and each empty cell as the column's `missing`."""
    shown = []
    for column in columns:
        series = frame.get_column(column.source)
        if series.dtype == pl.Decimal or (column.places is not None and series.dtype.is_numeric()):
            series = series.cast(pl.Float64)
            if column.places is not None:
                series = series.round(column.places)
        if series.null_count():
            series = pl.Series(
                [column.missing if v is None else _text(v, column.places) for v in series.to_list()],
                dtype=pl.String,
            )
        shown.append(series.alias(column.label))
    return pl.DataFrame(shown) if shown else pl.DataFrame()


def _text(value: object, places: int | None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float | Decimal):
        return f"{value:,.{places}f}" if places is not None else f"{value:,}"
    return str(value)


def number_formats(columns: Sequence[Column]) -> dict[str, str]:
    """printf formats for the numeric columns that declare their decimals, keyed by label."""
    return {c.label: f"%.{c.places}f" for c in columns if c.places is not None}
