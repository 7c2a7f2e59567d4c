"""One pull: which days, every page fetched, normalised, and stored in one transaction.

Incremental: without `since`, a pull starts at the last day earlier pulls of the same kind and account
covered (that day is pulled again: it may have been incomplete then) or, the first time, `FIRST_PULL_DAYS`
ago; without `until` it runs to the end of today (UTC). Days are whole UTC days: both providers bucket by
them. Idempotent: the days pulled replace what was stored for them (`storage.pulls`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from collectors.pull.apis import (
    KINDS,
    Dimensions,
    PriceDimensions,
    PullKind,
    cost_lines,
    usage_records,
    usage_spec,
)
from collectors.pull.http import AdminKey, FetchStats, Sleep, fetch_pages
from models.errors import InputError
from storage.normalise import IngestContext, Normaliser
from storage.pulls import (
    PullCounts,
    PullReject,
    PullRun,
    day_start,
    last_pulled_until,
    store_cost_pull,
    store_usage_pull,
)

FIRST_PULL_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True)
class PullResult:
    kind: str
    account: str
    since: date
    until: date  # exclusive
    pages: int
    retries: int
    counts: PullCounts

    @property
    def reject_reasons(self) -> Mapping[str, int]:
        return self.counts.reject_reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "account": self.account,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "pages": self.pages,
            "retries": self.retries,
            "run_id": self.counts.run_id,
            "read": self.counts.read,
            "stored": self.counts.stored,
            "duplicates": self.counts.duplicates,
            "rejected": self.counts.rejected,
            "replaced": self.counts.replaced,
            "reject_reasons": dict(self.reject_reasons),
        }


def account_of(kind: PullKind, base_url: str | None) -> str:
    """The account a pull reads, as stored: its base URL without credentials, query or trailing slash."""
    url = httpx.URL((base_url or kind.default_base_url).strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise InputError(f"--base-url must be an http:// or https:// URL, got {base_url!r}")
    return str(url.copy_with(query=None, fragment=None, userinfo=b"")).rstrip("/")


def pull_kind(name: str) -> PullKind:
    try:
        return KINDS[name]
    except KeyError:
        raise InputError(f"unknown pull {name!r}; choose from {', '.join(KINDS)}") from None


def days_to_pull(
    db: Path, kind: PullKind, account: str, since: date | None, until: date | None, today: date
) -> tuple[date, date]:
    """[since, until) in whole UTC days, from the options or from what earlier pulls hold."""
    if since is None:
        last = last_pulled_until(db, kind.name, account)
        since = (last.date() - timedelta(days=1)) if last is not None else today - timedelta(FIRST_PULL_DAYS)
        since = min(since, today)
    if until is None:
        until = today + timedelta(days=1)
    if until <= since:
        raise InputError(f"--until ({until}) must be after --since ({since}): days are [since, until)")
    if (until - since).days > MAX_DAYS:
        raise InputError(f"pull at most {MAX_DAYS} days at once (asked for {(until - since).days})")
    return since, until


async def pull(
    db: Path,
    kind: PullKind,
    key: AdminKey,
    client: httpx.AsyncClient,
    *,
    base_url: str | None = None,
    since: date | None = None,
    until: date | None = None,
    salt: str,
    now: datetime | None = None,
    sleep: Sleep = asyncio.sleep,
) -> PullResult:
    """Fetch every page of one report for [since, until) and store it, replacing those days."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    account = account_of(kind, base_url)
    first, last = days_to_pull(db, kind, account, since, until, now.date())
    request = kind.request(account, first, last)
    stats = FetchStats()
    pages: list[tuple[int, dict[str, Any]]] = []
    async for page in fetch_pages(client, request, key, stats=stats, sleep=sleep):
        pages.append((len(pages) + 1, page))
    run = PullRun(
        kind.name,
        account,
        day_start(first),
        day_start(last),
        now,
        stats.pages,
        stats.retries,
        requests_known=kind.provider == "openai",
    )
    finished = datetime.now(UTC).replace(tzinfo=None)
    if kind.report == "costs":
        lines, refused = cost_lines(kind, pages)
        rejects = [PullReject(r.item_no, r.reason, r.excerpt) for r in refused]
        counts = store_cost_pull(db, run, lines, rejects, finished)
    else:
        rows, rejects = normalise_usage(kind, pages, salt, now)
        counts = store_usage_pull(db, run, rows, rejects, finished)
    return PullResult(kind.name, account, first, last, stats.pages, stats.retries, counts)


def normalise_usage(
    kind: PullKind, pages: list[tuple[int, dict[str, Any]]], salt: str, now: datetime
) -> tuple[pa.Table | None, list[PullReject]]:
    """Usage pages as canonical rows, by the same normaliser `quotascope ingest` uses."""
    spec = usage_spec(kind)
    context = IngestContext(salt=salt, now=now)
    normaliser = Normaliser()
    tables: list[pa.Table] = []
    rejects: list[PullReject] = []
    dimensions: Dimensions = {}
    try:
        for block in usage_records(kind, pages, dimensions):
            rejects += [PullReject(r.line_no, r.reason, r.excerpt) for r in block.rejects]
            if not block.lines:
                continue
            result = normaliser.normalise(spec, block.data(), context, line_numbers=block.numbers)
            rejects += [PullReject(r.line_no, r.reason, r.excerpt) for r in result.rejects]
            if result.rows.num_rows:
                tables.append(result.rows)
    finally:
        normaliser.close()
    rows = pa.concat_tables(tables, promote_options="default") if tables else None
    return (with_dimensions(rows, dimensions) if rows is not None else None), rejects


def with_dimensions(rows: pa.Table, dimensions: Dimensions) -> pa.Table:
    """`rows` with each result's service tier, batch flag and 1-hour cache writes (by its `line_no`)."""
    found = [dimensions.get(int(n), PriceDimensions()) for n in rows.column("line_no").to_pylist()]
    # the normaliser gives these columns too (its specs read them from responses); the API's own win here
    rows = rows.drop_columns(
        [c for c in ("service_tier", "batch", "cache_write_1h_tokens") if c in rows.column_names]
    )
    return (
        rows.append_column("service_tier", pa.array([d.service_tier for d in found], pa.string()))
        .append_column("batch", pa.array([d.batch for d in found], pa.bool_()))
        .append_column(
            "cache_write_1h_tokens", pa.array([d.cache_write_1h_tokens for d in found], pa.int64())
        )
    )
