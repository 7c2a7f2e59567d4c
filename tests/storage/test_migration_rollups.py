"""Migrations 40, 41 and 50 build the rollups of a file an older quotascope filled: exactly what ingests
would have kept, and the reports read from them say what the raw rows said."""

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


def test_migrations_40_41_and_50_build_the_rollups_of_stored_rows(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    logs = ["deepseek.jsonl", "openai.jsonl", "anthropic.jsonl", "litellm_spendlogs.csv", "vllm.jsonl"]
    ingest_paths(db, [SAMPLES / name for name in logs], salt="s")
    catalog = priced_catalog(Path(BY_NAME["catalog_dir"].default), [])
    by = ("provider", "model", "team", "day")
    from_ingest = [r.to_json() for r in spend_report(db, catalog, UsageFilter(), by, "USD")]
    profile = read_usage_profile(db)
    # the file as an older quotascope left it: rows, no rollups, no record of migrations 40, 41 and 50
    with open_write(db) as con:
        for table in ("rollup_bands", "rollup_merged", *(r.name for r in rollups.ROLLUPS)):
            con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM schema_migrations WHERE number IN (40, 41, 50)")
    with open_write(db):  # opening for writing applies migrations 40, 41 and 50
        pass
    with duckdb.connect(str(db), read_only=True) as con:
        applied = "SELECT count(*) FROM schema_migrations WHERE number IN (40, 41, 50)"
        assert con.execute(applied).fetchall() == [(3,)]
        assert not _exact_profile_tables(con)
        assert con.execute("SELECT count(*) FROM rollup_spend").fetchall()[0][0] > 0
        assert {r.name: rollups.rederived_difference(con, r) for r in rollups.ROLLUPS} == {
            r.name: 0 for r in rollups.ROLLUPS
        }
    assert [r.to_json() for r in spend_report(db, catalog, UsageFilter(), by, "USD")] == from_ingest
    assert read_usage_profile(db) == profile
    assert any(row["cost"] for row in from_ingest)


def _exact_profile_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'rollup_profile_%' "
            "AND table_name NOT LIKE 'rollup_profile_bins_%'"
        ).fetchall()
    ]


def test_migration_50_replaces_the_exact_profile_rollups_by_bins(tmp_path: Path) -> None:
    """A file migrations 40 and 41 left (a profile rollup row per exact value, with and without team) gets
    the binned ones, rebuilt from its rows, and keeps its other rollups; the profile read from them is the
    one an ingest into a new file gives."""
    db = tmp_path / "q.duckdb"
    ingest_paths(db, [SAMPLES / name for name in ("openai.jsonl", "vllm.jsonl", "deepseek.jsonl")], salt="s")
    profile = read_usage_profile(db)
    exact = (*rollups.EXACT_PROFILES.values(), *rollups.EXACT_PROFILES_ALL_TEAMS.values())
    with open_write(db) as con:  # back to the file as migrations 40 and 41 left it
        for rollup in rollups.PROFILES.values():
            con.execute(f"DROP TABLE {rollup.name}")
            con.execute("DELETE FROM rollup_merged WHERE name = ?", [rollup.name])
        con.execute(rollups.create_sql(exact))
        con.execute("DELETE FROM schema_migrations WHERE number = 50")
        assert len(_exact_profile_tables(con)) == len(exact)
    with open_write(db):
        pass
    with duckdb.connect(str(db), read_only=True) as con:
        assert not _exact_profile_tables(con)
        assert {r.name: rollups.rederived_difference(con, r) for r in rollups.ROLLUPS} == {
            r.name: 0 for r in rollups.ROLLUPS
        }
        merged = {n for (n,) in con.execute("SELECT name FROM rollup_merged").fetchall()}
        assert merged == {r.name for r in rollups.ROLLUPS}
    assert read_usage_profile(db) == profile
    assert profile.requests > 0
