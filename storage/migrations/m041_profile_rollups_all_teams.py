"""The profile rollups without team (`storage.rollups.EXACT_PROFILES_ALL_TEAMS`), built from every stored row
(migration 50 replaced them).

A reader who sees every team and filters by none (an admin's Overview, Planner, Usage pages, `report
profile`) reads these: a quarter of the rows of the per-team ones on a month of ten million requests.
"""

from __future__ import annotations

from storage.rollups import EXACT_PROFILES_ALL_TEAMS, create_sql

NUMBER = 41
NAME = "profile_rollups_all_teams"

SQL = create_sql(tuple(EXACT_PROFILES_ALL_TEAMS.values()))
