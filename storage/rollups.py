"""Rollups of the usage table: sums the reports and views read instead of the raw rows, kept in the same
transaction as the rows they summarise.

Each rollup is defined once, here, as one SELECT over a set of usage rows (`Rollup.select`): the
migration that creates it runs that SELECT over every stored row, an ingest batch runs it over the batch's
new rows and appends the result, and a ClickHouse store can use the same SELECT as a materialized view
(`Rollup.keys` / `Rollup.measures` say how partial rows combine: summed, min or max — a
SummingMergeTree's or AggregatingMergeTree's job there). A rollup may hold several partial rows per key
(one per batch that touched it); every read groups by its keys again, and a table that has grown by half
since it was last merged is merged in place (`append`), so it stays within 1.5 rows per key.

- `rollup_spend`: per half hour x provider x model x team x the pricing engine's classification keys
  (service tier, batch, long-context band) x billed currency: requests, every token count, billed cost.
  Half hours, not hours: DeepSeek's off-peak window opens at 16:30 UTC, and a rollup may never mix two
  prices (`models.spend.pricing_grain_minutes`; a catalog whose grain this does not divide is read from
  the raw rows).
- `rollup_spend_keys`: the same with endpoint, project and key (FOCUS exports, reports by those keys).
- `rollup_profile_bins_<metric>`: per month x provider x model x team x bin of a profile metric's
  per-request value (`models.profile_bins`: whole numbers below 100, then bins 0.5 % wide), the requests
  and the exact sum of their values: percentiles within 0.5 %, means exact, and a number of rows that does
  not grow with the data (migration 50; it replaced migrations 40 and 41's rows per exact value).

Every rollup row keeps the first and last request time it holds, so a period that does not end on a
bucket boundary is still answered from the rollup when the bucket's rows all lie inside it (`covering`);
the buckets a period really cuts are summed from their raw rows with the same SELECT.

Long-context bands: the band of a request depends on the catalog's thresholds, which a `catalog update`
can change. A rollup is banded by every threshold in `rollup_bands` (seeded with every one the shipped
catalog and the genai-prices data know) and stores the band's lower threshold, `input_floor`; any catalog
whose thresholds are all among them is answered exactly (a band of the catalog is a union of rollup bands).
A catalog with a threshold not among them is read from the raw rows until `ensure_bands` rebuilt the
rollups with it (`quotascope catalog update` does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from models.bands import tier_band_sql
from models.catalog import to_utc_naive
from models.profile_bins import bin_sql
from models.usage_record import SUMMED_COUNTS

if TYPE_CHECKING:  # storage.replay reads through this module
    from storage.replay import UsageFilter
    from storage.usage_reader import UsageReader

__all__ = [
    "EXACT_PROFILES",
    "EXACT_PROFILES_ALL_TEAMS",
    "EXACT_PROFILE_METRICS",
    "FIRST_CLICKHOUSE_ROLLUPS",
    "FIRST_ROLLUPS",
    "PROFILES",
    "PROFILE_METRICS",
    "ROLLUPS",
    "ROLLUP_MINUTES",
    "SEED_BANDS",
    "Coded",
    "Measure",
    "ProfileMetric",
    "Rollup",
    "append",
    "bands",
    "catalog_band_sql",
    "coded",
    "covering",
    "covers",
    "create_sql",
    "ensure_bands",
    "one_of",
    "read_bands",
    "rebuild",
    "recent_part",
    "refresh",
    "spend_rollup",
    "touched_buckets",
]

ROLLUP_MINUTES = 30  # the spend rollups' time bucket; every catalog grain so far is a multiple of it
_STEP = f"INTERVAL {ROLLUP_MINUTES} MINUTE"
HALF_HOUR = f"date_trunc('hour', ts) + (extract(minute FROM ts) // {ROLLUP_MINUTES}) * {_STEP}"
MONTH = "date_trunc('month', ts)"
# The long-context thresholds rollups are banded by when first built: every one in the shipped catalog
# (200,000) and in the genai-prices data of December 2026 (tier_bounds of the priced catalog).
SEED_BANDS = (32_000, 100_000, 128_000, 199_999, 200_000, 256_000, 272_000, 512_000, 524_288)

# Per-request values of the token profile (`storage.reports.read_usage_profile`). An aggregated row counts
# as `n_requests` requests of its average size; latency is measured per request only. Measured values are
# rounded (to 1 ms, 0.1 token/s).
EXACT_PROFILE_METRICS = {
    "input_tokens": "input_tokens / n_requests",
    "cached_input_tokens": "cached_input_tokens / n_requests",
    "output_tokens": "output_tokens / n_requests",
    "reasoning_tokens": "reasoning_tokens / n_requests",
    "ttft_ms": "CASE WHEN n_requests = 1 THEN round(ttft_ms) END",
    "tokens_per_s": (
        "CASE WHEN n_requests = 1 AND latency_ms > ttft_ms AND output_tokens > 0 "
        "THEN round(output_tokens / ((latency_ms - ttft_ms) / 1000.0), 1) END"
    ),
}


@dataclass(frozen=True, slots=True)
class ProfileMetric:
    """A profile metric: its per-request `value` (NULL where a row has none), and `amount`, a whole number
    whose sum over rows is `scale` times the sum of their requests' values (so a mean is exact)."""

    value: str
    amount: str
    scale: int = 1


def _tokens(column: str) -> ProfileMetric:
    return ProfileMetric(EXACT_PROFILE_METRICS[column], column)


PROFILE_METRICS = {
    **{c: _tokens(c) for c in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")},
    "ttft_ms": ProfileMetric(
        EXACT_PROFILE_METRICS["ttft_ms"], f"CAST({EXACT_PROFILE_METRICS['ttft_ms']} AS BIGINT)"
    ),
    "tokens_per_s": ProfileMetric(
        EXACT_PROFILE_METRICS["tokens_per_s"],
        f"CAST(round(10 * {EXACT_PROFILE_METRICS['tokens_per_s']}) AS BIGINT)",
        10,
    ),
}

Merge = Literal["sum", "min", "max"]


@dataclass(frozen=True, slots=True)
class Measure:
    """One summed (or min/max) column: `sql` aggregates usage rows, `merge` combines partial rows."""

    name: str
    sql: str
    merge: Merge


@dataclass(frozen=True, slots=True)
class Rollup:
    """A rollup: its keys (column, expression over a usage row) and measures, and its time bucket's width
    (`bucket` is always the first key). `where` keeps only some rows (a profile metric's non-null ones)."""

    name: str
    keys: tuple[tuple[str, str], ...]
    measures: tuple[Measure, ...]
    bucket: timedelta
    where: str = "TRUE"

    @property
    def bucket_sql(self) -> str:
        return dict(self.keys)["bucket"]

    def raw_rows_of(self, starts: Sequence[datetime], where: str = "TRUE") -> str:
        """The stored usage rows (that `where` selects) in the buckets starting at `starts`: a relation."""
        return (
            f"(SELECT * FROM usage WHERE ({_ranges(starts, self.bucket)}) AND ({where}) "
            f"AND {one_of(f'({self.bucket_sql})', starts)})"
        )

    def bucket_of(self, at: datetime) -> datetime:
        """The start of the bucket a request at `at` falls in (`bucket_sql`, in Python: no engine asked)."""
        if self.bucket_sql == MONTH:
            return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        assert self.bucket_sql == HALF_HOUR, self.bucket_sql
        return at.replace(minute=at.minute - at.minute % ROLLUP_MINUTES, second=0, microsecond=0)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Its columns in the order `select` gives them (and a stored rollup has them, on either engine)."""
        return (*self.key_names, *(m.name for m in self.measures))

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.keys)

    def select(self, rows: str, bounds: Sequence[int]) -> str:
        """The definition: this rollup's rows for the usage rows of the relation `rows` (bands: `bounds`)."""
        keys = ", ".join(
            f"{expression.format(band=input_floor_sql(bounds))} AS {name}" for name, expression in self.keys
        )
        measures = ", ".join(f"{m.sql} AS {m.name}" for m in self.measures)
        return f"SELECT {keys}, {measures} FROM {rows} WHERE {self.where} GROUP BY ALL"

    def merged(self, parts: str) -> str:
        """Partial rows of this rollup (the relation `parts`) combined into one row per key."""
        keys = ", ".join(self.key_names)
        measures = ", ".join(
            f"{m.merge}({m.name}){'::BIGINT' if m.sql.endswith('::BIGINT') else ''} AS {m.name}"
            for m in self.measures
        )
        return f"SELECT {keys}, {measures} FROM {parts} GROUP BY ALL"


def input_floor_sql(bounds: Sequence[int]) -> str:
    """The lower threshold of a row's long-context band (0 below the smallest): the pricing engine's band
    rule (`models.bands.tier_band_sql`) mapped to the threshold it starts above."""
    ordered = sorted({int(b) for b in bounds})
    floors = ", ".join(str(b) for b in [0, *ordered])
    return f"[{floors}][{tier_band_sql(ordered, 'input_tokens', 'n_requests')} + 1]"


def _sum(column: str) -> Measure:
    return Measure(column, f"sum({column})::BIGINT", "sum")


_TIMES = (Measure("first_ts", "min(ts)", "min"), Measure("last_ts", "max(ts)", "max"))
# the counts a spend report sums (`models.usage_record.SUMMED_COUNTS`; requests are the rows' `n_requests`),
# the billed cost and the times. Inserts and reads name their columns: a file whose rollups were created with
# these columns in another order (before this was the one list) reads and writes the same.
_SPEND_MEASURES = (
    *(Measure(c, "sum(n_requests)::BIGINT", "sum") if c == "requests" else _sum(c) for c in SUMMED_COUNTS),
    Measure("billed_cost", "sum(billed_cost)", "sum"),
    *_TIMES,
)
_PRICE_KEYS = (
    ("service_tier", "service_tier"),
    ("batch", "batch"),
    ("input_floor", "{band}"),
    ("billed_currency", "billed_currency"),
)
_HALF_HOUR = timedelta(minutes=ROLLUP_MINUTES)

SPEND = Rollup(
    "rollup_spend",
    (("bucket", HALF_HOUR), ("provider", "provider"), ("model", "model"), ("team", "team"), *_PRICE_KEYS),
    _SPEND_MEASURES,
    _HALF_HOUR,
)
SPEND_KEYS = Rollup(
    "rollup_spend_keys",
    (
        ("bucket", HALF_HOUR),
        ("provider", "provider"),
        ("model", "model"),
        ("team", "team"),
        ("endpoint", "endpoint"),
        ("project", "project"),
        ("key_id", "key_id"),
        *_PRICE_KEYS,
    ),
    _SPEND_MEASURES,
    _HALF_HOUR,
)


def _exact_profile(name: str, expression: str, keys: tuple[str, ...]) -> Rollup:
    return Rollup(
        name,
        (("bucket", MONTH), *((k, k) for k in keys), ("value", expression)),
        (Measure("weight", "sum(n_requests)::BIGINT", "sum"), *_TIMES),
        timedelta(days=31),  # an upper bound: months differ
        where=f"({expression}) IS NOT NULL",
    )


# migrations 40 and 41's profile rollups, a row per exact value (dropped by migration 50): their definitions
# as those migrations ran them
EXACT_PROFILES = {
    metric: _exact_profile(f"rollup_profile_{metric}", expression, ("provider", "model", "team"))
    for metric, expression in EXACT_PROFILE_METRICS.items()
}
EXACT_PROFILES_ALL_TEAMS = {
    metric: _exact_profile(f"rollup_profile_all_{metric}", expression, ("provider", "model"))
    for metric, expression in EXACT_PROFILE_METRICS.items()
}
FIRST_ROLLUPS = (SPEND, SPEND_KEYS, *EXACT_PROFILES.values())  # migration 40's
# the ClickHouse store's migration 2 and 3's (its migration 10 replaced the profile ones)
FIRST_CLICKHOUSE_ROLLUPS = (*FIRST_ROLLUPS, *EXACT_PROFILES_ALL_TEAMS.values())


def _binned_profile(metric: str) -> Rollup:
    profile = PROFILE_METRICS[metric]
    return Rollup(
        f"rollup_profile_bins_{metric}",
        (
            ("bucket", MONTH),
            ("provider", "provider"),
            ("model", "model"),
            ("team", "team"),
            ("bin", bin_sql(profile.value)),
        ),
        (
            Measure("weight", "sum(n_requests)::BIGINT", "sum"),
            Measure("total", f"sum({profile.amount})::BIGINT", "sum"),
            *_TIMES,
        ),
        timedelta(days=31),  # an upper bound: months differ
        where=f"({profile.value}) IS NOT NULL",
    )


# the requests and their exact sum per bin of each profile metric (`models.profile_bins`), per month x
# provider x model x team: bounded whatever the data's size (migration 50). A reader of every team groups
# them without team: a few thousand rows per metric and month.
PROFILES = {metric: _binned_profile(metric) for metric in PROFILE_METRICS}
# a batch's rows of the rollup named first are summed from its rows of the second (`append`)
_SUMMED_FROM = {SPEND.name: SPEND_KEYS}
_FINER = {r.name for r in _SUMMED_FROM.values()}
ROLLUPS: tuple[Rollup, ...] = (SPEND, SPEND_KEYS, *PROFILES.values())
_APPEND_ORDER = sorted(
    ROLLUPS, key=lambda r: r.name not in _FINER
)  # a finer rollup before those summed from it
# a rollup is merged in place when its row count passes this share above its last merged count
MERGE_GROWTH = 0.5
MERGE_MIN_ROWS = 100_000
# from this many rows a batch sums the coarser rollups from its finer ones (`append`)
SUMMED_FROM_ROWS = 20_000


def _literal(at: datetime) -> str:
    return f"TIMESTAMP '{at:%Y-%m-%d %H:%M:%S.%f}'"


def one_of(bucket: str, starts: Sequence[datetime]) -> str:
    """`bucket` is one of `starts` (a period's ends: two at most), as equalities rather than `IN`, which
    ClickHouse refuses between a month bucket (a Date32 there) and timestamps."""
    return "(" + " OR ".join(f"{bucket} = {_literal(s)}" for s in starts) + ")"


def _ranges(starts: Sequence[datetime], width: timedelta) -> str:
    """`ts` near any of the buckets (literals, so DuckDB skips the row groups outside them)."""
    return " OR ".join(f"ts BETWEEN {_literal(s)} AND {_literal(s + width)}" for s in starts)


# ------------------------------------------------------------------------------------------ building


def _in_time_order(select: str) -> str:
    """Rows stored in bucket order, so a read of a period skips the row groups outside it (min/max)."""
    return f"SELECT * FROM ({select}) ORDER BY bucket"


def create_sql(made: Sequence[Rollup], bounds: Sequence[int] | None = None) -> str:
    """Statements creating the rollups `made`, filled from the stored usage rows, and (given `bounds`) the
    bands table first. For a migration: the definitions it creates must not change after it shipped."""
    parts = []
    if bounds is not None:
        seeds = ", ".join(f"({int(b)})" for b in sorted(set(bounds)))
        parts += [
            "CREATE TABLE rollup_bands (bound BIGINT NOT NULL)",
            f"INSERT INTO rollup_bands VALUES {seeds}",
            "CREATE TABLE rollup_merged (name VARCHAR NOT NULL, rows BIGINT NOT NULL)",
        ]
    for rollup in made:
        select = rollup.select("usage", SEED_BANDS if bounds is None else bounds)
        parts.append(f"CREATE TABLE {rollup.name} AS {_in_time_order(select)}")
        parts.append(f"INSERT INTO rollup_merged SELECT '{rollup.name}', count(*) FROM {rollup.name}")
    return ";\n".join(parts) + ";\n"


def bands(con: duckdb.DuckDBPyConnection) -> tuple[int, ...]:
    """The long-context thresholds the stored rollups are banded by."""
    return tuple(int(r[0]) for r in con.execute("SELECT bound FROM rollup_bands ORDER BY bound").fetchall())


# the rollups' keys that are a usage column as it is (not the bucket, a band or a bin): those of text
# may reach `append` as codes (`coded`)
_PLAIN_KEYS = tuple(
    dict.fromkeys(
        name for r in ROLLUPS for name, expression in r.keys if name == expression and name != "bucket"
    )
)
# a text column is coded when it has at most this many distinct values (else its values, as a list in each
# statement, would cost more than they save)
CODED_MAX_VALUES = 4096


@dataclass(frozen=True)
class Coded:
    """A batch's usage rows for `append`, each text key column in `values` as codes: the place of its value
    in `values[column]` (from 0; NULL stays NULL).

    Grouping by a small integer instead of a string is most of what a rollup statement costs to save
    (the six profile rollups and the spend rollup group every row by provider, model and team:
    benchmarks/write_path.py); each statement's result gets the texts back from the lists, once per row
    of the result."""

    table: pa.Table
    values: dict[str, list[str]] = field(default_factory=dict)


def coded(table: pa.Table) -> Coded:
    """`table` with its text key columns coded (`Coded`): those of `_PLAIN_KEYS` it has, with at most
    `CODED_MAX_VALUES` distinct values and at least one not NULL."""
    values: dict[str, list[str]] = {}
    for name in _PLAIN_KEYS:
        if name not in table.column_names:
            continue
        column = table.column(name)
        if column.null_count == len(column):  # nothing to code (and nothing to spend on it)
            continue
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        encoded = pc.dictionary_encode(column.combine_chunks())
        if not 0 < len(encoded.dictionary) <= CODED_MAX_VALUES:
            continue
        table = table.set_column(table.column_names.index(name), name, encoded.indices)
        values[name] = encoded.dictionary.to_pylist()
    return Coded(table, values)


def _decoded(rollup: Rollup, select: str, values: Mapping[str, list[str]]) -> tuple[str, dict[str, Any]]:
    """`select` (rollup's rows of coded rows) with the texts of its coded keys back, and its parameters."""
    names = [k for k in rollup.key_names if k in values and k in _PLAIN_KEYS]
    if not names:
        return select, {}
    texts = ", ".join(f"($codes_{k})[{k} + 1] AS {k}" for k in names)
    return f"SELECT * REPLACE ({texts}) FROM ({select})", {f"codes_{k}": values[k] for k in names}


def append(con: duckdb.DuckDBPyConnection, rows: str, values: Mapping[str, list[str]] | None = None) -> None:
    """Add the usage rows of the relation `rows` (just inserted, in this transaction) to every rollup; the
    text columns named in `values` hold codes into those lists (`coded`).

    In a batch of `SUMMED_FROM_ROWS` rows or more, a rollup of `_SUMMED_FROM` is summed from the batch's
    rows of a finer rollup rather than from the rows again (the same sums: it only drops keys; a third of
    the rollups' cost per large batch), or, when every row of the batch has the same value of each key it
    drops (one team, say), is those rows without the keys. A smaller batch's cost is its statements, not
    its rows: each rollup is then one `INSERT ... SELECT` over the rows. A profile metric no row of the
    batch has a value of (time to first token in a log without timings) costs no statement. What this
    needs to know of the batch and of the rollups is read in one statement (`_BatchState`), and each
    insert says how many rows it added."""
    values = values or {}
    state = _append_state(con, rows)
    summed = state.size >= SUMMED_FROM_ROWS
    made: set[str] = set()
    for rollup in _APPEND_ORDER:
        if not state.selected[rollup.where]:
            continue
        finer = _SUMMED_FROM.get(rollup.name) if summed else None
        if finer is not None:  # from the finer rollup's rows of the batch (texts, not codes)
            dropped = _dropped(finer, rollup)
            parts = _delta(finer)
            if all(state.constant[k] for k in dropped):
                inserted = con.execute(
                    f"INSERT INTO {rollup.name} BY NAME SELECT * EXCLUDE ({', '.join(dropped)}) FROM {parts}"
                )
            else:
                inserted = con.execute(f"INSERT INTO {rollup.name} BY NAME {rollup.merged(parts)}")
        elif summed and rollup.name in _FINER:
            select, params = _decoded(rollup, rollup.select(rows, state.bounds), values)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_delta(rollup)} AS {select}", params)
            made.add(_delta(rollup))
            inserted = con.execute(f"INSERT INTO {rollup.name} BY NAME SELECT * FROM {_delta(rollup)}")
        else:
            select, params = _decoded(rollup, rollup.select(rows, state.bounds), values)
            inserted = con.execute(f"INSERT INTO {rollup.name} BY NAME {select}", params)
        added = int(inserted.fetchall()[0][0])
        if _grown(state.counts[rollup.name] + added, state.merged.get(rollup.name, 0)):
            _merge(con, rollup)
    for name in made:
        con.execute(f"DROP TABLE {name}")


def _dropped(finer: Rollup, coarse: Rollup) -> list[str]:
    return [k for k in finer.key_names if k not in coarse.key_names]


@dataclass(frozen=True, slots=True)
class _BatchState:
    """What `append` reads before it writes: the bands, the batch's size, whether any of its rows passes
    each rollup's `where`, whether each key a coarser rollup drops has one value in the whole batch, and
    each rollup's row count now and when last merged."""

    bounds: tuple[int, ...]
    size: int
    selected: dict[str, bool]
    constant: dict[str, bool]
    counts: dict[str, int]
    merged: dict[str, int]


_WHERES = tuple(dict.fromkeys(r.where for r in ROLLUPS))
_BY_NAME = {r.name: r for r in ROLLUPS}
# the keys a coarser rollup drops from the finer one it is summed from (team; endpoint, project, key)
_DROPPED = tuple(sorted({k for name, fine in _SUMMED_FROM.items() for k in _dropped(fine, _BY_NAME[name])}))


def _append_state(con: duckdb.DuckDBPyConnection, rows: str) -> _BatchState:
    counts = ", ".join(f"(SELECT count(*) FROM {r.name})" for r in ROLLUPS)
    selected = ", ".join(f"count(*) FILTER (WHERE {where})" for where in _WHERES)
    # one value (or none) in every row: the smallest equals the largest and no row lacks it while others
    # have it
    constant = ", ".join(
        f"min({k}) IS NOT DISTINCT FROM max({k}) AND count({k}) IN (0, count(*))" for k in _DROPPED
    )
    found = con.execute(
        "SELECT (SELECT list(bound ORDER BY bound) FROM rollup_bands), "
        f"(SELECT [count(*), {selected}] FROM {rows}), (SELECT [{constant}] FROM {rows}), "
        f"(SELECT list(struct_pack(name, rows)) FROM rollup_merged), [{counts}]"
    ).fetchall()[0]
    size, *passing = (int(n) for n in found[1])
    return _BatchState(
        bounds=tuple(int(b) for b in found[0] or ()),
        size=size,
        selected={where: n > 0 for where, n in zip(_WHERES, passing, strict=True)},
        constant={k: bool(c) for k, c in zip(_DROPPED, found[2], strict=True)},
        counts={r.name: int(n) for r, n in zip(ROLLUPS, found[4], strict=True)},
        merged={str(m["name"]): int(m["rows"]) for m in found[3] or ()},
    )


def _delta(rollup: Rollup) -> str:
    return f"{rollup.name}_batch"


def _grown(rows: int, merged: int) -> bool:
    """Whether a rollup of `rows` partial rows, `merged` when last merged, is due to be merged in place."""
    return rows > max(merged * (1 + MERGE_GROWTH), merged + MERGE_MIN_ROWS)


def _merge(con: duckdb.DuckDBPyConnection, rollup: Rollup) -> None:
    """Combine `rollup`'s partial rows into one row per key, in place, and note its merged row count."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE rollup_merging AS {_in_time_order(rollup.merged(rollup.name))}"
    )
    con.execute(f"DELETE FROM {rollup.name}")
    con.execute(f"INSERT INTO {rollup.name} BY NAME SELECT * FROM rollup_merging")
    con.execute("DROP TABLE rollup_merging")
    rows = int(con.execute(f"SELECT count(*) FROM {rollup.name}").fetchall()[0][0])
    con.execute("DELETE FROM rollup_merged WHERE name = ?", [rollup.name])
    con.execute("INSERT INTO rollup_merged VALUES (?, ?)", [rollup.name, rows])


Touched = dict[str, list[datetime]]


def touched_buckets(con: duckdb.DuckDBPyConnection, rows: str) -> Touched:
    """Per rollup, the buckets the usage rows of the relation `rows` fall in (before they are deleted)."""
    return {
        rollup.name: [
            r[0] for r in con.execute(f"SELECT DISTINCT {rollup.bucket_sql} FROM {rows}").fetchall()
        ]
        for rollup in ROLLUPS
    }


def refresh(con: duckdb.DuckDBPyConnection, touched: Touched) -> None:
    """Recompute the `touched` buckets of every rollup from the stored usage rows (after rows were deleted
    or replaced, in this transaction): the way back for anything but an append."""
    bounds = bands(con)
    for rollup in ROLLUPS:
        starts = touched.get(rollup.name) or []
        if not starts:
            continue
        con.execute(f"DELETE FROM {rollup.name} WHERE bucket IN (SELECT unnest($b))", {"b": starts})
        con.execute(f"INSERT INTO {rollup.name} BY NAME {rollup.select(rollup.raw_rows_of(starts), bounds)}")


def rebuild(con: duckdb.DuckDBPyConnection, bounds: Sequence[int] | None = None) -> None:
    """Every rollup recomputed from every stored row (after a bulk load, or to band by new `bounds`)."""
    if bounds is not None:
        con.execute("DELETE FROM rollup_bands")
        con.execute("INSERT INTO rollup_bands SELECT unnest($b)", {"b": sorted({int(b) for b in bounds})})
    current = bands(con)
    con.execute("DELETE FROM rollup_merged")
    for rollup in ROLLUPS:
        con.execute(f"DELETE FROM {rollup.name}")
        con.execute(f"INSERT INTO {rollup.name} BY NAME {_in_time_order(rollup.select('usage', current))}")
        con.execute(f"INSERT INTO rollup_merged SELECT '{rollup.name}', count(*) FROM {rollup.name}")


def ensure_bands(con: duckdb.DuckDBPyConnection, bounds: Sequence[int]) -> bool:
    """Band the rollups by `bounds` too (a catalog's long-context thresholds), rebuilding them when one is
    new; returns whether they were rebuilt. Until then, reads priced with that catalog use the raw rows."""
    known = bands(con)
    if set(bounds) <= set(known):
        return False
    rebuild(con, [*known, *bounds])
    return True


def rederived_difference(con: duckdb.DuckDBPyConnection, rollup: Rollup) -> int:
    """How many keys of `rollup` differ from its definition run over every stored row now (0: it holds
    exactly what the raw rows say). For tests and `quotascope` checks."""
    stored = rollup.merged(rollup.name)
    fresh = rollup.select("usage", bands(con))
    sql = (
        f"SELECT count(*) FROM (({stored}) EXCEPT ALL ({fresh})) "
        f"UNION ALL SELECT count(*) FROM (({fresh}) EXCEPT ALL ({stored}))"
    )
    return sum(int(r[0]) for r in con.execute(sql).fetchall())


# ------------------------------------------------------------------------------------------- reading


def covering(usage: UsageReader, rollup: Rollup, selection: UsageFilter) -> tuple[str, list[Any]]:
    """A relation in `rollup`'s shape (partial rows, to be grouped again) holding exactly the usage rows
    `selection` selects, and its parameters, on either engine (`usage`: the DuckDB file's rollup tables, or
    a ClickHouse store's materialized views into AggregatingMergeTrees, whose unmerged parts are partial
    rows alike).

    A rollup row whose first and last request lie inside the period is taken whole, one wholly outside is
    left out; a bucket with a row the period cuts is summed again from its raw rows, with the rollup's own
    SELECT (usually none: periods end on whole days, or after the last request)."""
    attributes, params = selection.attribute_where()
    since = to_utc_naive(selection.since) if selection.since is not None else None
    until = to_utc_naive(selection.until) if selection.until is not None else None
    stored = _stored(usage, rollup)
    rows = f"SELECT {', '.join(rollup.column_names)} FROM {stored} WHERE {attributes}"
    if since is None and until is None:
        return f"({rows})", params
    # only the buckets the period's ends fall in can hold a row it cuts
    ends = [rollup.bucket_of(at) for at in (since, until) if at is not None]
    inside = " AND ".join(
        ([f"first_ts >= {_literal(since)} AND bucket >= {_literal(ends[0])}"] if since is not None else [])
        + ([f"last_ts < {_literal(until)} AND bucket <= {_literal(ends[-1])}"] if until is not None else [])
    )
    overlapping = " AND ".join(
        ([f"last_ts >= {_literal(since)}"] if since is not None else [])
        + ([f"first_ts < {_literal(until)}"] if until is not None else [])
    )
    cut = [
        r[0]
        for r in usage.rows(
            f"SELECT DISTINCT bucket FROM {stored} WHERE {one_of('bucket', ends)} "
            f"AND {attributes} AND {overlapping} AND NOT ({inside})",
            params,
        )
    ]
    if not cut:
        return f"({rows} AND {inside})", params
    where, raw_params = selection.where()
    raw = rollup.select(rollup.raw_rows_of(cut, where), read_bands(usage))
    return (
        f"({rows} AND {inside} AND NOT {one_of('bucket', cut)} UNION ALL {raw})",
        params + raw_params,
    )


def _stored(usage: UsageReader, rollup: Rollup) -> str:
    """`rollup`'s stored partial rows: the DuckDB file's table; on a ClickHouse store, less the copies of a
    request two writers stored at once (`storage.settle.corrected`)."""
    if usage.duckdb is not None:
        return rollup.name
    from storage.settle import corrected

    return corrected(usage, rollup, SEED_BANDS)


def read_bands(usage: UsageReader) -> tuple[int, ...]:
    """The long-context thresholds a store's rollups are banded by: the DuckDB file's `rollup_bands`; a
    ClickHouse store's views are banded by `SEED_BANDS` (its migration 2)."""
    return bands(usage.duckdb) if usage.duckdb is not None else SEED_BANDS


def spend_rollup(selection: UsageFilter, keys: Sequence[str] = ()) -> Rollup:
    """The smaller spend rollup, unless the report `keys` or the selection need project, key or endpoint."""
    fine = any(k in ("project", "key", "endpoint") for k in keys) or selection.project is not None
    return SPEND_KEYS if fine else SPEND


def covers(bounds: Sequence[int], grain_minutes: int, usage: UsageReader) -> bool:
    """Whether the spend rollups answer a catalog with these long-context `bounds` and pricing grain
    exactly: every bound is one they are banded by, and their half hours never straddle a price change."""
    return grain_minutes % ROLLUP_MINUTES == 0 and set(bounds) <= set(read_bands(usage))


def catalog_band_sql(bounds: Sequence[int]) -> str:
    """A rollup row's band under a catalog's `bounds` (all among the rollup's): the engine's rule applied
    to `input_floor + 1`, a per-request input inside the row's band."""
    return tier_band_sql(bounds, "input_floor + 1", "1")


def recent_part(usage: UsageReader, selection: UsageFilter, requests: int) -> UsageFilter:
    """The latest part of `selection` holding at most `requests` requests, in whole half hours (at least
    the last one), counted from the spend rollup; `selection` itself when it holds no more."""
    source, params = covering(usage, spend_rollup(selection), selection)
    start, last, total = usage.rows(
        f"""SELECT min(bucket) FILTER (WHERE later <= ?), max(bucket), max(later) FROM (
                SELECT bucket, sum(sum(requests)) OVER (ORDER BY bucket DESC) AS later
                FROM {source} GROUP BY bucket)""",
        [requests, *params],
    )[0]
    if total is None or total <= requests:
        return selection
    since = start if start is not None else last
    if selection.since is not None and since <= to_utc_naive(selection.since):
        return selection
    return replace(selection, since=since)
