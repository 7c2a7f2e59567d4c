"""The profile rollups counted per bin of each value (`storage.rollups.PROFILES`, `models.profile_bins`),
built from every stored row, in place of migrations 40 and 41's rows per exact value.

Per exact value, a profile rollup grew with the data (2.6M input sizes in a month of 100M requests against
1.2M at 10M) and cost most of an ingest batch's rollup time; per bin it holds at most about a thousand rows
per metric, month, provider, model and team, with the exact sum of each bin's values beside its requests.
The per-team rollups now serve readers of every team too (grouped without team), so the `_all` ones go.
"""

from __future__ import annotations

from storage.rollups import EXACT_PROFILES, EXACT_PROFILES_ALL_TEAMS, PROFILES, create_sql

NUMBER = 50
NAME = "profile_bins"

_OLD = [r.name for r in (*EXACT_PROFILES.values(), *EXACT_PROFILES_ALL_TEAMS.values())]

SQL = (
    "".join(f"DROP TABLE IF EXISTS {name};\n" for name in _OLD)
    + "DELETE FROM rollup_merged WHERE name IN ("
    + ", ".join(f"'{name}'" for name in _OLD)
    + ");\n"
    + create_sql(tuple(PROFILES.values()))
)
