"""Migrations 40 and 41 build the rollups of a file an older quotascope filled: exactly what ingests would
have kept, and the reports read from them say what the raw rows said."""

from __future__ import annotations

from pathlib import Path

import duckdb

from collectors.ingest import ingest_paths
from quotascope.context import priced_catalog
from quotascope.settings import BY_NAME
from storage import rollups
from storage.db import open_write
from storage.reports import UsageFilter, read_usage_profile, spend_report

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "usage"


def test_migrations_40_and_41_build_the_rollups_of_stored_rows(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    logs = ["deepseek.jsonl", "openai.jsonl", "anthropic.jsonl", "litellm_spendlogs.csv", "vllm.jsonl"]
    ingest_paths(db, [SAMPLES / name for name in logs], salt="s")
    catalog = priced_catalog(Path(BY_NAME["catalog_dir"].default), [])
    by = ("provider", "model", "team", "day")
    from_ingest = [r.to_json() for r in spend_report(db, catalog, UsageFilter(), by, "USD")]
    profile = read_usage_profile(db)
    # the file as an older quotascope left it: rows, no rollups, no record of migrations 40 and 41
    with open_write(db) as con:
        for table in ("rollup_bands", "rollup_merged", *(r.name for r in rollups.ROLLUPS)):
            con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM schema_migrations WHERE number IN (40, 41)")
    with open_write(db):  # opening for writing applies migrations 40 and 41
        pass
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM schema_migrations WHERE number >= 40").fetchall() == [(2,)]
        assert con.execute("SELECT count(*) FROM rollup_spend").fetchall()[0][0] > 0
        assert {r.name: rollups.rederived_difference(con, r) for r in rollups.ROLLUPS} == {
            r.name: 0 for r in rollups.ROLLUPS
        }
    assert [r.to_json() for r in spend_report(db, catalog, UsageFilter(), by, "USD")] == from_ingest
    assert read_usage_profile(db) == profile
    assert any(row["cost"] for row in from_ingest)
