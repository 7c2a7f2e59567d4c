"""ClickHouse's tables for usage and their numbered migrations (a small list of its own, as in `migrations`).

The usage table is the canonical usage record (DESIGN.md, `storage/migrations/m001_core.py` and m005) in the
form ClickHouse's users expect:

- `ReplacingMergeTree`: a record stored twice (an insert retried after its answer was lost, two ingests
  racing) is one row after a merge, and one row before it to every read, which reads `FINAL`;
- `ORDER BY (provider, model, team, toStartOfHour(ts), record_key, ts)`: the filters every report and view
  applies first, then time; a record's identity (key and time) ends the key, so only copies of one record
  replace each other;
- `PARTITION BY toYYYYMM(ts)`: a month is dropped or moved as one partition, and a period's query reads
  only its months;
- `non_replicated_deduplication_window`: a single server drops a repeated insert block by its
  `insert_deduplication_token` as replicated tables do by default.

On a cluster (`?cluster=NAME` on the store URL) every statement runs `ON CLUSTER NAME`, the rows live in
`usage_local` (`ReplicatedReplacingMergeTree`, one per shard, replicated in it) and `usage` is a `Distributed`
table over them, sharded by `cityHash64(record_key)`: every copy of a record lands on one shard, where
`FINAL` can see them together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.rollups import Rollup

__all__ = ["MIGRATIONS", "USAGE_NAMES", "Layout", "Migration", "migrations_table", "usage_tables"]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the tables go: a database, and the cluster they are spread over (None: one server)."""

    database: str
    cluster: str | None = None

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def qualified(self, table: str) -> str:
        """The table queries and inserts name (the Distributed one on a cluster)."""
        return f"{self.database}.{table}"

    def local(self, table: str) -> str:
        """The table that stores the rows: `<table>_local` on a cluster, the table itself otherwise."""
        return f"{table}_local" if self.cluster else table

    def engine(self, family: str, table: str) -> str:
        """A MergeTree family's engine: replicated on a cluster, with the usual path and replica macros."""
        if not self.cluster:
            return f"{family}MergeTree"
        path = f"/clickhouse/tables/{{shard}}/{self.database}/{table}"
        return f"Replicated{family}MergeTree('{path}', '{{replica}}')"

    def tables(self, name: str, columns: str, storage: str, shard_by: str) -> list[str]:
        """CREATE statements for one logical table: itself on a server; the local replicated table and a
        Distributed table over it on a cluster."""
        local = self.local(name)
        create = f"CREATE TABLE IF NOT EXISTS {self.qualified(local)}{self.on_cluster}"
        statements = [f"{create}\n(\n{columns}\n)\n{storage}"]
        if self.cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.qualified(name)}{self.on_cluster} "
                f"AS {self.qualified(local)}\n"
                f"ENGINE = Distributed({self.cluster}, {self.database}, {local}, {shard_by})"
            )
        return statements


USAGE_COLUMNS = """\
    source_id             Int64,
    record_key            String,
    key_hash              Nullable(UInt64),
    line_no               Nullable(Int64),
    ts                    DateTime64(6, 'UTC'),
    provider              LowCardinality(Nullable(String)),
    model                 LowCardinality(String),
    endpoint              LowCardinality(Nullable(String)),
    team                  LowCardinality(Nullable(String)),
    project               LowCardinality(Nullable(String)),
    user_hash             Nullable(String),
    key_id                Nullable(String),
    n_requests            Int64 DEFAULT 1,
    input_tokens          Int64,
    cached_input_tokens   Int64 DEFAULT 0,
    cache_write_tokens    Int64 DEFAULT 0,
    output_tokens         Int64,
    reasoning_tokens      Int64 DEFAULT 0,
    ttft_ms               Nullable(Float64),
    latency_ms            Nullable(Float64),
    status                LowCardinality(Nullable(String)),
    billed_cost           Nullable(Decimal(20, 10)),
    billed_currency       LowCardinality(Nullable(String)),
    tags                  Map(String, String),
    service_tier          LowCardinality(Nullable(String)),
    batch                 Nullable(Bool) DEFAULT false,
    cache_write_1h_tokens Int64 DEFAULT 0,
    inserted_at           DateTime64(6, 'UTC') DEFAULT now64(6)"""
USAGE_NAMES = tuple(line.split()[0] for line in USAGE_COLUMNS.splitlines())


def usage_tables(layout: Layout) -> list[str]:
    storage = (
        f"ENGINE = {layout.engine('Replacing', layout.local('usage'))}\n"
        "PARTITION BY toYYYYMM(ts)\n"
        "ORDER BY (provider, model, team, toStartOfHour(ts), record_key, ts)\n"
        "SETTINGS allow_nullable_key = 1, non_replicated_deduplication_window = 1000"
    )
    return layout.tables("usage", USAGE_COLUMNS, storage, "cityHash64(record_key)")


def migrations_table(layout: Layout) -> list[str]:
    """The table recording which migrations ran (one row per number; a repeat replaces itself)."""
    columns = (
        "    number     UInt32,\n    name       String,\n    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)"
    )
    storage = f"ENGINE = {layout.engine('Replacing', layout.local('schema_migrations'))}\nORDER BY number"
    return layout.tables("schema_migrations", columns, storage, "number")


# ------------------------------------------------------------------------------------------ rollups

Describe = Callable[[str], list[tuple[str, str]]]  # a query's (column, ClickHouse type), from the server
# the insert tokens a rollup keeps on one server: a retried insert is dropped there too (migration 3)
DEDUP_WINDOW = "non_replicated_deduplication_window = 1000"


def rollup_tables(layout: Layout, describe: Describe, render: Callable[[str], str]) -> list[str]:
    """Every rollup of `storage.rollups` (defined once there, as one SELECT over usage rows) as a
    ClickHouse materialized view into an `AggregatingMergeTree`: the keys are its sorting key, each measure a
    `SimpleAggregateFunction` of the rollup's own merge (sum, min, max), so the parts an insert adds are
    combined by ClickHouse's merges as the DuckDB file combines its partial rows. The column types are
    ClickHouse's own for the SELECT (`describe`), `render` turns the SELECT into ClickHouse's SQL. Rows
    stored before the view existed are summed in once (`INSERT ... SELECT` over `usage FINAL`).

    Bands: by the long-context thresholds the rollups are seeded with (`rollups.SEED_BANDS`). The rollups
    migration 2 made (`rollups.FIRST_CLICKHOUSE_ROLLUPS`: migration 10 replaced the profile ones)."""
    from storage import rollups

    statements: list[str] = []
    for rollup in rollups.FIRST_CLICKHOUSE_ROLLUPS:
        statements += _rollup_view(layout, describe, render, rollup, f"{layout.qualified('usage')} FINAL")
    return statements


def _rollup_view(
    layout: Layout, describe: Describe, render: Callable[[str], str], rollup: Rollup, stored: str
) -> list[str]:
    """`rollup`'s table and materialized view, and the insert summing the rows `stored` (a relation of
    usage's columns in ClickHouse's SQL) into it once."""
    from storage import rollups

    over_rows = render(rollup.select("usage", rollups.SEED_BANDS))
    types = dict(describe(over_rows))  # the local table's types are the same
    select = render(rollup.select(layout.local("usage"), rollups.SEED_BANDS))
    merges = {m.name: m.merge for m in rollup.measures}
    columns = ",\n".join(
        f"    {name} SimpleAggregateFunction({merges[name]}, {kind})"
        if name in merges
        else f"    {name} {kind}"
        for name, kind in types.items()
    )
    local = layout.local(rollup.name)
    storage = (
        f"ENGINE = {layout.engine('Aggregating', local)}\n"
        "PARTITION BY toYYYYMM(bucket)\n"
        f"ORDER BY ({', '.join(rollup.key_names)})\n"
        "SETTINGS allow_nullable_key = 1"
    )
    return [
        *layout.tables(rollup.name, columns, storage, "rand()"),
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {layout.qualified(rollup.name + '_mv')}"
        f"{layout.on_cluster} TO {layout.qualified(local)} AS\n{select}",
        f"INSERT INTO {layout.qualified(rollup.name)} "
        + over_rows.replace(f"FROM {layout.qualified('usage')}", f"FROM {stored}", 1),
    ]


def profile_bins(layout: Layout, describe: Describe, render: Callable[[str], str]) -> list[str]:
    """The profile rollups counted per bin (migration 10; DuckDB's migration 50): migration 2's rollups per
    exact value (and without team) dropped, view first, and `rollups.PROFILES` made as migration 2 made its
    views, with migration 3's token window, summing in the rows stored before as the views would have:
    `usage FINAL` and the surplus copies (`storage.settle`: every rollup read subtracts those)."""
    from storage import rollups

    statements = []
    for old in (*rollups.EXACT_PROFILES.values(), *rollups.EXACT_PROFILES_ALL_TEAMS.values()):
        statements.append(f"DROP VIEW IF EXISTS {layout.qualified(old.name + '_mv')}{layout.on_cluster}")
        if layout.cluster:
            statements.append(f"DROP TABLE IF EXISTS {layout.qualified(old.name)}{layout.on_cluster}")
        statements.append(
            f"DROP TABLE IF EXISTS {layout.qualified(layout.local(old.name))}{layout.on_cluster}"
        )
    columns = ", ".join(USAGE_NAMES)
    stored = (
        f"(SELECT {columns} FROM {layout.qualified('usage')} FINAL "
        f"UNION ALL SELECT {columns} FROM {layout.qualified('usage_surplus')})"
    )
    for rollup in rollups.PROFILES.values():
        statements += _rollup_view(layout, describe, render, rollup, stored)
        if not layout.cluster:
            statements.append(f"ALTER TABLE {layout.qualified(rollup.name)} MODIFY SETTING {DEDUP_WINDOW}")
    return statements


@dataclass(frozen=True, slots=True)
class Migration:
    """A numbered schema change: its statements for a layout (`describe` and `render` ask the server the
    types of a query and render DuckDB's SQL for it, for tables generated from a definition)."""

    number: int
    name: str
    statements: Callable[[Layout, Describe, Callable[[str], str]], list[str]]


def exact_rollups(layout: Layout, _describe: Describe, _render: Callable[[str], str]) -> list[str]:
    """Rollups that count every request once (migration 3). A materialized view sees every block inserted
    into usage, even one the usage table drops or a `FINAL` read collapses, so:

    - a retried insert (same `insert_deduplication_token`) dropped by usage must be dropped by each rollup
      too: ClickHouse derives the view's block token from the insert's and drops a repeat only where the
      target table keeps a window of tokens (`non_replicated_deduplication_window` on one server; a
      replicated table keeps one by default), with `deduplicate_blocks_in_dependent_materialized_views`
      (`storage.clickhouse.QUERY_SETTINGS`);
    - the `otel_traces` usage view no longer inserts a request usage holds already (an exporter's retry, a
      request a log file brought first: `storage.otel_traces.Link.usage_select`). Its old definition is
      dropped here; connecting recreates it and copies what it missed (`link_traces`)."""
    from storage import rollups
    from storage.otel_traces import USAGE_VIEW

    statements = []
    if not layout.cluster:
        statements += [
            f"ALTER TABLE {layout.qualified(r.name)} MODIFY SETTING {DEDUP_WINDOW}"
            for r in rollups.FIRST_CLICKHOUSE_ROLLUPS
        ]
    statements.append(f"DROP VIEW IF EXISTS {layout.qualified(USAGE_VIEW)}{layout.on_cluster}")
    return statements


RECORD_KEY_INDEX = "record_key_bloom"


def record_key_index(layout: Layout, _describe: Describe, _render: Callable[[str], str]) -> list[str]:
    """A bloom filter on `record_key` (migration 4): every write looks the keys it brings up in usage (the
    ingest's lookup before inserting, the `otel_traces` view's before each exporter block), and the sort
    key, which starts with provider, model and team, narrows such a lookup only to the weeks around the
    keys' times; the filter narrows it to the granules that may hold them. Rows stored before get it as
    ClickHouse materializes it in the background (until then a lookup reads their granules, as before)."""
    usage = f"{layout.qualified(layout.local('usage'))}{layout.on_cluster}"
    return [
        f"ALTER TABLE {usage} ADD INDEX IF NOT EXISTS {RECORD_KEY_INDEX} record_key "
        "TYPE bloom_filter(0.001) GRANULARITY 1",
        f"ALTER TABLE {usage} MATERIALIZE INDEX {RECORD_KEY_INDEX}",
    ]


INSERTED_AT_INDEX = "inserted_at_minmax"


def surplus_table(layout: Layout, _describe: Describe, _render: Callable[[str], str]) -> list[str]:
    """`usage_surplus` (migration 8): the copies of a request that two writers stored at the same moment
    beyond the one that stays (`storage.settle`), with usage's columns and the copy's identity as the key
    (key, time, source, insert time, and a number among identical copies), so that writers recording the
    same copy record it once to every `FINAL` read. Every rollup read subtracts it. On a cluster it is
    sharded by the record key as usage is. And a minmax index on usage's `inserted_at`: the count of the
    copies of keys inserted lately (`storage.settle.settle_recent`) skips the granules written before."""
    columns = USAGE_COLUMNS.replace(" DEFAULT now64(6)", "") + ",\n    copy                  UInt32"
    storage = (
        f"ENGINE = {layout.engine('Replacing', layout.local('usage_surplus'))}\n"
        "PARTITION BY toYYYYMM(ts)\n"
        "ORDER BY (record_key, ts, source_id, inserted_at, copy)"
    )
    usage = f"{layout.qualified(layout.local('usage'))}{layout.on_cluster}"
    return [
        *layout.tables("usage_surplus", columns, storage, "cityHash64(record_key)"),
        f"ALTER TABLE {usage} ADD INDEX IF NOT EXISTS {INSERTED_AT_INDEX} inserted_at "
        "TYPE minmax GRANULARITY 1",
        f"ALTER TABLE {usage} MATERIALIZE INDEX {INSERTED_AT_INDEX}",
    ]


INSERTS_KEPT_DAYS = 2


def inserts_log(layout: Layout, _describe: Describe, _render: Callable[[str], str]) -> list[str]:
    """`usage_inserts` (migration 9): the identity of every usage row as it is inserted (key, time, sort
    key, source, insert time), by a materialized view on usage's local table, kept two days. Two copies of
    one request with one sort key are one row after usage's next merge; the log keeps both, so a writer's
    count of the copies it just inserted (`storage.settle`) does not depend on whether a merge came first.
    A plain `MergeTree` ordered by the record key (a count is a read of the primary key), partitioned by
    day so that old days are dropped whole; a retried insert is dropped here by its token as in usage.
    It replaces migration 8's minmax index on `inserted_at`: the count of lately inserted keys reads the
    log."""
    columns = (
        "    record_key  String,\n"
        "    ts          DateTime64(6, 'UTC'),\n"
        "    provider    LowCardinality(Nullable(String)),\n"
        "    model       LowCardinality(String),\n"
        "    team        LowCardinality(Nullable(String)),\n"
        "    source_id   Int64,\n"
        "    inserted_at DateTime64(6, 'UTC')"
    )
    local = layout.local("usage_inserts")
    storage = (
        f"ENGINE = {layout.engine('', local)}\n"
        "PARTITION BY toDate(inserted_at)\n"
        "ORDER BY (record_key, ts)\n"
        f"TTL toDateTime(inserted_at) + INTERVAL {INSERTS_KEPT_DAYS} DAY\n"
        "SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000"
    )
    usage = layout.qualified(layout.local("usage"))
    return [
        *layout.tables("usage_inserts", columns, storage, "cityHash64(record_key)"),
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {layout.qualified('usage_inserts_mv')}{layout.on_cluster} "
        f"TO {layout.qualified(local)} AS\n"
        f"SELECT record_key, ts, provider, model, team, source_id, inserted_at FROM {usage}",
        f"ALTER TABLE {usage}{layout.on_cluster} DROP INDEX IF EXISTS {INSERTED_AT_INDEX}",
    ]


# Append only: a released migration is never edited; a schema change is a new number with its statements.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "usage", lambda layout, _describe, _render: usage_tables(layout)),
    Migration(2, "rollups", rollup_tables),
    Migration(3, "exact rollups", exact_rollups),
    Migration(4, "record key index", record_key_index),
    Migration(8, "usage surplus", surplus_table),
    Migration(9, "usage inserts log", inserts_log),
    Migration(10, "profile bins", profile_bins),
)
