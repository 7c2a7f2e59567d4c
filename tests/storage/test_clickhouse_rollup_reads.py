"""A ClickHouse store's views and reports read its rollups (materialized views into AggregatingMergeTrees)
as the DuckDB file's read its rollup tables, with the same answers to the cent; and those rollups stay
equal to their definition re-run over `usage FINAL` whatever reaches usage twice: a re-ingested file, an
insert retried with its token, an exporter's retry into `otel_traces`, one request from otel_traces and
from a log file (in either order, at times seconds apart)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from storage import clickhouse as clickhouse_module
from storage import rollups
from storage.clickhouse import ClickHouse, connect
from storage.clickhouse_schema import RECORD_KEY_INDEX
from storage.db import open_read
from storage.explore import usage_dimensions, usage_sample
from storage.otel_traces import link_traces, store_link
from storage.replay import UsageFilter, usage_span
from storage.reports import read_usage_buckets, read_usage_profiles, spend_report
from storage.simulation import replay_window
from storage.store import ClickHouseTarget, Store
from storage.usage import SourceRun, discard_source, store_batch
from storage.usage_reader import UsageReader, open_usage
from tests.collectors.ingest_support import catalog
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of
from tests.storage.otel_support import insert_spans, traces_table_ddl
from tests.storage.test_otel_traces_store import as_exported
from tests.storage.test_rollup_reads import GROUPINGS, SELECTIONS, START, usage_rows
from tests.storage.usage_rows import insert_usage

# ------------------------------------------------------------------------------------------ reads


@pytest.fixture(scope="module")
def both(chdb_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Store]:
    """The same rows in a DuckDB file and in chdb, stored in three ingests (partial rollup rows)."""
    folder = tmp_path_factory.mktemp("rollup-reads-both")
    duck = Store(folder / "duck.duckdb")
    chdb = Store(
        folder / "beside.duckdb", ClickHouseTarget("chdb", database="rollup_reads", path=chdb_folder)
    )
    assert chdb.clickhouse is not None
    clickhouse = connect(chdb.clickhouse)
    for name in ("usage", *(r.name for r in rollups.ROLLUPS)):
        clickhouse.command(f"TRUNCATE TABLE rollup_reads.{name}")
    rows = usage_rows(5, 3000)
    for store in (duck, chdb):
        for part in range(3):
            insert_usage(store, rows[part::3])
    return duck, chdb


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement a ClickHouse read sends, as ClickHouse receives it."""
    sent: list[str] = []
    arrow = ClickHouse.arrow

    def recording(self: ClickHouse, sql: str, attached: Any = None) -> pa.Table:
        sent.append(sql)
        return arrow(self, sql, attached)

    monkeypatch.setattr(ClickHouse, "arrow", recording)
    return sent


def _reads_usage(sql: str) -> bool:
    """Whether `sql` reads usage rows (not `usage_surplus`, which every rollup read subtracts)."""
    return re.search(r"rollup_reads\.usage\b", sql) is not None


@pytest.mark.parametrize("selection", SELECTIONS)
def test_spend_on_clickhouse_is_the_duckdb_files_to_the_cent_and_read_from_its_rollups(
    both: tuple[Store, Store], selection: UsageFilter, statements: list[str]
) -> None:
    duck, chdb = both
    test_catalog = catalog()
    for by in GROUPINGS:
        expected = [r.to_json() for r in spend_report(duck, test_catalog, selection, by)]
        statements.clear()
        assert [r.to_json() for r in spend_report(chdb, test_catalog, selection, by)] == expected, by
        assert any("rollup_spend" in s for s in statements)
        if selection.project is None and selection.since in (None, START):  # nothing cut: no raw row read
            assert not any(_reads_usage(s) for s in statements), by


@pytest.mark.parametrize("selection", SELECTIONS)
def test_buckets_dimensions_span_and_profiles_on_clickhouse_are_the_duckdb_files(
    both: tuple[Store, Store], selection: UsageFilter, statements: list[str]
) -> None:
    duck, chdb = both
    assert (
        read_usage_buckets(chdb, selection, ("day", "team")).rows()
        == read_usage_buckets(duck, selection, ("day", "team")).rows()
    )
    assert usage_dimensions(chdb, selection) == usage_dimensions(duck, selection)
    assert usage_span(chdb, selection) == usage_span(duck, selection)
    for by in ((), ("provider", "model"), ("team",)):
        statements.clear()
        got, expected = read_usage_profiles(chdb, selection, by), read_usage_profiles(duck, selection, by)
        assert got.keys() == expected.keys()
        for key, profile in got.items():
            assert profile.requests == expected[key].requests
            assert profile.input_tokens == expected[key].input_tokens
            assert profile.output_tokens == expected[key].output_tokens
            assert profile.ttft_ms == expected[key].ttft_ms
            assert profile.cached_share == pytest.approx(expected[key].cached_share, rel=1e-12)
        if selection.project is None:
            assert any("rollup_profile" in s for s in statements)


@pytest.mark.parametrize("limit", [1, 40, 700, 10**9])
def test_the_recent_part_on_clickhouse_is_the_duckdb_files(both: tuple[Store, Store], limit: int) -> None:
    duck, chdb = both
    period = UsageFilter(START + timedelta(hours=5), START + timedelta(days=3, hours=2, minutes=10))
    assert replay_window(chdb, period, limit) == replay_window(duck, period, limit)


def test_a_sample_on_clickhouse_is_drawn_from_the_recent_part_only(
    both: tuple[Store, Store], statements: list[str]
) -> None:
    _, chdb = both
    sample = usage_sample(chdb, UsageFilter(), rows=10)
    assert sample.height == 10
    assert any("rollup_spend" in s for s in statements)
    draws = [s for s in statements if _reads_usage(s)]
    assert len(draws) == 1 and "toDateTime64" in draws[0]  # bounded by the recent part's start


# ------------------------------------------------------------------------------------------ exactness


@pytest.fixture
def fresh(chdb_folder: Path, tmp_path: Path) -> Iterator[Store]:
    """A chdb store with a database of its own, dropped afterwards."""
    store = Store(tmp_path / "beside.duckdb", ClickHouseTarget("chdb", database="exact", path=chdb_folder))
    yield store
    assert store.clickhouse is not None
    clickhouse_module._connections.pop(store.clickhouse).command("DROP DATABASE IF EXISTS exact")


def _difference(
    store: Store, stored_rows: Callable[[UsageReader, rollups.Rollup], str] = lambda _, r: r.name
) -> dict[str, int]:
    """Per rollup, the keys whose stored sums (its partial rows: the relation `stored_rows` gives, its
    table unless told) differ from the definition run over `usage FINAL`."""
    differences = {}
    with open_usage(store) as usage:
        for rollup in rollups.ROLLUPS:
            stored = rollup.merged(stored_rows(usage, rollup))
            fresh = rollup.select("usage", rollups.SEED_BANDS)
            rows = usage.rows(
                f"SELECT count(*) FROM (({stored}) EXCEPT ALL ({fresh})) "
                f"UNION ALL SELECT count(*) FROM (({fresh}) EXCEPT ALL ({stored}))"
            )
            differences[rollup.name] = sum(int(r[0]) for r in rows)
    return differences


def _exact(store: Store) -> bool:
    return not any(_difference(store).values())


def _rows_per_key(store: Store) -> dict[str, int]:
    with open_usage(store) as usage:
        return dict(usage.rows("SELECT record_key, count(*)::BIGINT FROM usage GROUP BY record_key"))


def _file(
    keys: list[str], at: datetime, model: str = "deepseek-chat", provider: str = "deepseek"
) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            "line_no": pa.array(range(1, n + 1), pa.int64()),
            "record_key": pa.array(keys),
            "ts": pa.array([at + timedelta(seconds=i) for i in range(n)], pa.timestamp("us")),
            "provider": pa.array([provider] * n),
            "model": pa.array([model] * n),
            "team": pa.array(["search"] * n),
            "n_requests": pa.array([1] * n, pa.int64()),
            "input_tokens": pa.array([1000 + i for i in range(n)], pa.int64()),
            "cached_input_tokens": pa.array([0] * n, pa.int64()),
            "cache_write_tokens": pa.array([0] * n, pa.int64()),
            "output_tokens": pa.array([200] * n, pa.int64()),
            "reasoning_tokens": pa.array([0] * n, pa.int64()),
            "billed_cost": pa.array([Decimal("0.0012")] * n, pa.decimal128(20, 10)),
            "billed_currency": pa.array(["USD"] * n),
        }
    )


def _ingest(store: Store, table: pa.Table, path: str = "usage.jsonl") -> int:
    run = SourceRun(path, 0, "test", {}, datetime(2025, 1, 1))
    _, counts = store_batch(store, run, [table], [])
    return counts.stored


def _source(store: Store, path: str, run: int = -1) -> int:
    """The id of the `run`th ingest of `path` on `store`'s machine (the last by default), as its DuckDB
    file numbered it (at random on a ClickHouse store: `storage.usage.shared_source_id`)."""
    with open_read(store.db) as con:
        ids = con.execute("SELECT source_id FROM sources WHERE path = ? ORDER BY rowid", [path]).fetchall()
    return int(ids[run][0])


def test_a_reingested_file_and_a_retried_insert_leave_the_rollups_exact(fresh: Store) -> None:
    table = _file([f"req-{i}" for i in range(40)], datetime(2025, 3, 3, 12, 10))
    assert _ingest(fresh, table) == 40
    assert _ingest(fresh, table) == 0  # re-ingested: every record is stored already
    assert fresh.clickhouse is not None
    clickhouse = connect(fresh.clickhouse)
    # the same insert twice with its token, as a retry after a lost answer sends it (past the key lookup)
    again = _file([f"retry-{i}" for i in range(25)], datetime(2025, 3, 3, 13, 40)).add_column(
        0, "source_id", pa.array([7] * 25, pa.int64())
    )
    for _ in range(2):
        clickhouse.insert("usage", again, token="usage:retried-once")
    assert set(_rows_per_key(fresh).values()) == {1} and len(_rows_per_key(fresh)) == 65
    assert _exact(fresh), _difference(fresh)
    with open_usage(fresh) as usage:  # and the rollup holds every request once, not only relative to FINAL
        assert usage.rows("SELECT sum(requests)::BIGINT FROM rollup_spend") == [(65,)]


def _spans(first: int, count: int, start_ns: int) -> list[Any]:
    request = request_of([llm_attributes(first + i) for i in range(count)], start_ns=start_ns)
    return as_exported(request)


@pytest.mark.parametrize("file_first", [True, False], ids=["file-then-otel", "otel-then-file"])
def test_one_request_from_otel_traces_and_from_a_file_is_one_row_and_counted_once(
    fresh: Store, file_first: bool
) -> None:
    """The exporter's spans and a gateway's log of the same calls (the same response ids, times seconds
    apart): one usage row per request, whichever came first, and the rollups count each once; an
    exporter's retry of a batch adds nothing."""
    assert fresh.clickhouse is not None
    clickhouse = connect(fresh.clickhouse)
    clickhouse.command(traces_table_ddl("exact.otel_traces"))
    assert link_traces(clickhouse, store_link(clickhouse.layout)) == "linked"  # as connecting does
    spans = _spans(0, 30, START_NS)
    logged_at = datetime(2025, 12, 6, 5, 46, 43)  # three seconds after the first span started
    logged = _file([f"chatcmpl-{n:024d}" for n in range(10, 20)], logged_at, "gpt-4o-2024-08-06", "openai")
    if file_first:
        assert _ingest(fresh, logged) == 10
        clickhouse.command(insert_spans(spans, "exact.otel_traces"))
    else:
        clickhouse.command(insert_spans(spans, "exact.otel_traces"))
        assert _ingest(fresh, logged) == 0  # found stored, by key within a week
    clickhouse.command(insert_spans(spans[:12], "exact.otel_traces"))  # the exporter retries a batch
    clickhouse.command(insert_spans(spans[3:5] + spans[3:5], "exact.otel_traces"))  # twice in one block
    per_key = _rows_per_key(fresh)
    assert len(per_key) == 30 and set(per_key.values()) == {1}
    assert _exact(fresh), _difference(fresh)
    with open_usage(fresh) as usage:
        assert usage.rows("SELECT sum(requests)::BIGINT FROM rollup_spend") == [(30,)]
        sources = dict(usage.rows("SELECT source_id, count(*)::BIGINT FROM usage GROUP BY source_id"))
    assert sources == ({0: 20, _source(fresh, "usage.jsonl"): 10} if file_first else {0: 30})


def test_a_request_seen_again_weeks_later_is_another_request(fresh: Store) -> None:
    """The ingest's rule, on the otel_traces path too: the same id more than a week from a stored row is
    another request (an id a provider reused), stored and counted."""
    assert fresh.clickhouse is not None
    clickhouse = connect(fresh.clickhouse)
    clickhouse.command(traces_table_ddl("exact.otel_traces"))
    assert link_traces(clickhouse, store_link(clickhouse.layout)) == "linked"
    clickhouse.command(insert_spans(_spans(0, 3, START_NS), "exact.otel_traces"))
    later = START_NS + 8 * 86_400 * 1_000_000_000
    clickhouse.command(insert_spans(_spans(0, 3, later), "exact.otel_traces"))
    assert set(_rows_per_key(fresh).values()) == {2}
    assert _exact(fresh), _difference(fresh)


def test_a_discarded_ingest_leaves_the_rollups_exact(fresh: Store) -> None:
    """A delete is not an insert: no view sees it, so the rollup buckets the discarded rows were in are
    summed again from the rows left."""
    kept = _file([f"kept-{i}" for i in range(30)], datetime(2025, 3, 3, 12, 10))
    gone = _file([f"gone-{i}" for i in range(20)], datetime(2025, 3, 3, 12, 20))
    assert _ingest(fresh, kept, "kept.jsonl") == 30 and _ingest(fresh, gone, "gone.jsonl") == 20
    discard_source(fresh, _source(fresh, "gone.jsonl"))
    assert len(_rows_per_key(fresh)) == 30
    assert _exact(fresh), _difference(fresh)
    with open_usage(fresh) as usage:
        assert usage.rows("SELECT sum(requests)::BIGINT FROM rollup_spend") == [(30,)]
    assert _ingest(fresh, gone, "gone.jsonl") == 20  # and stored again, counted again
    assert _exact(fresh), _difference(fresh)


def test_relinking_otel_traces_with_another_attribution_leaves_the_rollups_exact(fresh: Store) -> None:
    assert fresh.clickhouse is not None
    clickhouse = connect(fresh.clickhouse)
    clickhouse.command(traces_table_ddl("exact.otel_traces"))
    clickhouse.command(insert_spans(_spans(0, 12, START_NS), "exact.otel_traces"))
    assert link_traces(clickhouse, store_link(clickhouse.layout)) == "linked"
    relinked = store_link(clickhouse.layout, {"team": "service.name"})
    assert link_traces(clickhouse, relinked, relink=True) == "relinked"
    assert len(_rows_per_key(fresh)) == 12
    assert _exact(fresh), _difference(fresh)
    with open_usage(fresh) as usage:
        assert usage.rows("SELECT team, sum(requests)::BIGINT FROM rollup_spend GROUP BY team") == [
            ("checkout", 12)
        ]


def test_key_lookups_read_through_the_record_key_index(fresh: Store) -> None:
    """What every write's lookup of stored keys uses (migration 4): the bloom filter on record_key."""
    assert _ingest(fresh, _file([f"req-{i}" for i in range(40)], datetime(2025, 3, 3, 12, 10))) == 40
    assert fresh.clickhouse is not None
    plan = connect(fresh.clickhouse).arrow(
        "EXPLAIN indexes = 1 SELECT record_key FROM exact.usage WHERE record_key IN ('req-1', 'req-9')"
    )
    assert any(RECORD_KEY_INDEX in line for line in plan.column(0).to_pylist())
