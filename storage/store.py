"""Where quotascope keeps its data: the `Store` value, parsed once from `--store URL` / `QUOTASCOPE_STORE`.

A store is always the embedded DuckDB file (`--db`): catalog snapshot, budgets, probes, jobs, users, pulls,
and the ingest's bookkeeping (`sources`, `rejects`). Given a ClickHouse URL, the usage rows live in
ClickHouse instead (`storage.clickhouse`); every named read over usage asks `open_usage` for a reader and
never knows which engine answers.

URLs (the password is never part of one: it is read from `QUOTASCOPE_CLICKHOUSE_PASSWORD` when connecting,
so it is never stored in a setting, a shell history, a log or an error message):

- `clickhouse://user@host:8123/database` — a ClickHouse server over HTTP (`clickhouse-connect`);
- `clickhouses://user@host:8443/database` — the same over TLS;
- `chdb://PATH` — ClickHouse's engine in this process (`chdb`), its data in the folder PATH (`?database=NAME`
  keeps several stores in one folder);
- `duckdb` (or nothing) — usage in the DuckDB file too, the default.

`?cluster=NAME` on a ClickHouse URL creates the tables `ON CLUSTER NAME`: replicated tables and a
`Distributed` table over them (README, "Scaling out on ClickHouse").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from models.errors import InputError

PASSWORD_ENV = "QUOTASCOPE_CLICKHOUSE_PASSWORD"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a database or cluster name needing no quoting


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """A ClickHouse to keep usage in: a server (`kind="server"`) or chdb's in-process engine on a folder."""

    kind: Literal["server", "chdb"]
    database: str = "default"
    host: str = ""
    port: int = 0
    user: str = "default"
    secure: bool = False
    path: Path | None = None  # chdb's data folder
    cluster: str | None = None

    def display(self) -> str:
        """The URL to show a person (it never held a password)."""
        if self.kind == "chdb":
            return f"chdb://{self.path}" + (
                f"?database={self.database}" if self.database != "default" else ""
            )
        suffix = f"?cluster={self.cluster}" if self.cluster else ""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}{suffix}"


@dataclass(frozen=True, slots=True)
class Store:
    """The embedded DuckDB file, and the ClickHouse holding usage if one is configured."""

    db: Path
    clickhouse: ClickHouseTarget | None = None

    def describe(self) -> str:
        if self.clickhouse is None:
            return str(self.db)
        return f"{self.clickhouse.display()} (usage) with {self.db}"


StoreLike = Store | Path  # a bare path is the embedded store alone (tests, and callers of the file only)


def as_store(store: StoreLike) -> Store:
    return store if isinstance(store, Store) else Store(Path(store))


def parse_store(url: str | None, db: Path) -> Store:
    """The store a `--store URL` (or `QUOTASCOPE_STORE`) names, beside the DuckDB file `db`."""
    text = (url or "").strip()
    if text in ("", "duckdb", "duckdb://"):
        return Store(Path(db))
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if not rest and scheme not in ("chdb",):
        raise InputError(f"not a store URL: {text!r} (clickhouse://user@host:8123/db or chdb://PATH)")
    if scheme == "chdb":
        return Store(Path(db), _chdb(rest))
    if scheme in ("clickhouse", "clickhouses"):
        return Store(Path(db), _server(text, secure=scheme == "clickhouses"))
    raise InputError(
        f"unknown store {scheme!r}: use clickhouse://user@host:8123/db, clickhouses:// for TLS, or chdb://PATH"
    )


def _chdb(rest: str) -> ClickHouseTarget:
    location, _, query = rest.partition("?")
    if not location:
        raise InputError("chdb:// needs a folder for its data, e.g. chdb://data/clickhouse")
    options = _options(query, {"database"})
    database = options.get("database", "default")
    if not _NAME.match(database):
        raise InputError(f"not a ClickHouse database name quotascope uses: {database!r} (letters, digits, _)")
    return ClickHouseTarget("chdb", database=database, path=Path(unquote(location)))


def _server(text: str, *, secure: bool) -> ClickHouseTarget:
    parts = urlsplit(text)
    if parts.password is not None:
        raise InputError(
            f"a store URL carries no password: set {PASSWORD_ENV} instead (so it is in no history or setting)"
        )
    if not parts.hostname:
        raise InputError(
            "a clickhouse:// store URL needs a host, e.g. clickhouse://default@localhost:8123/db"
        )
    try:
        port = parts.port or (8443 if secure else 8123)
    except ValueError as e:
        raise InputError(f"the store URL's port is not a number: {e}") from e
    database = unquote(parts.path.strip("/")) or "default"
    if not _NAME.match(database):
        raise InputError(f"not a ClickHouse database name quotascope uses: {database!r} (letters, digits, _)")
    return ClickHouseTarget(
        "server",
        database=database,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else "default",
        secure=secure,
        cluster=_cluster(parts.query),
    )


def _options(query: str, known: set[str]) -> dict[str, str]:
    values = parse_qs(query, keep_blank_values=True)
    unknown = set(values) - known
    if unknown:
        allowed = ", ".join(f"?{k}=NAME" for k in sorted(known))
        raise InputError(f"unknown store URL option {sorted(unknown)[0]!r} (this URL takes {allowed})")
    return {key: found[-1] for key, found in values.items()}


def _cluster(query: str) -> str | None:
    cluster = _options(query, {"cluster"}).get("cluster")
    if cluster is not None and not _NAME.match(cluster):
        raise InputError(f"not a cluster name: {cluster!r} (letters, digits, _)")
    return cluster
