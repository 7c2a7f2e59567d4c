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

__all__ = ["MIGRATIONS", "Layout", "Migration", "migrations_table", "usage_tables"]


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


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    statements: Callable[[Layout], list[str]]


# Append only: a released migration is never edited; a schema change is a new number with its statements.
MIGRATIONS: tuple[Migration, ...] = (Migration(1, "usage", usage_tables),)
