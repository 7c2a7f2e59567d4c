"""The profile rollups without team (`storage.rollups.PROFILES_ALL_TEAMS`), built from every stored row.

A reader who sees every team and filters by none (an admin's Overview, Planner, Usage pages, `report
profile`) reads these: a quarter of the rows of the per-team ones on a month of ten million requests.
"""

from __future__ import annotations

from storage.rollups import PROFILES_ALL_TEAMS, create_sql

NUMBER = 41
NAME = "profile_rollups_all_teams"

SQL = create_sql(tuple(PROFILES_ALL_TEAMS.values()))
