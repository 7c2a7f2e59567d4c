"""What `quotascope demo` needs to know before it touches a database: whose data is in it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from storage.db import open_read, turn_file


def demo_sources(db: Path) -> list[str]:
    """The paths of every ingested source; the demo rebuilds a database only if all are its own files."""
    with open_read(db) as con:
        try:
            rows = con.execute("SELECT DISTINCT path FROM sources").fetchall()
        except duckdb.CatalogException:
            return []  # no usage was ever ingested
    return [str(row[0]) for row in rows]


def remove_database(db: Path) -> None:
    for path in (db, db.with_name(db.name + ".wal"), turn_file(db)):
        path.unlink(missing_ok=True)
