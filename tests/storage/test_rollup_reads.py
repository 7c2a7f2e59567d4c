"""Reads answered from the rollups give what the raw rows give, to the cent: spend in every grouping, usage
per bucket, the token profile, the filters' options and the span — for whole and cut periods, filters and
a viewer's teams; a catalog the rollups cannot answer exactly is read from the raw rows."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from models.catalog import Catalog
from storage import profiles, rollups
from storage.explore import usage_dimensions
from storage.replay import UsageFilter, usage_span
from storage.reports import read_usage_buckets, read_usage_profile, read_usage_profiles, spend_report
from storage.simulation import replay_window
from storage.usage import snapshot_catalog
from storage.usage_reader import open_usage
from tests.collectors.ingest_support import catalog
from tests.storage.usage_rows import insert_usage

START = datetime(2025, 3, 3, 12, 0)
MODELS = (
    ("deepseek", "deepseek-reasoner"),
    ("deepseek", "deepseek-chat"),
    ("openai", "gpt-4o"),
    (None, "mystery"),
)


def usage_rows(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        provider, model = rng.choice(MODELS)
        requests = rng.choice([1, 1, 1, 3])
        each = rng.choice(
            [rng.randint(1, 5000), rng.randint(199_995, 200_005), rng.randint(149_990, 150_010)]
        )
        inputs = each * requests
        output = rng.randint(1, 4000)
        ttft = round(rng.uniform(50, 2000), 2)
        billed = rng.random() < 0.2
        rows.append(
            {
                "record_key": f"k{n}",
                "ts": START + timedelta(seconds=rng.randrange(0, 4 * 86400)),
                "provider": provider,
                "model": model,
                "team": rng.choice(["search", "support", None]),
                "project": rng.choice(["p1", "p2", None]),
                "key_id": rng.choice(["k1", "k2", None]),
                "n_requests": requests,
                "input_tokens": inputs,
                "cached_input_tokens": rng.randint(0, inputs // 2),
                "output_tokens": output,
                "reasoning_tokens": rng.randint(0, output),
                "ttft_ms": ttft if requests == 1 and rng.random() < 0.9 else None,
                "latency_ms": ttft + rng.uniform(1, 20_000) if requests == 1 else None,
                "billed_cost": round(rng.uniform(0, 3), 6) if billed else None,
                "billed_currency": rng.choice(["USD", "CNY"]) if billed else None,
            }
        )
    return rows


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rollup-reads") / "q.duckdb"
    rows = usage_rows(5, 3000)
    for part in range(3):  # three batches: the rollups hold partial rows for the same keys
        insert_usage(path, rows[part::3])
    return path


SELECTIONS = (
    UsageFilter(),
    UsageFilter(START, START + timedelta(days=2)),
    # a period cut inside half hours, at both ends
    UsageFilter(START + timedelta(hours=4, minutes=10), START + timedelta(days=1, hours=16, minutes=45)),
    UsageFilter(until=START + timedelta(hours=30, minutes=7)),
    UsageFilter(provider="deepseek", model="deepseek-reasoner", team="search"),
    UsageFilter(START + timedelta(minutes=17), project="p1"),
    replace(UsageFilter(START, START + timedelta(days=3, minutes=1)), teams=("support",)),
    replace(UsageFilter(), teams=()),
)
GROUPINGS = ((), ("day", "team"), ("hour",), ("provider", "model"), ("project", "key"), ("endpoint", "team"))


def from_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollups, "covers", lambda *args: False)
    monkeypatch.setattr(profiles, "profile_from_rollups", lambda selection: False)


@pytest.mark.parametrize("selection", SELECTIONS)
def test_spend_from_the_rollups_is_the_raw_rows_spend_to_the_cent(
    db: Path, selection: UsageFilter, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_catalog = catalog()
    with open_usage(db) as usage:
        assert rollups.covers((200_000,), 30, usage)
    answers = {by: [r.to_json() for r in spend_report(db, test_catalog, selection, by)] for by in GROUPINGS}
    from_raw(monkeypatch)
    assert answers == {
        by: [r.to_json() for r in spend_report(db, test_catalog, selection, by)] for by in GROUPINGS
    }
    assert any(row["requests"] for rows in answers.values() for row in rows) or selection.teams == ()


@pytest.mark.parametrize("selection", SELECTIONS)
def test_profile_from_the_rollups_is_the_raw_rows_profile(
    db: Path, selection: UsageFilter, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolled = read_usage_profile(db, selection=selection)
    from_raw(monkeypatch)
    raw = read_usage_profile(db, selection=selection)
    assert _close(rolled, raw)


@pytest.mark.parametrize("selection", SELECTIONS[:4])
def test_profiles_of_groups_are_each_groups_own_profile(db: Path, selection: UsageFilter) -> None:
    groups = read_usage_profiles(db, selection, ("provider", "model"))
    assert sum(p.requests for p in groups.values()) == read_usage_profile(db, selection=selection).requests
    for (provider, model), grouped in groups.items():
        if provider is not None:  # (a filter of None selects every provider)
            alone = read_usage_profile(db, selection=replace(selection, provider=provider, model=model))
            assert _close(grouped, alone)


def _close(a: Any, b: Any) -> bool:
    """Equal, but for the float rounding of a mean summed in another order."""
    if a == b:
        return True
    assert type(a) is type(b)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if hasattr(x, "__dataclass_fields__"):
            assert _close(x, y), name
        else:
            assert x == pytest.approx(y, rel=1e-12), name
    return True


@pytest.mark.parametrize("selection", SELECTIONS)
def test_buckets_dimensions_and_span_from_the_rollups_are_the_raw_rows(
    db: Path, selection: UsageFilter
) -> None:
    where, params = selection.where()
    with duckdb.connect(str(db), read_only=True) as con:
        raw = con.execute(
            f"""SELECT CAST(ts AS DATE) AS day, team, sum(n_requests), sum(input_tokens),
                sum(cached_input_tokens), sum(cache_write_tokens), sum(output_tokens), sum(reasoning_tokens)
            FROM usage WHERE {where} GROUP BY ALL ORDER BY day, team NULLS LAST""",
            params,
        ).fetchall()
        first, last, requests = con.execute(
            f"SELECT min(ts), max(ts), coalesce(sum(n_requests), 0) FROM usage WHERE {where}", params
        ).fetchall()[0]
        teams = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT team FROM usage WHERE {where} AND team IS NOT NULL ORDER BY 1", params
            ).fetchall()
        ]
    assert read_usage_buckets(db, selection, ("day", "team")).rows() == raw
    dims = usage_dimensions(db, selection)
    assert (dims.first, dims.last, dims.requests, list(dims.teams)) == (first, last, requests, teams)
    assert usage_span(db, selection) == (None if first is None else (first, last))


def test_a_catalog_with_a_threshold_the_rollups_lack_is_read_raw_until_they_are_rebanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-context threshold at 150,000 (not among the seeded ones): rows on both sides of it sit in one
    rollup band, so the rollups cannot price it; spend comes from the raw rows (and is right) until the
    catalog is snapshotted (every ingest does), which rebuilds the rollups banded by it too."""
    path = tmp_path / "q.duckdb"
    insert_usage(path, usage_rows(7, 400))
    tiered = _with_tier(catalog(), 150_000)
    with open_usage(path) as usage:
        assert not rollups.covers((150_000, 200_000), 30, usage)
    before = [r.to_json() for r in spend_report(path, tiered, UsageFilter(), ("day",))]
    snapshot_catalog(path, tiered)
    with open_usage(path) as usage:
        assert rollups.covers((150_000, 200_000), 30, usage)
        assert usage.duckdb is not None and 150_000 in rollups.bands(usage.duckdb)
        assert all(rollups.rederived_difference(usage.duckdb, r) == 0 for r in rollups.ROLLUPS)
    assert [r.to_json() for r in spend_report(path, tiered, UsageFilter(), ("day",))] == before
    from_raw(monkeypatch)
    assert [r.to_json() for r in spend_report(path, tiered, UsageFilter(), ("day",))] == before
    # and the tier did change the price: without it the same usage costs less
    assert before != [r.to_json() for r in spend_report(path, catalog(), UsageFilter(), ("day",))]


def test_a_catalog_whose_prices_change_inside_a_half_hour_is_read_raw(tmp_path: Path) -> None:
    path = tmp_path / "q.duckdb"
    insert_usage(path, usage_rows(7, 10))
    with open_usage(path) as usage:
        assert rollups.covers((200_000,), 30, usage) and rollups.covers((200_000,), 60, usage)
        assert not rollups.covers((200_000,), 15, usage)


def _with_tier(base: Catalog, bound: int) -> Catalog:
    """`base` with a long-context tier above `bound` input tokens on deepseek-reasoner, at twice the price."""
    from models.catalog import ContextTier

    offers = dict(base.offers)
    offer = offers["test/deepseek-reasoner"]
    versions = []
    for v in offer.versions:
        assert v.prices is not None
        tier = ContextTier(bound, replace(v.prices, input=v.prices.input * 2, output=v.prices.output * 2))
        versions.append(replace(v, tiers=(tier,)))
    offers[offer.id] = replace(offer, versions=tuple(versions))
    return replace(base, offers=offers)


@pytest.mark.parametrize("limit", [1, 40, 700, 10**9])
def test_the_recent_part_of_a_period_is_the_latest_half_hours_holding_at_most_the_limit(
    db: Path, limit: int
) -> None:
    """What the Switch view replays and the Usage view samples: whole half hours back from the period's
    end while they hold no more than `limit` requests (the last one, however many it holds)."""
    period = UsageFilter(START + timedelta(hours=5), START + timedelta(days=3, hours=2, minutes=10))
    part = replay_window(db, period, limit)
    assert part.until == period.until
    assert part.since is not None and period.since is not None
    if limit == 10**9:
        assert part == period
        return
    assert part.since > period.since and (part.since.minute, part.since.second) in ((0, 0), (30, 0))

    def requests(since: datetime) -> int:
        where, params = replace(period, since=since).where()
        with duckdb.connect(str(db), read_only=True) as con:
            return int(
                con.execute(
                    f"SELECT coalesce(sum(n_requests), 0) FROM usage WHERE {where}", params
                ).fetchall()[0][0]
            )

    held, earlier = requests(part.since), requests(part.since - timedelta(minutes=30))
    assert earlier > limit  # one half hour more would hold too many
    assert held <= limit or requests(part.since + timedelta(minutes=30)) == 0  # or it is the last half hour
