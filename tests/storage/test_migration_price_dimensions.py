"""Migration 5 (service tier, batch, 1-hour cache writes) keeps every stored row and what it costs."""

from __future__ import annotations

from pathlib import Path

from collectors.ingest import ingest_paths
from quotascope.context import priced_catalog
from quotascope.settings import BY_NAME
from storage.db import open_read, open_write
from storage.reports import UsageFilter, spend_report

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "usage"


def test_rows_and_costs_survive_the_migration(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    ingest_paths(
        db, [SAMPLES / "deepseek.jsonl", SAMPLES / "openai.jsonl", SAMPLES / "anthropic.jsonl"], salt="s"
    )
    # the database as it was before migration 5: without its columns or its record
    with open_write(db) as con:
        for column in ("service_tier", "batch", "cache_write_1h_tokens"):
            con.execute(f"ALTER TABLE usage DROP COLUMN {column}")
        con.execute("DELETE FROM schema_migrations WHERE number = 5")
        rows_before = con.execute("SELECT * FROM usage ORDER BY record_key").fetchall()
    catalog = priced_catalog(Path(BY_NAME["catalog_dir"].default), [])
    before = spend_report(db, catalog, UsageFilter(), ("provider", "model", "day"), "USD")
    with open_write(db):  # opening for writing applies migration 5
        pass
    with open_read(db) as con:
        assert con.execute("SELECT count(*) FROM schema_migrations WHERE number = 5").fetchall() == [(1,)]
        columns = [r[0] for r in con.execute("DESCRIBE usage").fetchall()]
        kept = con.execute(
            f"SELECT {', '.join(columns[: len(rows_before[0])])} FROM usage ORDER BY record_key"
        ).fetchall()
        added = con.execute(
            "SELECT DISTINCT service_tier, batch, cache_write_1h_tokens FROM usage"
        ).fetchall()
    assert kept == rows_before and added == [(None, False, 0)]
    after = spend_report(db, catalog, UsageFilter(), ("provider", "model", "day"), "USD")
    assert [(r.keys, r.cost, r.requests) for r in after] == [(r.keys, r.cost, r.requests) for r in before]
    assert any(r.cost is not None for r in after)
