"""The receiver's spool (`--spool DIR`): requests acknowledged once spooled, committed after in large batches,
and what a kill -9 leaves spooled stored at the next start, every acknowledged span exactly once."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from collectors.otlp import OtlpOptions, OtlpServer
from collectors.otlp.server import SPOOLED_BATCH_SPANS, SPOOLED_MAX_PENDING_SPANS
from collectors.otlp.spool import Entry, Spool, SpoolError, encode
from collectors.otlp.writer import GATHER_S, QUIET_S, SpanBatcher, SpanWriter
from storage.db import StorageError, open_read
from storage.usage import Reject, SourceRun
from tests.collectors.otlp_support import llm_attributes, request_of
from tests.quotascope.test_otlp_cli import endpoint_from, start

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def body(first: int, count: int, *, refused: int | None = None) -> bytes:
    attributes = [llm_attributes(n) for n in range(first, first + count)]
    if refused is not None:  # reasoning over output: refused with that reason
        attributes[refused]["gen_ai.usage.reasoning.output_tokens"] = 10_000
    return request_of(attributes, start_ns=1_765_000_000_000_000_000 + first * 1_000_000).SerializeToString()


def stored(db: Path) -> tuple[int, int]:
    with open_read(db) as con:  # waits its turn: the receiver keeps the file between close batches
        row = con.execute("SELECT count(*), count(DISTINCT record_key) FROM usage").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_spooled_requests_are_acknowledged_before_their_commit(tmp_path: Path) -> None:
    db, held = tmp_path / "spool.duckdb", threading.Lock()
    options = OtlpOptions(port=0, linger_s=0.0, spool=tmp_path / "spool")
    with OtlpServer(db, "salt", options, lock=held) as server:
        with held:  # the database is another writer's: nothing can commit
            first = httpx.post(
                server.endpoint + "/v1/traces", content=body(0, 5, refused=2), headers=PROTOBUF
            )
            assert first.status_code == 200  # acknowledged: it is in the spool
            assert b"reasoning" in first.content  # the partial success says what was refused, and why
            assert server.writer.pending_spans == 5  # spooled, not yet committed
            assert stored(db) == (0, 0)  # the file is ready (migrated at start), nothing in it
        assert server.writer.wait_stored(30)
        assert stored(db) == (4, 4)
        again = httpx.post(server.endpoint + "/v1/traces", content=body(0, 5, refused=2), headers=PROTOBUF)
        assert again.status_code == 200
        assert server.writer.wait_stored(30)
    assert stored(db) == (4, 4)  # the retry stored nothing new
    with open_read(db) as con:
        assert con.execute("SELECT count(*) FROM rejects").fetchone() == (2,)  # one per request


def test_a_spool_is_one_receivers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    try:
        with pytest.raises(SpoolError, match="another receiver"):
            Spool(tmp_path / "spool")
    finally:
        spool.close()


def test_a_torn_entry_ends_the_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append(encode(None, [Reject(1, "no model name", "")]))
    end = spool.append(encode(None, [Reject(2, "no model name", "")]))
    spool.close()
    segment = tmp_path / "spool" / f"{end.segment:010d}.seg"
    segment.write_bytes(segment.read_bytes()[:-3])  # the last write was cut short by a kill
    again = Spool(tmp_path / "spool")
    try:
        assert [r.line_no for entry in again.replay() for r in entry.rejects] == [1]
    finally:
        again.close()


def test_entries_appended_together_replay_in_order_across_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The syncer appends the batches checked meanwhile with one fsync: each keeps its place and its end,
    a segment filled on the way included (the next run replays them all, in order)."""
    import collectors.otlp.spool as spool_module

    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 150)  # a new segment after every entry or two
    spool = Spool(tmp_path / "spool")
    frames = [encode(None, [Reject(n, "no model name", "x" * 40)]) for n in range(1, 8)]
    ends = spool.append_many(frames[:3]) + spool.append_many(frames[3:])
    spool.close()
    assert ends == sorted(ends, key=lambda p: (p.segment, p.offset)) and len({e.segment for e in ends}) > 2
    again = Spool(tmp_path / "spool")
    try:
        replayed = list(again.replay())
        assert [r.line_no for entry in replayed for r in entry.rejects] == list(range(1, 8))
        assert [entry.end for entry in replayed] == ends
    finally:
        again.close()


class _CountingWriter(SpanWriter):
    """The receiver's writer, counting the drain's commits (how many spooled entries each held)."""

    commits: list[int]

    def _commit(self, run: SourceRun, entries: list[Entry]) -> SourceRun:
        self.commits.append(len(entries))
        return super()._commit(run, entries)


def test_requests_spooled_while_more_keep_coming_share_one_commit(tmp_path: Path) -> None:
    """The drain lets spooled requests gather while more keep coming (`GATHER_S`), so requests arriving
    a little apart are committed together, not one transaction each; every span is stored once."""
    _CountingWriter.commits = []
    db = tmp_path / "usage.duckdb"
    # as the server makes it with a spool: each request checked and spooled as it comes (no linger)
    writer = _CountingWriter(db, "salt", origin="otlp://test", linger_s=0.0, spool=Spool(tmp_path / "spool"))
    batcher = SpanBatcher({})
    answers = []
    try:
        warm = writer.submit(batcher.prepare_protobuf(body(1000, 10)))  # the checks' first-call costs
        warm.result(timeout=30)
        assert writer.wait_stored(60)
        _CountingWriter.commits = []
        started = time.monotonic()
        for r in range(12):
            answers.append(writer.submit(batcher.prepare_protobuf(body(r * 10, 10))))
            time.sleep(QUIET_S / 3)  # closer together than the drain waits for the next
        assert all(not a.result(timeout=30) for a in answers)  # acknowledged, nothing refused
        assert writer.wait_stored(60)
        took = time.monotonic() - started
    finally:
        writer.close()
    if took < GATHER_S:  # a loaded machine may space the requests wider than the drain waits
        assert len(_CountingWriter.commits) <= 2 < sum(_CountingWriter.commits), _CountingWriter.commits
    with open_read(db) as con:
        assert con.execute("SELECT count(*), count(DISTINCT record_key) FROM usage").fetchone() == (130, 130)


def receiver(db: Path, spool: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    process = start(["otlp", "--db", str(db), "--port", "0", "--spool", str(spool)], tmp_path)
    return process, endpoint_from(process.stdout)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def test_kill_9_while_the_database_is_held_loses_no_acknowledged_span(tmp_path: Path) -> None:
    """Acknowledged, spooled, not committed when the receiver is killed: its drain process ends with it (not
    even one that cannot commit keeps trying, holding the spool and the database), and the next start
    stores what was acknowledged, once."""
    db, spool = tmp_path / "otlp.duckdb", tmp_path / "spool"
    process, endpoint = receiver(db, spool, tmp_path)
    stop(process)  # the database exists
    holder = subprocess.Popen(  # another process holds the database for writing: no commit can happen
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('held', flush=True); "
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        process, endpoint = receiver(db, spool, tmp_path)
        drain = drain_of(process.pid)
        for n in range(4):
            answer = httpx.post(
                endpoint + "/v1/traces", content=body(n * 100, 100), headers=PROTOBUF, timeout=30
            )
            assert answer.status_code == 200
        process.kill()  # SIGKILL: acknowledged, spooled, not committed
        process.communicate(timeout=30)
        assert ended(drain, 5)
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    process, _ = receiver(db, spool, tmp_path)  # replays the spool before it serves
    out = stop(process)
    assert stored(db) == (400, 400)
    with duckdb.connect(str(db), read_only=True) as con:
        sources = con.execute("SELECT path, rows_stored FROM sources ORDER BY source_id").fetchall()
    assert any(path.endswith("(spool replay)") and n == 400 for path, n in sources), (sources, out)


def test_kill_9_at_a_random_moment_leaves_every_acknowledged_span_stored_once(tmp_path: Path) -> None:
    db, spool = tmp_path / "otlp.duckdb", tmp_path / "spool"
    process, endpoint = receiver(db, spool, tmp_path)
    acknowledged: list[int] = []  # first span number of each request answered 200
    stopping = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = worker
            while not stopping.is_set():
                try:
                    answer = client.post(endpoint + "/v1/traces", content=body(n * 50, 50), headers=PROTOBUF)
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    acknowledged.append(n)
                n += 4

    senders = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for sender in senders:
        sender.start()
    time.sleep(3.0)
    process.kill()
    process.communicate(timeout=30)
    stopping.set()
    for sender in senders:
        sender.join(timeout=60)
    assert len(acknowledged) >= 4
    process, _ = receiver(db, spool, tmp_path)
    stop(process)
    with duckdb.connect(str(db), read_only=True) as con:
        keys = {k for (k,) in con.execute("SELECT record_key FROM usage").fetchall()}
        total = con.execute("SELECT count(*) FROM usage").fetchone()
    assert total == (len(keys),)  # nothing twice
    wanted = {f"chatcmpl-{n * 50 + i:024d}" for n in acknowledged for i in range(50)}
    assert not wanted - keys  # every acknowledged span is there


def test_spooled_spans_the_database_cannot_take_turn_exporters_away_with_503(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"  # a folder where the database file should be: nothing can commit
    folder.mkdir()
    options = OtlpOptions(port=0, linger_s=0.0, max_pending_spans=3, spool=tmp_path / "spool")
    with OtlpServer(folder, "salt", options) as server:
        url = server.endpoint + "/v1/traces"
        assert httpx.post(url, content=body(0, 3), headers=PROTOBUF).status_code == 200  # spooled
        deadline = time.monotonic() + 30
        while server.writer.failing is None and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = httpx.post(url, content=body(10, 1), headers=PROTOBUF)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
    # what was acknowledged stays spooled for the next start (the stop gave up on the database)
    again = Spool(tmp_path / "spool")
    try:
        assert sum(entry.records for entry in again.replay()) == 3
    finally:
        again.close()


def test_kill_9_while_the_drain_keeps_the_database_open_loses_nothing_committed(tmp_path: Path) -> None:
    """The drain keeps its connection across batches (and `IDLE_S` after): a batch it committed and marked
    is in DuckDB's write-ahead log, not yet checkpointed, when the kill comes (unless the machine is slow
    enough for the drain to have closed the file first); the next start finds it stored and has nothing to
    replay."""
    db, spool = tmp_path / "otlp.duckdb", tmp_path / "spool"
    process, endpoint = receiver(db, spool, tmp_path)
    with httpx.Client(timeout=30) as client:
        for n in range(6):
            answer = client.post(endpoint + "/v1/traces", content=body(n * 200, 200), headers=PROTOBUF)
            assert answer.status_code == 200
    segment = max(spool.glob("*.seg"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the drain has committed and marked everything spooled
        mark = spool / "committed"
        if mark.exists():
            where = mark.read_text()
            if f'"offset": {segment.stat().st_size}' in where and f'"segment": {int(segment.stem)}' in where:
                break
        time.sleep(0.005)
    else:
        raise AssertionError("the drain did not commit the spooled requests")
    process.kill()  # within IDLE_S of the last commit: the connection is (almost always) still open
    process.communicate(timeout=30)
    process, _ = receiver(db, spool, tmp_path)
    stop(process)
    assert stored(db) == (1200, 1200)
    with open_read(db) as con:
        paths = [path for (path,) in con.execute("SELECT path FROM sources").fetchall()]
    assert not any(path.endswith("(spool replay)") for path in paths)  # nothing was left to replay


def drain_of(receiver_pid: int) -> int:
    """The receiver's drain process (`collectors.otlp.drain`): its one child process."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = [
            int(pid)
            for task in Path(f"/proc/{receiver_pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        if children:
            (child,) = children
            return child
        time.sleep(0.05)
    raise AssertionError("the receiver has no drain process")


def ended(pid: int, timeout_s: float) -> bool:
    """Whether the process has exited (gone, or a zombie no one reaped) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_killed_drain_process_is_started_again_and_every_span_is_stored_once(tmp_path: Path) -> None:
    """`quotascope otlp --spool` commits in a process of its own; killed (-9) while requests keep coming,
    it is started again, replays from the committed mark, and the receiver keeps acknowledging."""
    db, spool = tmp_path / "otlp.duckdb", tmp_path / "spool"
    process, endpoint = receiver(db, spool, tmp_path)
    first = drain_of(process.pid)
    with httpx.Client(timeout=30) as client:
        for n in range(10):
            answer = client.post(endpoint + "/v1/traces", content=body(n * 100, 100), headers=PROTOBUF)
            assert answer.status_code == 200
            if n == 4:
                subprocess.run(["kill", "-9", str(first)], check=True)
                assert ended(first, 10)
    second = drain_of(process.pid)
    assert second != first
    out = stop(process)
    assert stored(db) == (1000, 1000)
    # the counts the drains reported (one killed between a commit and its report counts it as duplicates)
    found = re.search(r"stored ([\d,]+) \+ duplicates ([\d,]+)", out)
    assert found is not None, out
    counted, duplicates = (int(group.replace(",", "")) for group in found.groups())
    assert counted <= 1000 <= counted + duplicates
    assert ended(second, 10)  # the drain stopped with the receiver


def test_spooled_options_are_what_quotascope_otlp_spool_runs(tmp_path: Path) -> None:
    """`--spool` runs the drain in its own process with the large bounds (pending spans wait on disk, not in
    memory); an option given explicitly still wins."""
    options = OtlpOptions.spooled(tmp_path / "spool", port=0, max_pending_spans=3)
    assert options.drain_process and options.spool == tmp_path / "spool"
    assert options.max_pending_spans == 3 and options.batch_spans == SPOOLED_BATCH_SPANS
    assert OtlpOptions.spooled(tmp_path).max_pending_spans == SPOOLED_MAX_PENDING_SPANS > 100_000
    assert not OtlpOptions(port=0).drain_process


def test_a_replay_the_database_cannot_take_stops_the_start_and_keeps_the_spool(tmp_path: Path) -> None:
    """What an earlier run acknowledged is stored before the receiver serves; when the database cannot take
    it, the start fails with why (holding neither the spool nor the port), and the next start stores it."""
    folder = tmp_path / "spool"
    earlier = Spool(folder)
    earlier.append(encode(None, [Reject(1, "an LLM call without token counts", "")]))
    earlier.close()
    not_a_file = tmp_path / "db"
    not_a_file.mkdir()
    with pytest.raises(StorageError, match="earlier entries cannot be stored"):
        OtlpServer(not_a_file, "salt", OtlpOptions.spooled(folder, port=0))
    db = tmp_path / "u.duckdb"
    with OtlpServer(db, "salt", OtlpOptions.spooled(folder, port=0)):
        pass
    with open_read(db) as con:
        rows = con.execute("SELECT reason FROM rejects").fetchall()
        sources = con.execute(
            "SELECT rows_read, rows_rejected FROM sources WHERE path LIKE '%replay%'"
        ).fetchall()
    assert rows == [("an LLM call without token counts",)] and sources == [(1, 1)]
