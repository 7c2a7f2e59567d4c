"""Text written into generated SQL: the one rule for a string literal."""

from __future__ import annotations


def sql_string(text: str) -> str:
    """A string literal in DuckDB's SQL (a quote doubled), which the ClickHouse store renders through
    SQLGlot."""
    return "'" + text.replace("'", "''") + "'"
