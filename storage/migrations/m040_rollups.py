"""Rollups of the usage table (`storage.rollups`), built from every row already stored.

The SELECT each rollup runs is the one the write path runs on every batch (`storage.rollups.ROLLUPS`), so
a file an older quotascope wrote gets exactly the rollups an ingest would have kept. On a large file this
takes a while once (about a second per ten million rows and rollup on two cores).
"""

from __future__ import annotations

from storage.rollups import FIRST_ROLLUPS, SEED_BANDS, create_sql

NUMBER = 40
NAME = "rollups"

SQL = create_sql(FIRST_ROLLUPS, SEED_BANDS)
