"""The spool's drain in a process of its own: spooled entries -> the database, beside the receiver.

With a spool, the receiver acknowledges a request once its checked rows are fsynced there; committing them to
the database is the drain's work. Run in the receiver's process, the drain's Python (each commit's statements
and rollups) takes the interpreter's lock from the threads that answer exporters; here it runs in a process
of its own (the drain process, started and watched by `DrainProcess`):

- it holds the spool's `drain.lock` (flock) while it runs: a drain still ending when a new receiver starts
  finishes before the new receiver's drain begins;
- it stores the entries after the `committed` mark in the segments of earlier runs first (the replay, under a
  source of its own), says `replayed`, then follows this run's segments up to where the receiver says they
  are fsynced (`durable`), committing what has gathered in batches of up to `batch_spans` records, one
  transaction each, through `storage.usage.store_batch`; after each commit it moves the `committed` mark and
  tells the receiver (`committed`, with the counts), which stops counting those spans against
  `max_pending_spans`;
- when the receiver says `stop` it stores everything it was told is durable and exits; when the pipe closes
  without it (the receiver was killed) it ends at once, as if killed itself. After a kill of either process
  the next drain starts from the `committed` mark, and entries committed but not marked are stored again
  under their record keys (the database skips them): every acknowledged span is stored exactly once. The
  receiver starts a new drain if its drain ends while it runs.

Messages are JSON lines: the receiver writes `{"durable": [segment, offset]}` and `{"stop": true}`; the
drain writes `{"replayed": true}`, `{"committed": [segment, offset], "records": n, "read": n, "stored": n,
"duplicates": n, "rejected": n}` and `{"failing": "why"}`. Nothing in them is span content.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from collectors.otlp.spool import (
    Entry,
    Position,
    entries_in,
    mark_committed,
    read_mark,
    segment_path,
    segments,
)
from storage.db import StorageError, WriteSession
from storage.store import StoreLike, as_store
from storage.usage import RECEIVER_FORMAT, SourceRun, store_batch

log = logging.getLogger("quotascope.otlp")

IDLE_S = 0.2  # how long the drain keeps the database open with nothing to store
# The drain's timing, in this process or in a thread of the receiver's (`collectors.otlp.writer`, which
# imports it). A commit's cost is mostly per statement (each rollup's insert, the key lookup, the commit
# itself): 20,000 rows stored at 8.5 us a row, 250,000 at 3.4 us, on one DuckDB thread. When the drain finds
# nothing waiting after a commit, how long it lets newly spooled requests gather into one commit while more
# keep coming (none for `QUIET_S`: it commits). After a commit that others arrived during, under load, a
# batch is what arrived since the previous commit started, and at least `BATCH_S` of it: a commit's fixed
# cost is then paid per a quarter second of traffic at most, yet the last commit after a burst holds little
# more than what arrived during the one before.
GATHER_S = 1.0
QUIET_S = 0.05
BATCH_S = 0.25


@dataclass(frozen=True)
class DrainConfig:
    store: StoreLike
    folder: Path
    first_segment: int  # this run's first segment: the ones before are earlier runs' (replayed whole)
    origin: str
    batch_spans: int


def source_run(path: str) -> SourceRun:
    """The source row of what the receiver (or its spool's replay) stores."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return SourceRun(path=path, size_bytes=0, format=RECEIVER_FORMAT, tags={}, started_at=now)


class _Tail:
    """The spool's entries in order from the committed mark: the earlier runs' segments to their end (or a
    torn entry), this run's up to what the receiver said is fsynced."""

    def __init__(self, folder: Path, first_segment: int) -> None:
        self.folder = folder
        self.first_segment = first_segment
        self.at = read_mark(folder)

    def earlier(self) -> list[Entry]:
        out: list[Entry] = []
        for segment in segments(self.folder):
            if self.at.segment <= segment < self.first_segment:
                start = self.at.offset if segment == self.at.segment else 0
                out.extend(entries_in(segment_path(self.folder, segment).read_bytes(), start, segment))
        if self.at.segment < self.first_segment:
            self.at = Position(self.first_segment, 0)
        return out

    def until(self, durable: Position) -> list[Entry]:
        out: list[Entry] = []
        while (self.at.segment, self.at.offset) < (durable.segment, durable.offset):
            segment = self.at.segment
            with segment_path(self.folder, segment).open("rb") as data:
                data.seek(self.at.offset)
                wanted = durable.offset - self.at.offset if segment == durable.segment else -1
                chunk = data.read(wanted)
            entries = list(entries_in(chunk, 0, segment))
            out.extend(
                Entry(e.rows, e.rejects, Position(segment, self.at.offset + e.end.offset)) for e in entries
            )
            if segment == durable.segment:
                self.at = durable
            else:  # a segment the receiver filled and closed (fsynced) before it went on to the next
                self.at = Position(segment + 1, 0)
        return out


class _Drain:
    """The drain process's state: what the receiver said is durable, and the database session."""

    def __init__(self, config: DrainConfig, out: IO[str]) -> None:
        self.config = config
        self.out = out
        self.session = WriteSession(as_store(config.store).db)
        self.tail = _Tail(config.folder, config.first_segment)
        self.cond = threading.Condition()
        self.durable = Position(config.first_segment, 0)
        self.told = 0.0  # when the receiver last said more is durable (monotonic)
        self.stopping = False

    def say(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def listen(self, source: IO[str]) -> None:
        """The receiver's messages, until it closes the pipe (it stops, or died)."""
        for line in source:
            message = json.loads(line)
            if message.get("stop"):
                with self.cond:
                    self.stopping = True
                    self.cond.notify_all()
                return
            where = message["durable"]
            with self.cond:
                self.durable = Position(int(where[0]), int(where[1]))
                self.told = time.monotonic()
                self.cond.notify_all()
        # the pipe closed without a stop: the receiver died (a kill). Ending here, even in a commit, is what
        # a kill of this process would do (the next start replays from the mark); going on would hold the
        # spool and the database past the receiver that owned them
        os._exit(0)

    def commit(self, run: SourceRun, entries: list[Entry], *, patient: bool = True) -> SourceRun:
        """One batch in one transaction, then the mark moved and the receiver told (tries until it
        commits; when stopping, or not `patient`, gives up after 3 failures: the next start replays what is
        left)."""
        delay, failures = 0.1, 0
        tables = [e.rows for e in entries if e.rows is not None]
        rejects = [r for e in entries for r in e.rejects]
        while True:
            try:
                run, counts = store_batch(self.config.store, run, tables, rejects, session=self.session)
                break
            except Exception as e:  # spooled and acknowledged: kept, and tried again until it commits
                if not isinstance(e, StorageError | OSError):
                    log.exception("storing spooled spans failed")
                self.say({"failing": str(e)})
                failures += 1
                if (self.stopping or not patient) and failures >= 3:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        end = entries[-1].end
        mark_committed(self.config.folder, end)
        self.say(
            {
                "committed": [end.segment, end.offset],
                "records": sum(e.records for e in entries),
                "read": counts.read,
                "stored": counts.stored,
                "duplicates": counts.duplicates,
                "rejected": counts.rejected,
            }
        )
        return run

    def commit_all(self, run: SourceRun, entries: list[Entry], *, patient: bool = True) -> SourceRun:
        group: list[Entry] = []
        for entry in entries:
            group.append(entry)
            if sum(e.records for e in group) >= self.config.batch_spans:
                run, group = self.commit(run, group, patient=patient), []
        return self.commit(run, group, patient=patient) if group else run

    def wait_for_work(self, backlog: bool, last_commit: float) -> tuple[Position, bool]:
        """Where the receiver has fsynced to once there is something to store, and whether the receiver
        has stopped: when entries were already waiting after the last commit (which started at
        `last_commit`), once `BATCH_S` have passed since it started; else gathering while more keep coming."""
        started = time.monotonic()
        closed = False
        with self.cond:
            while True:
                now = time.monotonic()
                waiting = self.durable != self.tail.at
                if self.stopping or (
                    waiting
                    and (
                        (backlog and now - last_commit >= BATCH_S)
                        or now - started >= GATHER_S
                        or now - self.told >= QUIET_S
                    )
                ):
                    return self.durable, self.stopping
                if not closed and now - started >= IDLE_S:  # readers have their turn
                    closed = True
                    self.session.close()
                self.cond.wait(QUIET_S)

    def run(self) -> None:
        replayed = self.tail.earlier()
        if replayed:  # before the receiver serves: a database that cannot be written stops its start
            try:
                self.commit_all(source_run(f"{self.config.origin} (spool replay)"), replayed, patient=False)
            except Exception as e:
                self.say({"unavailable": str(e)})
                return
        self.say({"replayed": True})
        run = source_run(self.config.origin)
        backlog = False
        last_commit = time.monotonic()
        while True:
            durable, stopping = self.wait_for_work(backlog, last_commit)
            last_commit = time.monotonic()
            entries = self.tail.until(durable)
            if entries:
                run = self.commit_all(run, entries)
            with self.cond:
                backlog = self.durable != self.tail.at
            if stopping and not backlog:
                self.session.close()
                return


def main() -> int:
    """the drain process: its configuration is stdin's first line (from `DrainProcess`)."""
    logging.basicConfig(level=logging.WARNING, format="quotascope otlp drain: %(message)s")
    # the receiver stops it (by closing the pipe) once it has stopped taking requests: a Ctrl-C or a
    # supervisor's SIGTERM sent to the whole group must not cut its last commits short
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    config = pickle.loads(base64.b64decode(sys.stdin.readline()))
    assert isinstance(config, DrainConfig)
    with (config.folder / "drain.lock").open("a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a drain left by a killed receiver finishes first
        drain = _Drain(config, sys.stdout)
        threading.Thread(target=drain.listen, args=(sys.stdin,), daemon=True).start()
        try:
            drain.run()
        except Exception as e:  # it could not commit while stopping: the next start replays the spool
            log.warning("stopping with spooled spans not yet stored (kept for the next start): %s", e)
    return 0


class DrainProcess:
    """The receiver's side: starts the drain process, tells it what is fsynced, hears what it committed,
    and starts it again if it ends while the receiver runs (a kill: the new one replays from the mark)."""

    def __init__(
        self,
        config: DrainConfig,
        *,
        on_committed: Callable[[Position, dict[str, int]], None],
        on_failing: Callable[[str], None],
    ) -> None:
        self.config = config
        self.on_committed = on_committed
        self.on_failing = on_failing
        self._lock = threading.Lock()  # the pipe to the process, and `durable`
        self._durable: Position | None = None
        self._closing = False
        self._replayed = threading.Event()
        self._unavailable: str | None = None  # why the replay could not be stored (the drain then ends)
        self.process = self._start()
        self._listener = threading.Thread(target=self._listen, name="quotascope-otlp-drain-pipe", daemon=True)
        self._listener.start()

    def _start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            # `-m` would run this module as __main__, a second copy of it whose DrainConfig is another class
            [sys.executable, "-c", "import sys; from collectors.otlp.drain import main; sys.exit(main())"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert process.stdin is not None
        process.stdin.write(base64.b64encode(pickle.dumps(self.config)).decode() + "\n")
        if self._durable is not None:
            process.stdin.write(json.dumps({"durable": [self._durable.segment, self._durable.offset]}) + "\n")
        process.stdin.flush()
        return process

    def wait_replayed(self) -> None:
        """Wait until the entries earlier runs left are stored (before the receiver serves); raises
        `StorageError` when they cannot be."""
        self._replayed.wait()
        if self._unavailable is not None:
            self.close()
            raise StorageError(f"the spool's earlier entries cannot be stored: {self._unavailable}")

    def durable(self, position: Position) -> None:
        """The spool is fsynced up to `position`."""
        with self._lock:
            self._durable = position
            stdin = self.process.stdin
            assert stdin is not None
            try:
                stdin.write(json.dumps({"durable": [position.segment, position.offset]}) + "\n")
                stdin.flush()
            except (BrokenPipeError, ValueError):  # it ended: the listener starts another, told where
                pass

    def _listen(self) -> None:
        while True:
            stdout = self.process.stdout
            assert stdout is not None
            for line in stdout:
                message = json.loads(line)
                if "committed" in message:
                    segment, offset = message.pop("committed")
                    self.on_committed(Position(segment, offset), message)
                elif "failing" in message:
                    self.on_failing(str(message["failing"]))
                elif message.get("replayed"):
                    self._replayed.set()
                elif "unavailable" in message:
                    self._unavailable = str(message["unavailable"])
                    with self._lock:
                        self._closing = True
            code = self.process.wait()
            with self._lock:
                if self._closing:
                    self._replayed.set()
                    return
                log.warning("the spool's drain process ended (code %s); starting another", code)
                _close_pipes(self.process)
                time.sleep(0.5)
                self.process = self._start()

    def close(self) -> None:
        """Let the drain store everything fsynced, and wait for it to end."""
        with self._lock:
            self._closing = True
            stdin = self.process.stdin
            if stdin is not None:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    stdin.write(json.dumps({"stop": True}) + "\n")
                    stdin.close()
        self._listener.join()
        _close_pipes(self.process)


def _close_pipes(process: subprocess.Popen[str]) -> None:
    """The pipes to an ended drain process (a broken one raises nothing: there is nobody left to tell)."""
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
