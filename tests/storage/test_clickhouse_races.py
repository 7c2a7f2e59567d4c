"""Two writers storing the same request at the same moment on a ClickHouse store (`storage.settle`): both
pass the key lookup, both insert, and the rollup views sum both copies. After the race the store holds each
request once: one row to `usage FINAL`, and every rollup as read by the reports equal to its definition
re-run over `usage FINAL`, to the cent (spend and profile rollups), and equal to a DuckDB file that stored
the same records once.

The race is driven through the real write path: the first writer's insert is held until the second writer
(another machine: another DuckDB file beside the same ClickHouse database) has looked up, inserted and
counted the same records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from collectors.scheduler import CatalogSource, ScheduleRunner, load_schedule
from storage import clickhouse as clickhouse_module
from storage import rollups
from storage.clickhouse import ClickHouse, connect
from storage.db import open_read
from storage.normalise import Reject
from storage.otel_traces import link_traces, store_link
from storage.profiles import read_usage_profiles
from storage.replay import UsageFilter
from storage.reports import spend_report
from storage.settle import SURPLUS_TABLE, corrected, settle_keys, settle_recent, surplus_of
from storage.store import ClickHouseTarget, Store
from storage.usage import SourceRun, discard_source, store_batch
from storage.usage_reader import open_usage
from tests.collectors.ingest_support import catalog
from tests.collectors.otlp_support import START_NS
from tests.storage.otel_support import insert_spans, traces_table_ddl
from tests.storage.test_clickhouse_rollup_reads import _file, _ingest, _rows_per_key, _source, _spans

DATABASE = "races"
AT = datetime(2025, 3, 3, 12, 10)


@pytest.fixture
def machines(chdb_folder: Path, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two machines: each its own DuckDB file, both beside one ClickHouse database (dropped afterwards)."""
    target = ClickHouseTarget("chdb", database=DATABASE, path=chdb_folder)
    yield Store(tmp_path / "a.duckdb", target), Store(tmp_path / "b.duckdb", target)
    clickhouse_module._connections.pop(target).command(f"DROP DATABASE IF EXISTS {DATABASE}")


def _clickhouse(store: Store) -> ClickHouse:
    assert store.clickhouse is not None
    return connect(store.clickhouse)


def _racing(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> list[str]:
    """Hold the next insert into usage until `meanwhile` ran (another writer's whole write, say): the
    holding writer's lookup ran before, and found nothing. Returns the tables inserted into, in order."""
    insert = ClickHouse.insert
    inserted: list[str] = []

    def held(self: ClickHouse, table: str, data: pa.Table, *, token: str) -> None:
        if table == "usage" and not inserted:
            inserted.append("held")
            meanwhile()
        inserted.append(table)
        insert(self, table, data, token=token)

    monkeypatch.setattr(ClickHouse, "insert", held)
    return inserted


def _read_difference(store: Store) -> dict[str, int]:
    """Per rollup, the keys whose sums as every read sees them (`rollups.covering`'s relation on
    ClickHouse) differ from the definition re-run over `usage FINAL`, or whose first and last request
    times do not hold the definition's. The times of a key a surplus copy shared with kept rows stay those
    of every copy (a min or max cannot be subtracted): wider, never narrower, so `covering` only sums such
    a bucket from its rows when a period cuts the wider span (with bins, a surplus copy often shares its
    key)."""
    differences = {}
    with open_usage(store) as usage:
        for rollup in rollups.ROLLUPS:
            stored = rollup.merged(corrected(usage, rollup, rollups.SEED_BANDS))
            fresh = rollup.select("usage", rollups.SEED_BANDS)
            sums = ", ".join([*rollup.key_names, *(m.name for m in rollup.measures if m.merge == "sum")])
            on = " AND ".join(f"s.{k} IS NOT DISTINCT FROM f.{k}" for k in rollup.key_names)
            rows = usage.rows(
                f"SELECT count(*) FROM ((SELECT {sums} FROM ({stored})) "
                f"EXCEPT ALL (SELECT {sums} FROM ({fresh}))) "
                f"UNION ALL SELECT count(*) FROM ((SELECT {sums} FROM ({fresh})) "
                f"EXCEPT ALL (SELECT {sums} FROM ({stored}))) "
                f"UNION ALL SELECT count(*) FROM ({stored}) AS s JOIN ({fresh}) AS f ON {on} "
                "WHERE s.first_ts > f.first_ts OR s.last_ts < f.last_ts"
            )
            differences[rollup.name] = sum(int(r[0]) for r in rows)
    return differences


def _stored_requests(store: Store) -> int:
    """The requests the spend rollup's table holds, as its view summed them (no correction)."""
    with open_usage(store) as usage:
        return int(usage.rows("SELECT sum(requests)::BIGINT FROM rollup_spend")[0][0] or 0)


def _reports(store: Store) -> tuple[list[Any], list[Any]]:
    """Spend by team and model, and the token profiles by provider and model, as the reports read them."""
    spend = [r.to_json() for r in spend_report(store, catalog(), UsageFilter(), ("team", "model"))]
    profiles = read_usage_profiles(store, UsageFilter(), ("provider", "model"))
    shown = [
        (key, p.requests, p.input_tokens, p.output_tokens, p.ttft_ms, p.cached_share)
        for key, p in sorted(profiles.items())
    ]
    return spend, shown


def _once(tmp_path: Path, *tables: pa.Table) -> tuple[list[Any], list[Any]]:
    """The reports of a DuckDB file that stored each of `tables` once."""
    duck = Store(tmp_path / "once.duckdb")
    for i, table in enumerate(tables):
        assert _ingest(duck, table, f"once-{i}.jsonl") == table.num_rows
    return _reports(duck)


def test_two_ingests_of_one_file_at_once_store_and_count_each_request_once(
    machines: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each machine's first run: different ids all the same (`storage.usage.shared_source_id`), so the
    second insert is not taken for a retry of the first (the insert token names the run's id)."""
    a, b = machines
    table = _file([f"req-{i}" for i in range(40)], AT)
    inserted = _racing(monkeypatch, lambda: _ingest(b, table) and None)
    assert _ingest(a, table) == 40  # a's lookup ran before b's insert: both store every record
    assert set(_rows_per_key(a).values()) == {1} and len(_rows_per_key(a)) == 40
    assert _stored_requests(a) == 80  # the views summed both inserts ...
    assert not any(_read_difference(a).values()), _read_difference(a)  # ... every read subtracts one
    assert _reports(a) == _once(tmp_path, table)
    assert inserted == ["held", "usage", "usage", SURPLUS_TABLE]  # b inserted, then a, which settled


def test_an_ingest_racing_the_otel_traces_view_counts_each_request_once(
    machines: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The exporter's block of spans lands between a log ingest's lookup and its insert (the view's own
    lookup found nothing yet): the ingest's count after its insert finds both copies. The span and the
    log line differ in time and team, so `usage FINAL` held both rows too: the log's, later, is deleted."""
    a, _ = machines
    clickhouse = _clickhouse(a)
    clickhouse.command(traces_table_ddl(f"{DATABASE}.otel_traces"))
    assert link_traces(clickhouse, store_link(clickhouse.layout)) == "linked"
    spans = _spans(0, 30, START_NS)
    logged_at = datetime(2025, 12, 6, 5, 46, 43)  # three seconds after the first span started
    logged = _file([f"chatcmpl-{n:024d}" for n in range(10, 20)], logged_at, "gpt-4o-2024-08-06", "openai")
    _racing(monkeypatch, lambda: clickhouse.command(insert_spans(spans, f"{DATABASE}.otel_traces")))
    assert _ingest(a, logged) == 10
    per_key = _rows_per_key(a)
    assert len(per_key) == 30 and set(per_key.values()) == {1}
    assert _stored_requests(a) == 40
    assert not any(_read_difference(a).values()), _read_difference(a)
    with open_usage(a) as usage:  # of a span and a log line, the earlier stays, whoever inserted last
        kept = dict(usage.rows("SELECT record_key, ts FROM usage"))
        surplus = usage.rows(f"SELECT record_key, ts, source_id FROM {SURPLUS_TABLE}")
    assert len(surplus) == 10 and all(ts > kept[key] for key, ts, _ in surplus)
    spend, _ = _reports(a)
    assert sum(int(r["requests"]) for r in spend) == 30


def test_the_otel_traces_view_inserting_after_an_ingest_counted_is_settled_by_the_recent_inserts(
    machines: tuple[Store, Store], tmp_path: Path
) -> None:
    """The view's insert may commit after the ingest counted its copies (its lookup ran before the
    ingest's insert): no quotascope process follows the view, so `settle_recent` counts the copies of every
    key inserted since a time (`quotascope traces` and the schedule run it)."""
    a, _ = machines
    clickhouse = _clickhouse(a)
    table = _file([f"req-{i}" for i in range(20)], AT)
    since = datetime.now()
    assert _ingest(a, table) == 20
    # the view's rows of the same requests, as its SELECT wrote them after its lookup found none
    clickhouse.insert("usage", table.add_column(0, "source_id", pa.array([0] * 20, pa.int64())), token="view")
    assert _stored_requests(a) == 40 and any(_read_difference(a).values())
    runner = _schedule(tmp_path, a)  # `quotascope schedule` with a ClickHouse store counts them every 5 min
    assert "settle-copies" in {job.id for job in runner.build_scheduler().get_jobs()}
    assert runner.settle_copies() == 20
    assert settle_recent(clickhouse, since) == 0  # settled: nothing found again, nothing recorded twice
    assert set(_rows_per_key(a).values()) == {1}
    assert not any(_read_difference(a).values()), _read_difference(a)
    assert _reports(a) == _once(tmp_path, table)


def _schedule(tmp_path: Path, store: Store) -> ScheduleRunner:
    (tmp_path / "schedule.toml").write_text("[catalog]\ninterval = { minutes = 60 }\n")
    runner = ScheduleRunner(
        load_schedule(tmp_path / "schedule.toml"),
        store.db,
        catalog=CatalogSource(Path(__file__).resolve().parents[2] / "data" / "catalog"),
        usage=store.clickhouse,
    )
    runner.prepare()
    return runner


def test_a_writer_killed_before_counting_is_settled_by_the_next_lookup_and_twice_is_once(
    machines: tuple[Store, Store], tmp_path: Path
) -> None:
    """The later writer is killed between its insert and its count: the copies stay until a lookup meets
    them (the file ingested again, on either machine), which settles them; settling again, or by two
    writers, records every surplus copy once."""
    a, b = machines
    clickhouse = _clickhouse(a)
    table = _file([f"req-{i}" for i in range(30)], AT)
    assert _ingest(a, table) == 30
    clickhouse.insert("usage", table.add_column(0, "source_id", pa.array([5] * 30, pa.int64())), token="b")
    assert any(_read_difference(a).values())
    assert _ingest(b, table) == 0  # b's lookup finds every record, twice: settled
    assert not any(_read_difference(a).values()), _read_difference(a)
    assert settle_keys(clickhouse, [f"req-{i}" for i in range(30)], AT, AT + timedelta(minutes=1)) == 0
    # two writers that counted at once both record the same copies: one row each to every FINAL read
    recorded = clickhouse.arrow(f"SELECT * FROM {DATABASE}.{SURPLUS_TABLE}")
    clickhouse.insert(SURPLUS_TABLE, recorded.slice(0, 20), token="another-writer")
    with open_usage(a) as usage:
        assert usage.rows(f"SELECT count(*)::BIGINT FROM {SURPLUS_TABLE}") == [(30,)]  # FINAL: once each
    assert not any(_read_difference(a).values()), _read_difference(a)
    assert _reports(a) == _once(tmp_path, table)


def test_copies_a_merge_folded_into_one_row_before_anyone_counted_are_still_settled(
    machines: tuple[Store, Store], tmp_path: Path
) -> None:
    """Two copies of one sort key are one row after usage's next merge: if that merge comes before any
    writer counted them, usage no longer shows the second copy, but the rollups summed it. The insert log
    (ClickHouse migration 9) still holds both identities: the next count settles them."""
    a, _ = machines
    clickhouse = _clickhouse(a)
    table = _file([f"req-{i}" for i in range(30)], AT)
    assert _ingest(a, table) == 30
    # another writer's copies (its lookup ran before a's insert), and the merge that folds them, all before
    # that writer counted
    clickhouse.insert("usage", table.add_column(0, "source_id", pa.array([5] * 30, pa.int64())), token="b")
    clickhouse.command(f"OPTIMIZE TABLE {DATABASE}.usage FINAL")
    with open_usage(a) as usage:
        assert usage.rows("SELECT count(*)::BIGINT FROM usage") == [(30,)]  # not FINAL: merged
    assert _stored_requests(a) == 60 and any(_read_difference(a).values())
    assert settle_recent(clickhouse, AT) == 30
    assert not any(_read_difference(a).values()), _read_difference(a)
    assert _reports(a) == _once(tmp_path, table)


def test_discarding_either_racing_ingest_afterwards_keeps_the_rollups_exact(
    machines: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A discard sums its buckets again from the rows and the surplus copies left: whichever run is
    discarded, the other's copy is what usage and every rollup read hold, and with both gone, nothing."""
    a, b = machines
    table = _file([f"req-{i}" for i in range(25)], AT)
    _racing(monkeypatch, lambda: _ingest(b, table) and None)
    assert _ingest(a, table) == 25
    discard_source(a, _source(a, "usage.jsonl"))  # the copies FINAL showed (a's, inserted last): b's,
    assert len(_rows_per_key(a)) == 25  # the surplus, are left
    assert not any(_read_difference(a).values()), _read_difference(a)
    assert _reports(a) == _once(tmp_path, table)
    discard_source(b, _source(b, "usage.jsonl"))
    assert not _rows_per_key(a)
    assert not any(_read_difference(a).values()), _read_difference(a)
    with open_usage(a) as usage:
        assert usage.rows("SELECT sum(requests)::BIGINT FROM rollup_spend") == [(None,)]


def test_a_file_discarded_and_ingested_again_is_no_copy_of_its_discarded_rows(
    machines: tuple[Store, Store], tmp_path: Path
) -> None:
    """The insert log forgets the rows a discard deletes: the file ingested again is stored and counted
    once, not settled against its own discarded rows."""
    a, _ = machines
    table = _file([f"req-{i}" for i in range(20)], AT)
    assert _ingest(a, table) == 20
    discard_source(a, _source(a, "usage.jsonl"))
    assert _ingest(a, table) == 20
    assert settle_recent(_clickhouse(a), datetime.now() - timedelta(hours=1)) == 0
    assert not any(_read_difference(a).values()), _read_difference(a)
    assert _reports(a) == _once(tmp_path, table)


def _copy(key: str, at: datetime, source: int, inserted: int, team: str = "search") -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "gpt-4o",
        "team": team,
        "record_key": key,
        "ts": at,
        "source_id": source,
        "inserted_at": datetime(2025, 1, 1) + timedelta(microseconds=inserted),
    }


def test_which_copy_stays_does_not_depend_on_merges_or_who_looks() -> None:
    """The earliest time's sort key stays, with the row FINAL shows of it; a merge that already folded
    copies of one sort key, or a third copy arriving, changes nothing decided before."""
    first = _copy("k", AT, 1, 5)
    twin = _copy("k", AT, 2, 9)
    later = _copy("k", AT + timedelta(seconds=3), 0, 1, team="checkout")
    copies = [later, twin, first]
    # FINAL shows the last inserted of each sort key: `twin` of the earliest one
    assert surplus_of(copies, [twin, later]) == ([2, 0], [0])
    # after a merge kept `twin` alone of the earliest sort key: the same surplus less what is gone
    assert surplus_of([later, twin], [twin, later]) == ([0], [0])
    # a copy more than a week later is another request, not a copy
    assert surplus_of([first, _copy("k", AT + timedelta(days=8), 2, 1)], [first]) == ([], [])


def test_a_discard_on_one_machine_leaves_another_machines_runs(machines: tuple[Store, Store]) -> None:
    """Each machine numbers its runs in its own DuckDB file; on a shared ClickHouse store their ids are
    drawn at random (`storage.usage.shared_source_id`), so a discard of a run on one machine deletes that
    run's rows only, however many runs each machine made, and each file's counts add up on each machine."""
    a, b = machines
    files = {
        machine: [
            (f"{name}-{n}.jsonl", _file([f"{name}-{n}-{i}" for i in range(10 + n)], AT + timedelta(hours=n)))
            for n in range(3)
        ]
        for machine, name in ((a, "a"), (b, "b"))
    }
    for machine, runs in files.items():
        for path, table in runs:
            run = SourceRun(path, 0, "test", {}, datetime(2025, 1, 1))
            # the file read again in a second batch: every record a duplicate; one line refused
            run, _ = store_batch(machine, run, [table], [])
            store_batch(machine, run, [table], [Reject(99, "no model name", "{}")], finished_hash="h")
    ids = {machine: [_source(machine, path) for path, _ in runs] for machine, runs in files.items()}
    assert not set(ids[a]) & set(ids[b])  # with the files' sequences, both would be 1, 2, 3
    discard_source(a, ids[a][1])
    kept = _rows_per_key(a)
    assert len(kept) == 10 + 12 + 10 + 11 + 12  # a's second run gone, all of b's there
    assert not any(key.startswith("a-1-") for key in kept)
    assert all(f"b-{n}-{i}" in kept for n in range(3) for i in range(10 + n))
    assert not any(_read_difference(a).values()), _read_difference(a)
    for machine in (a, b):
        with open_read(machine.db) as con:
            counts = con.execute(
                "SELECT path, rows_read, rows_stored, rows_duplicate, rows_rejected FROM sources"
            ).fetchall()
        for path, read, stored, duplicate, rejected in counts:
            size = 10 + int(path.split("-")[1][0])
            assert (read, stored, duplicate, rejected) == (2 * size + 1, size, size, 1), path
            assert read == stored + duplicate + rejected
