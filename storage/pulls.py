"""Writes and reads of pulled provider usage and costs (`quotascope pull`, `report reconcile`).

A pull is stored in ONE transaction: the rows earlier pulls of the same kind and account hold for the days
this one covers are removed, this pull's rows inserted, its rejects and its `pull_runs` row written. So a day
pulled again is replaced, never doubled, and a pull killed half-way leaves the database as it was. The
counts obey `read = stored + duplicates + rejected`: a result repeated within the pull (an overlapping page)
is a duplicate, a result the normaliser refuses or that falls outside the days asked for is a reject with its
reason; `replaced` says how many earlier rows were superseded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from models.billing import CostLine
from storage.db import open_read, open_write, scalar

_USAGE_COLUMNS = (
    "record_key",
    "line_no",
    "ts",
    "provider",
    "model",
    "endpoint",
    "team",
    "project",
    "user_hash",
    "key_id",
    "n_requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "tags",
    "service_tier",
    "batch",
    "cache_write_1h_tokens",
)


@dataclass(frozen=True, slots=True)
class PullRun:
    """What one pull asked for and how the asking went."""

    kind: str
    account: str  # the base URL (no credentials, no query)
    since: datetime  # UTC day start
    until: datetime  # UTC day start after the last day
    started_at: datetime
    pages: int
    retries: int
    requests_known: bool = True


@dataclass(frozen=True, slots=True)
class PullReject:
    item_no: int
    reason: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class PullCounts:
    run_id: int
    read: int
    stored: int
    duplicates: int
    rejected: int
    replaced: int
    reject_reasons: Mapping[str, int] = field(default_factory=dict)


def _outside(table: pa.Table, since: datetime, until: datetime) -> pa.Array:
    ts = table.column("ts")
    return pc.or_(pc.less(ts, pa.scalar(since, ts.type)), pc.greater_equal(ts, pa.scalar(until, ts.type)))


def _first_of_each_key(table: pa.Table) -> pa.Table:
    """One row per record_key (the first read): a result repeated by overlapping pages counts once."""
    frame = pl.DataFrame(table.select(["record_key"])).with_row_index("i")
    keep = frame.unique("record_key", keep="first", maintain_order=True)["i"].to_list()
    return table.take(pa.array(keep, pa.int64()))


def store_usage_pull(
    db: Path, run: PullRun, rows: pa.Table | None, rejects: Sequence[PullReject], now: datetime
) -> PullCounts:
    """Replace the run's days of `provider_usage` (its kind and account) with `rows`, in one transaction."""
    rejects = list(rejects)
    valid = 0
    table = None
    if rows is not None and rows.num_rows:
        outside = _outside(rows, run.since, run.until)
        for line in pc.filter(rows.column("line_no"), outside).to_pylist():
            rejects.append(PullReject(int(line), "a bucket outside the days asked for", ""))
        table = rows.filter(pc.invert(outside))
        valid = table.num_rows
        table = _first_of_each_key(table) if valid else None
    with open_write(db) as con:
        replaced = int(
            scalar(
                con,
                "SELECT count(*) FROM provider_usage WHERE kind = ? AND account = ? AND ts >= ? AND ts < ?",
                [run.kind, run.account, run.since, run.until],
            )
        )
        con.execute(
            "DELETE FROM provider_usage WHERE kind = ? AND account = ? AND ts >= ? AND ts < ?",
            [run.kind, run.account, run.since, run.until],
        )
        run_id = _insert_run(con, run, now)
        stored = table.num_rows if table is not None else 0
        if table is not None and stored:
            present = [c for c in _USAGE_COLUMNS if c in table.column_names]
            con.register("pulled", table.select(present))
            columns = ", ".join(present)
            con.execute(
                f"INSERT INTO provider_usage (run_id, kind, account, requests_known, {columns}) "
                f"SELECT ?, ?, ?, ?, {columns} FROM pulled",
                [run_id, run.kind, run.account, run.requests_known],
            )
            con.unregister("pulled")
        counts = PullCounts(
            run_id, valid + len(rejects), stored, valid - stored, len(rejects), replaced, _reasons(rejects)
        )
        _finish_run(con, counts, rejects)
    return counts


def store_cost_pull(
    db: Path, run: PullRun, lines: Sequence[CostLine], rejects: Sequence[PullReject], now: datetime
) -> PullCounts:
    """Replace the run's days of `provider_costs` (its kind and account) with `lines`, in one transaction."""
    rejects = list(rejects)
    kept: dict[str, CostLine] = {}
    first, last = run.since.date(), run.until.date()
    valid = 0
    for line in lines:
        if not first <= line.day < last:
            rejects.append(PullReject(line.item_no, "a bucket outside the days asked for", ""))
            continue
        valid += 1
        kept.setdefault(line.record_key, line)
    with open_write(db) as con:
        where = "kind = ? AND account = ? AND day >= ? AND day < ?"
        params = [run.kind, run.account, first, last]
        replaced = int(scalar(con, f"SELECT count(*) FROM provider_costs WHERE {where}", params))
        con.execute(f"DELETE FROM provider_costs WHERE {where}", params)
        run_id = _insert_run(con, run, now)
        if kept:
            con.executemany(
                "INSERT INTO provider_costs (run_id, kind, account, record_key, item_no, day, provider, "
                "project, model, line_item, cost_type, token_type, service_tier, amount, currency) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        run_id,
                        run.kind,
                        run.account,
                        c.record_key,
                        c.item_no,
                        c.day,
                        c.provider,
                        c.project,
                        c.model,
                        c.line_item,
                        c.cost_type,
                        c.token_type,
                        c.service_tier,
                        c.amount,
                        c.currency,
                    ]
                    for c in kept.values()
                ],
            )
        counts = PullCounts(
            run_id,
            valid + len(rejects),
            len(kept),
            valid - len(kept),
            len(rejects),
            replaced,
            _reasons(rejects),
        )
        _finish_run(con, counts, rejects)
    return counts


def _reasons(rejects: Sequence[PullReject]) -> dict[str, int]:
    return dict(Counter(r.reason for r in rejects).most_common())


def _insert_run(con: Any, run: PullRun, now: datetime) -> int:
    run_id = scalar(
        con,
        "INSERT INTO pull_runs (kind, account, since, until, started_at, finished_at, pages, retries, "
        "rows_read, rows_stored, rows_duplicate, rows_rejected, rows_replaced) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0) RETURNING run_id",
        [run.kind, run.account, run.since, run.until, run.started_at, now, run.pages, run.retries],
    )
    return int(run_id)


def _finish_run(con: Any, counts: PullCounts, rejects: Sequence[PullReject]) -> None:
    con.execute(
        "UPDATE pull_runs SET rows_read = ?, rows_stored = ?, rows_duplicate = ?, rows_rejected = ?, "
        "rows_replaced = ? WHERE run_id = ?",
        [counts.read, counts.stored, counts.duplicates, counts.rejected, counts.replaced, counts.run_id],
    )
    if rejects:
        con.executemany(
            "INSERT INTO pull_rejects VALUES (?, ?, ?, ?)",
            [[counts.run_id, r.item_no, r.reason, r.excerpt] for r in rejects],
        )


def last_pulled_until(db: Path, kind: str, account: str) -> datetime | None:
    """The end of the latest day earlier pulls of this kind and account covered (None: never pulled)."""
    if not Path(db).exists():
        return None
    with open_read(db) as con:
        value = scalar(
            con, "SELECT max(until) FROM pull_runs WHERE kind = ? AND account = ?", [kind, account]
        )
    return value if isinstance(value, datetime) else None


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)
