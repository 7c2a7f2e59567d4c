"""The scheduler for real: APScheduler triggers, the emulator as a uvicorn server, a DuckDB file in tmp_path.

Each test runs the schedule for a few seconds with short intervals and then checks what `job_runs` (and the
tables the jobs fill) hold. Nothing is mocked.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from collectors.scheduler import CatalogSource, ScheduleRunner, load_schedule, log_ingest
from storage.jobs import JobRun

CATALOG = CatalogSource(Path(__file__).resolve().parents[2] / "data" / "catalog")
SALT = "test-salt"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(ttft_ms=20, tokens_per_s=400, output_tokens=8)) as server:
        yield server


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class Recorder:
    """Collects runs as the runner reports them (from its worker threads)."""

    def __init__(self) -> None:
        self.runs: list[JobRun] = []
        self.notices: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, run: JobRun) -> None:
        with self._lock:
            self.runs.append(run)

    def of(self, job_id: str) -> list[JobRun]:
        with self._lock:
            return [r for r in self.runs if r.job_id == job_id]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting for the scheduler"
            time.sleep(0.05)


def make_runner(
    tmp_path: Path, endpoints: dict[str, str], schedule: str, settings: str = ""
) -> tuple[ScheduleRunner, Recorder]:
    model = EmulatorConfig().model
    blocks = [
        f'[[endpoint]]\nname = "{name}"\nbase_url = "{url}"\nmodel = "{model}"\nconnect_timeout_s = 2\n'
        for name, url in endpoints.items()
    ]
    (tmp_path / "endpoints.toml").write_text("\n".join(blocks))
    (tmp_path / "schedule.toml").write_text(
        f'[scheduler]\nendpoints = "endpoints.toml"\n{settings}\n{schedule}'
    )
    recorder = Recorder()
    runner = ScheduleRunner(
        load_schedule(tmp_path / "schedule.toml"),
        tmp_path / "q.duckdb",
        catalog=CATALOG,
        ingest=log_ingest(SALT),
        on_run=recorder,
        on_notice=recorder.notices.append,
    )
    runner.prepare()
    return runner, recorder


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def log_lines(first: int, count: int) -> str:
    return "".join(
        json.dumps(
            {
                "id": f"chatcmpl-{i}",
                "object": "chat.completion",
                "created": 1_763_900_000 + i,
                "model": "deepseek-chat",
                "usage": {"prompt_tokens": 100 + i, "completion_tokens": 20, "total_tokens": 120 + i},
            }
        )
        + "\n"
        for i in range(first, first + count)
    )


def total(runs: list[JobRun], key: str) -> int:
    """A count summed over runs that ran (skipped runs have no counts)."""
    return sum(int(r.summary.get(key, 0)) for r in runs)


def in_background(runner: ScheduleRunner, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=runner.run, args=(stop,), name="scheduler-under-test")
    thread.start()
    return thread


@pytest.mark.slow
def test_every_run_is_recorded_and_a_failing_job_does_not_stop_the_others(
    tmp_path: Path, emulator: EmulatorServer, refused_url: str
) -> None:
    (tmp_path / "incoming").mkdir()
    runner, recorder = make_runner(
        tmp_path,
        {"emu": emulator.base_url, "down": refused_url},
        """
[[probe]]
endpoint = "emu"
interval = { seconds = 1 }
requests = 3
max_tokens = 8

[[probe]]
endpoint = "down"
interval = { seconds = 1 }
requests = 2

[[watch]]
folder = "incoming"
interval = { seconds = 0.5 }
settle_s = 0.2

[catalog]
interval = { seconds = 1.2 }
""",
    )
    started = time.monotonic()
    runner.run(threading.Event(), for_seconds=4.5)
    assert time.monotonic() - started < 10

    db = tmp_path / "q.duckdb"
    recorded = rows(db, "SELECT run_id, job_id, outcome, error, duration_ms, summary FROM job_runs")
    assert len(recorded) == len(recorder.runs) == runner.recorded
    assert {r[0] for r in recorded} == {r.run_id for r in recorder.runs}
    by_job: dict[str, list[tuple[object, ...]]] = {}
    for row in recorded:
        by_job.setdefault(str(row[1]), []).append(row)
    # every job ran several times in a few seconds, the failing probe too
    assert {job: len(v) >= 3 for job, v in by_job.items()} == {
        "probe:emu": True,
        "probe:down": True,
        "watch:incoming": True,
        "catalog": True,
    }
    ran = {job: [r for r in v if r[2] != "skipped"] for job, v in by_job.items()}
    assert all(r[2] == "ok" for r in ran["probe:emu"])
    assert all(r[2] == "ok" for r in ran["watch:incoming"] + ran["catalog"])
    assert ran["probe:down"] and all(r[2] == "error" for r in ran["probe:down"])
    error = str(ran["probe:down"][0][3])
    assert error.startswith("no request succeeded: 2 connection") and "\n" not in error
    assert all(float(str(r[4])) > 0 for job in ran.values() for r in job)
    # each probe run (ok or failed) stored its probe run, which the job run points to
    probe_ids = {str(r[0]) for r in rows(db, "SELECT run_id FROM probe_runs")}
    pointed = {json.loads(str(r[5]))["probe_run_id"] for r in ran["probe:emu"] + ran["probe:down"]}
    assert pointed == probe_ids
    emu_summary = json.loads(str(ran["probe:emu"][0][5]))
    assert (emu_summary["requests"], emu_summary["ok"]) == (3, 3)
    # the catalog's prices were written once (first run), later runs found the files unchanged
    catalog_runs = [json.loads(str(r[5])) for r in ran["catalog"]]
    assert catalog_runs[0]["snapshot_rows"] > 0 and all(c["snapshot_rows"] is None for c in catalog_runs[1:])
    assert rows(db, "SELECT count(*) FROM catalog_prices")[0][0] == catalog_runs[0]["snapshot_rows"]


@pytest.mark.slow
def test_a_file_dropped_in_while_running_is_ingested_exactly_once(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    schedule = """
[[watch]]
folder = "incoming"
interval = { seconds = 0.3 }
settle_s = 0.5
incomplete_line_s = 30
"""
    runner, recorder = make_runner(tmp_path, {}, schedule)
    stop = threading.Event()
    thread = in_background(runner, stop)
    try:
        recorder.wait_for(lambda: len(recorder.of("watch:incoming")) >= 1)
        # a writer appends in two steps; the first ends mid-record and stays that way past settle_s
        text = log_lines(0, 40)
        cut = text.index("\n", len(text) // 2) + 30
        path = incoming / "requests.jsonl"
        path.write_text(text[:cut])
        recorder.wait_for(lambda: any(r.summary.get("files_waiting") for r in recorder.of("watch:incoming")))
        time.sleep(0.8)  # longer than settle_s: only the missing final newline holds it back
        assert total(recorder.of("watch:incoming"), "files_read") == 0
        with path.open("a") as handle:
            handle.write(text[cut:])
        recorder.wait_for(lambda: total(recorder.of("watch:incoming"), "stored") == 40)
        runs_after = len(recorder.of("watch:incoming"))
        recorder.wait_for(lambda: len(recorder.of("watch:incoming")) >= runs_after + 3)  # scans go on
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()

    db = tmp_path / "q.duckdb"
    watch = recorder.of("watch:incoming")
    assert {r.outcome for r in watch} <= {"ok", "skipped"}
    assert total(watch, "files_read") == 1
    assert total(watch, "read") == 40
    assert total(watch, "duplicates") + total(watch, "rejected") == 0
    assert rows(db, "SELECT count(*), count(DISTINCT record_key) FROM usage") == [(40, 40)]
    assert rows(db, "SELECT count(*) FROM rejects") == [(0,)]
    assert rows(db, "SELECT count(*) FROM job_runs WHERE job_id = 'watch:incoming'") == [(len(watch),)]

    # the file grows: the next scheduler reads it again, stores only the new records
    with path.open("a") as handle:
        handle.write(log_lines(40, 5))
    (incoming / "other.jsonl").write_text(log_lines(100, 3))
    time.sleep(0.6)
    again, recorder = make_runner(tmp_path, {}, schedule)
    again.run_once(threading.Event())
    (run,) = recorder.runs
    assert run.outcome == "ok"
    assert (run.summary["files_read"], run.summary["read"], run.summary["stored"]) == (2, 48, 8)
    assert run.summary["duplicates"] == 40
    assert rows(db, "SELECT count(*), count(DISTINCT record_key) FROM usage") == [(48, 48)]
    # and a third one finds nothing new
    third, recorder = make_runner(tmp_path, {}, schedule)
    third.run_once(threading.Event())
    assert recorder.runs[0].summary["files_read"] == 0 and recorder.runs[0].summary["files_unchanged"] == 2


def test_a_broken_file_is_an_error_once_and_not_retried_until_it_changes(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "good.jsonl").write_text(log_lines(0, 5))
    (incoming / "notes.log").write_text("deploy went fine\nnothing to see\n")  # not a usage log
    time.sleep(0.3)
    schedule = '[[watch]]\nfolder = "incoming"\nsettle_s = 0.1\n'
    runner, recorder = make_runner(tmp_path, {}, schedule)
    runner.run_once(threading.Event())
    (run,) = recorder.runs
    assert run.outcome == "error"
    assert run.error is not None and run.error.startswith("1 file(s) failed: notes.log: ")
    assert (run.summary["files_read"], run.summary["stored"]) == (1, 5)  # the good file went in anyway
    runner, recorder = make_runner(tmp_path, {}, schedule)
    runner.run_once(threading.Event())
    assert recorder.runs[0].outcome == "ok" and recorder.runs[0].summary["files_unchanged"] == 2


@pytest.mark.slow
def test_a_busy_job_is_never_run_twice_at_once_and_the_skips_are_recorded(tmp_path: Path) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=700, tokens_per_s=400, output_tokens=4)) as slow:
        runner, recorder = make_runner(
            tmp_path,
            {"slow": slow.base_url},
            '[[probe]]\nendpoint = "slow"\ninterval = { seconds = 0.25 }\nrequests = 2\nmax_tokens = 4\n',
        )
        stop = threading.Event()
        thread = in_background(runner, stop)
        try:
            recorder.wait_for(lambda: sum(r.outcome == "ok" for r in recorder.of("probe:slow")) >= 2)
        finally:
            stop.set()
            thread.join(timeout=30)
    runs = recorder.of("probe:slow")
    done = sorted((r for r in runs if r.outcome != "skipped"), key=lambda r: r.started_at)
    skipped = [r for r in runs if r.outcome == "skipped"]
    assert len(done) >= 2
    assert all(r.outcome == "ok" for r in done)
    for before, after in itertools.pairwise(done):
        assert after.started_at >= before.finished_at  # one instance at a time
    busy = "its previous run had not ended (or not started: no free worker); one run at a time"
    assert sum(r.error == busy for r in skipped) >= 3
    # a run handed to the pool as the stop came is skipped for that reason instead
    assert {r.error for r in skipped} <= {busy, "the scheduler was stopping"}
    assert all(r.scheduled_at is not None for r in runs)
    db = tmp_path / "q.duckdb"
    assert rows(db, "SELECT count(*) FROM job_runs WHERE outcome = 'skipped'") == [(len(skipped),)]


@pytest.mark.slow
def test_a_run_that_waits_too_long_for_a_worker_is_skipped_as_missed(tmp_path: Path) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=3_000, output_tokens=2)) as slow:
        runner, recorder = make_runner(
            tmp_path,
            {"slow": slow.base_url},
            '[[probe]]\nendpoint = "slow"\ninterval = { minutes = 5 }\nrequests = 1\nmax_tokens = 2\n'
            "[catalog]\ninterval = { seconds = 0.5 }\nrun_on_start = false\n",
            settings="workers = 1\nmisfire_grace_s = 1",
        )
        stop = threading.Event()
        thread = in_background(runner, stop)
        try:
            recorder.wait_for(lambda: any(r.outcome == "ok" for r in recorder.of("catalog")))
        finally:
            stop.set()
            thread.join(timeout=30)
    (probe,) = recorder.of("probe:slow")
    assert probe.outcome == "ok"  # it held the only worker for about three seconds
    catalog = recorder.of("catalog")
    missed = [r for r in catalog if r.error and r.error.startswith("it could not start within 1 s")]
    assert len(missed) == 1 and missed[0].outcome == "skipped"
    assert missed[0].scheduled_at is not None and missed[0].scheduled_at < probe.finished_at
    # while that run sat in the queue, later triggers were refused rather than queued behind it
    assert any(r.outcome == "skipped" and r.error and "no free worker" in r.error for r in catalog)
    assert any(r.outcome == "ok" and r.started_at > probe.finished_at for r in catalog)  # then it ran again


def test_missed_runs_are_coalesced_into_one(tmp_path: Path) -> None:
    runner, recorder = make_runner(tmp_path, {}, "[catalog]\ninterval = { seconds = 0.2 }\n")
    scheduler = runner.build_scheduler()
    (job,) = scheduler.get_jobs()
    assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 60)
    scheduler.start(paused=True)  # the process was stalled: five run times pass unserved
    time.sleep(1.0)
    resumed_at = datetime.now(UTC).replace(tzinfo=None)
    scheduler.resume()
    recorder.wait_for(lambda: bool(recorder.of("catalog")))
    time.sleep(0.3)  # time enough for the other four, had they not been folded into one
    scheduler.shutdown(wait=True)
    runs = recorder.of("catalog")
    timed = sorted((r.scheduled_at, r.outcome) for r in runs if r.scheduled_at is not None)
    assert len(timed) == len(runs)  # one submission per run, each with its time
    # the five missed times became the first run; the rest are the regular schedule (how many, and whether
    # one was skipped while the first still ran, depends on this machine's speed), each for its own time
    times = [t for t, _ in timed]
    assert times[0] < resumed_at + timedelta(seconds=0.2) and timed[0][1] == "ok"
    assert all(b - a >= timedelta(seconds=0.19) for a, b in itertools.pairwise(times))


@pytest.mark.slow
def test_stopping_cancels_a_probe_that_outlives_the_grace_period(tmp_path: Path) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=30_000)) as stalled:
        runner, recorder = make_runner(
            tmp_path,
            {"stalled": stalled.base_url},
            '[[probe]]\nendpoint = "stalled"\ninterval = { minutes = 5 }\n'
            "[catalog]\ninterval = { minutes = 5 }\n",
            settings="shutdown_grace_s = 0.5",
        )
        stop = threading.Event()
        thread = in_background(runner, stop)
        recorder.wait_for(lambda: len(recorder.of("catalog")) == 1)
        time.sleep(0.3)  # the probe is now waiting for its first token
        began = time.monotonic()
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive()
        assert time.monotonic() - began < 5
    (probe,) = recorder.of("probe:stalled")
    assert probe.outcome == "error"
    assert probe.error == "cancelled because the scheduler was stopping; results of this run were not stored"
    assert recorder.notices == ["cancelling probe:stalled: still running after 0.5 s"]
    db = tmp_path / "q.duckdb"
    assert rows(db, "SELECT job_id, outcome FROM job_runs ORDER BY job_id") == [
        ("catalog", "ok"),
        ("probe:stalled", "error"),
    ]
    assert rows(db, "SELECT count(*) FROM probe_runs") == [(0,)]  # no half run


def test_unreadable_files_are_failed_with_their_reason_and_the_good_ones_go_on(tmp_path: Path) -> None:
    import gzip

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    packed = gzip.compress(log_lines(100, 50).encode())
    (incoming / "a_cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (incoming / "b_deep.json").write_text("[" * 10_000 + "]" * 10_000 + "\n")
    (incoming / "c_binary.log").write_bytes(bytes(range(256)) * 8 + b"\n")
    (incoming / "d_huge_count.jsonl").write_text(
        log_lines(200, 1).replace('"prompt_tokens": 300', f'"prompt_tokens": {2**63 - 1}') + log_lines(201, 2)
    )
    (incoming / "e_good.jsonl").write_text(log_lines(0, 5))
    time.sleep(0.3)
    schedule = '[[watch]]\nfolder = "incoming"\nsettle_s = 0.1\n'
    runner, recorder = make_runner(tmp_path, {}, schedule)
    runner.run_once(threading.Event())
    (run,) = recorder.runs
    assert run.outcome == "error" and run.error is not None and run.error.startswith("3 file(s) failed")
    failed = "\n".join(run.summary["failed"])
    assert "a_cut.jsonl.gz: " in failed and "gzip data ends early" in failed
    assert "b_deep.json: " in failed and "c_binary.log: " in failed
    # a bad line is a reject, not a failed file: its neighbours and the good file are stored
    assert run.summary["files_read"] == 2 and run.summary["rejected"] >= 2
    stored = rows(tmp_path / "q.duckdb", "SELECT count(*) FROM usage")[0][0]
    assert (
        stored == run.summary["stored"] > 5 + 2
    )  # the good file, the bad line's neighbours, the cut .gz's lines
    recorded = rows(tmp_path / "q.duckdb", "SELECT error FROM job_runs")
    assert "failed" in str(recorded[0][0])
    marks = rows(tmp_path / "q.duckdb", "SELECT path, state, error FROM watched_files ORDER BY path")
    assert [(Path(str(p)).name, s) for p, s, _ in marks][:3] == [
        ("a_cut.jsonl.gz", "failed"),
        ("b_deep.json", "failed"),
        ("c_binary.log", "failed"),
    ]
    assert all(e for _, s, e in marks if s == "failed")
    # unchanged: not read again; changed: read again
    runner, recorder = make_runner(tmp_path, {}, schedule)
    runner.run_once(threading.Event())
    assert recorder.runs[0].outcome == "ok" and recorder.runs[0].summary["files_unchanged"] == 5
    (incoming / "a_cut.jsonl.gz").write_bytes(packed)
    time.sleep(0.3)
    runner, recorder = make_runner(tmp_path, {}, schedule)
    runner.run_once(threading.Event())
    (again,) = recorder.runs
    assert again.outcome == "ok" and again.summary["files_read"] == 1 and again.summary["stored"] > 0
