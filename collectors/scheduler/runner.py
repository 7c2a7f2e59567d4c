"""Running the schedule: APScheduler triggers, one wrapper that runs and records every job, a clean stop.

Jobs run in APScheduler's thread pool (`BackgroundScheduler`), one instance of a job at a time
(`max_instances=1`); runs missed while the job was busy or the process was stalled are coalesced into one
(`coalesce=True`), and a run that cannot start within `misfire_grace_s` of its time is skipped. Every run -
done, failed, skipped or cancelled - becomes one `job_runs` row: a job's exception is caught and recorded as
one sentence, so one failing job never stops the others.

Stopping (`stop` set, e.g. by SIGINT/SIGTERM): no new run starts; running jobs get `shutdown_grace_s` to
finish (a folder watch stops between files), then probes are cancelled (their event loop is told to cancel,
the HTTP client closes) and recorded as such. Every database write is one transaction, so whatever moment
the stop comes, the database holds whole batches only.

Probe jobs run the probe's asyncio code on an event loop of their own inside the worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor as Pool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collectors.ingest import IngestOptions, ingest_paths
from collectors.otlp import OtlpOptions, OtlpServer
from collectors.prices.genai import ensure_base_layer
from collectors.probe import EndpointError, make_client, run_probe
from collectors.pull import AdminKey, PullResult, new_client, pull, pull_kind
from collectors.scheduler.config import (
    CatalogJob,
    Cron,
    Interval,
    Job,
    ProbeJob,
    PullJob,
    ScheduleConfig,
    WatchJob,
)
from collectors.scheduler.watch import scan_folder
from models.catalog import Catalog
from models.errors import InputError, QuotascopeError
from models.outside_text import redact_secrets
from models.probe import ProbeRun, summarize
from models.reconcile import DEFAULT_THRESHOLD
from storage.catalog import BASE_KEY, load_catalog
from storage.db import StorageError, open_write
from storage.jobs import FileMark, JobRun, Outcome, file_marks, write_file_marks, write_job_run
from storage.probes import write_probe_run
from storage.pulls import day_start
from storage.reconcile import GapAlert, reconcile_report, record_gap_alerts, set_gap_webhook_status
from storage.store import ClickHouseTarget, Store, StoreLike
from storage.usage import snapshot_catalog

T = TypeVar("T")
MAX_ERROR_CHARS = 400
LATE_CANCEL_WAIT_S = 120.0  # after cancelling, how long to wait for jobs that cannot be interrupted


SETTLE_EVERY_MINUTES = 5  # a ClickHouse store's copies settled (`ScheduleRunner.settle_copies`)


@dataclass(frozen=True, slots=True)
class IngestCounts:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    # why the file, or its rest, could not be read (its records before that are counted above): the watcher
    # marks it failed and reads it again only once it changes
    unreadable: str | None = None


class Ingest(Protocol):
    """Ingest one file into the database idempotently (a record already stored is counted a duplicate)."""

    def __call__(
        self, db: StoreLike, path: Path, *, format: str, tags: Mapping[str, str]
    ) -> IngestCounts: ...


def log_ingest(salt: str) -> Ingest:
    """`quotascope ingest`'s pipeline for one file at a time, with the local salt for hashing user ids."""

    def ingest(db: StoreLike, path: Path, *, format: str, tags: Mapping[str, str]) -> IngestCounts:
        results = ingest_paths(db, [path], salt=salt, tags=tags, options=IngestOptions(format=format))
        return IngestCounts(
            sum(r.counts.read for r in results),
            sum(r.counts.stored for r in results),
            sum(r.counts.duplicates for r in results),
            sum(r.counts.rejected for r in results),
            next((r.unreadable for r in results if r.unreadable), None),
        )

    return ingest


@dataclass(frozen=True, slots=True)
class CatalogSource:
    """Where the catalog comes from: the shipped folder and the user's files on top."""

    folder: Path
    user_files: tuple[Path, ...] = ()
    base_dir: Path | None = None  # the genai-prices base layer's folder (None: the files alone)

    def files(self) -> list[Path]:
        shipped = sorted(self.folder.glob("*.toml")) if self.folder.is_dir() else []
        base = [self.base_dir / BASE_KEY] if self.base_dir is not None else []  # a refreshed base layer
        return [*shipped, *self.user_files, *base]

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(str(path).encode() + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<unreadable>")
        return digest.hexdigest()

    def load(self) -> Catalog:
        if self.base_dir is not None:
            ensure_base_layer(self.base_dir, datetime.now(UTC).date())
        return load_catalog(self.folder, list(self.user_files), self.base_dir)


class Cancelled(Exception):
    """The run was cancelled because the scheduler is stopping."""


class RunToken:
    """One running job: lets another thread cancel it (an asyncio task) or ask it to stop early."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._lock = threading.Lock()

    def run_async(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on a fresh event loop in this thread, cancellable from others."""

        async def main() -> T:
            with self._lock:
                if self.cancelled:
                    raise Cancelled
                self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            try:
                return await make()
            finally:
                with self._lock:
                    self._loop = self._task = None

        try:
            return asyncio.run(main())
        except asyncio.CancelledError:
            raise Cancelled from None

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)


class _NotingExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler's thread pool, noting each submission's scheduled time for the job to record.

    With `max_instances=1` a job has at most one submission in flight, so its id is a safe key.
    """

    def __init__(self, workers: int, note: Callable[[str, datetime], None]) -> None:
        super().__init__(workers)
        self._note = note

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._note(job.id, run_times[-1])
        super()._do_submit_job(job, run_times)

    def join(self) -> None:
        """Wait until every submitted run has ended and been recorded (after `shutdown(wait=False)`)."""
        self._pool.shutdown(wait=True)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class _Outcome:
    outcome: Outcome = "ok"
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    marks: list[FileMark] = field(default_factory=list)


class ScheduleRunner:
    """Runs a `ScheduleConfig` against one database until told to stop; see the module docstring."""

    def __init__(
        self,
        config: ScheduleConfig,
        db: Path,
        *,
        catalog: CatalogSource,
        ingest: Ingest | None = None,
        on_run: Callable[[JobRun], None] = lambda run: None,
        on_notice: Callable[[str], None] = lambda text: None,
        session_id: str | None = None,
        salt: str | None = None,
        gap_threshold: Decimal = DEFAULT_THRESHOLD,
        deliver_gap_alerts: Callable[[list[GapAlert]], dict[int, str]] | None = None,
        usage: ClickHouseTarget | None = None,
    ) -> None:
        self.config = config
        self.salt = salt  # hashes user ids of the OTLP receiver's spans and of pulled usage
        self.db = Path(db)
        self.store = Store(
            self.db, usage
        )  # usage (watched folders, the OTLP receiver) in ClickHouse if given
        self.catalog_source = catalog
        self.ingest = ingest
        self.on_run = on_run
        self.on_notice = on_notice
        self.session_id = session_id or uuid.uuid4().hex
        self._admin_keys: dict[str, AdminKey] = {}
        self.gap_threshold = gap_threshold
        self.deliver_gap_alerts = deliver_gap_alerts  # sends billing-gap alerts (a webhook), by alert id
        self._catalog: Catalog | None = None
        self._catalog_fingerprint: str | None = None
        self._marks: dict[str, dict[str, FileMark]] = {}
        self._secrets: tuple[str, ...] = ()
        self._stopping = threading.Event()
        self._cancel_now = threading.Event()
        self._active: dict[str, RunToken] = {}
        self._active_changed = threading.Condition()
        self._scheduled: dict[str, datetime] = {}
        self._executor: _NotingExecutor | None = None  # the pool of the running APScheduler
        self._recorded = 0
        self._snapshotted = False  # catalog_prices written by this session
        self._otlp_token: str | None = None
        self.otlp: OtlpServer | None = None  # the receiver while `run` runs
        # The ingest skips records already stored by reading `usage` in its write transaction; two ingests
        # in one process would not see each other's uncommitted rows, so they take turns.
        self._ingest_lock = threading.Lock()
        self._settled_at: datetime | None = None  # when the last count of racing copies began

    # ---------------------------------------------------------------------------------------- lifecycle

    def prepare(self) -> None:
        """Check what can be checked before the first run; one clear sentence if something is wrong.

        Reads each probe's API key once (an unset variable stops the start, naming it) and keeps the values
        only to scrub them from error sentences; loads the catalog; creates/migrates the database.
        """
        secrets = []
        for job in self.config.probes:
            key = job.endpoint.api_key()
            if key:
                secrets.append(key)
        for pull_job in self.config.pulls:  # an unset variable stops the start, naming it
            self._admin_keys[pull_job.id] = AdminKey.from_env(pull_job.admin_key_env)
            secrets.append(self._admin_keys[pull_job.id].value())
        if self.config.pulls and not self.salt:
            raise InputError("a [[pull]] job needs the salt that hashes user ids, and none was given")
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        self._catalog_fingerprint = self.catalog_source.fingerprint()
        self._catalog = self.catalog_source.load()
        for job in self.config.probes:
            endpoint = job.endpoint
            if endpoint.offer:
                try:
                    self._catalog.get(endpoint.offer)
                except InputError as e:
                    raise EndpointError(
                        str(e), origin=endpoint.origin, endpoint=endpoint.name, field="offer"
                    ) from None
        if self.config.watches and self.ingest is None:
            raise InputError("a [[watch]] job needs the ingest, and none was given")
        if self.config.otlp is not None:
            if self.salt is None:
                raise InputError("the [otlp] receiver needs the salt, and none was given")
            variable = self.config.otlp.token_env
            if variable is not None:
                self._otlp_token = os.environ.get(variable, "").strip() or None
                if self._otlp_token is None:
                    raise InputError(f"[otlp] token_env names {variable}, which is not set (or empty)")
                secrets.append(self._otlp_token)
                self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        with open_write(self.db):
            pass  # every migration applied before the first job (threads then never race on them)
        self._marks = file_marks(self.db, [job.id for job in self.config.watches])

    def stop(self) -> None:
        """Ask for a clean stop: nothing new starts, running jobs get the grace period."""
        self._stopping.set()

    def cancel_running(self) -> None:
        """Stop now: cancel running probes without waiting out the grace period."""
        self._stopping.set()
        self._cancel_now.set()
        self._cancel_all()

    @property
    def recorded(self) -> int:
        return self._recorded

    def build_scheduler(self) -> BackgroundScheduler:
        """An APScheduler with every job added (not started): one instance each, misfires coalesced."""
        logging.getLogger("apscheduler").addHandler(logging.NullHandler())  # we report skips ourselves
        self._executor = _NotingExecutor(self.config.workers, self._note_scheduled)
        scheduler = BackgroundScheduler(timezone=self.config.timezone, executors={"default": self._executor})
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        now = datetime.now(UTC)
        for job in self.config.jobs:
            options: dict[str, Any] = {}
            if job.run_on_start:
                options["next_run_time"] = now
            scheduler.add_job(
                self._scheduled_run,
                trigger=self._trigger(job),
                args=[job],
                id=job.id,
                name=job.id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=self.config.misfire_grace_s,
                **options,
            )
        if self.store.clickhouse is not None:  # where no quotascope process follows a write (otel_traces)
            scheduler.add_job(
                self.settle_copies,
                trigger=IntervalTrigger(minutes=SETTLE_EVERY_MINUTES),
                id="settle-copies",
                name="settle copies",
                max_instances=1,
                coalesce=True,
                next_run_time=now,
            )
        return scheduler

    def settle_copies(self) -> int:
        """Settle the copies of a request two writers stored in the ClickHouse store at the same moment
        (`storage.settle.settle_recent`: the `otel_traces` view racing an ingest), inserted since the last
        run began (with a margin for the server's clock; the last day at the first run); says how many, or
        why it could not."""
        from storage.clickhouse import LINK_CLOCK_SLACK, connect
        from storage.settle import RECENT, settle_recent

        assert self.store.clickhouse is not None
        began = datetime.now(UTC)
        since = began - RECENT if self._settled_at is None else self._settled_at - LINK_CLOCK_SLACK
        try:
            settled = settle_recent(connect(self.store.clickhouse), since)
        except StorageError as e:
            self.on_notice(f"settling copies: {self._sentence(e)}")
            return 0
        self._settled_at = began
        if settled:
            self.on_notice(f"settled {settled:,} surplus copies of requests two writers stored at once")
        return settled

    def start_otlp(self) -> OtlpServer | None:
        """Start the [otlp] receiver on its own thread; it shares the ingest's turn-taking lock."""
        service = self.config.otlp
        if service is None:
            return None
        assert self.salt is not None, "prepare() checks the salt"
        options = OtlpOptions(
            host=service.host,
            port=service.port,
            token=self._otlp_token,
            attribution=service.attributes,
            max_body_bytes=service.max_body_bytes,
            shutdown_grace_s=self.config.shutdown_grace_s,
            spool=service.spool,
        )
        self.otlp = OtlpServer(self.store, self.salt, options, lock=self._ingest_lock).start()
        self.on_notice(f"otlp: receiving on {self.otlp.endpoint}/v1/traces")
        return self.otlp

    def stop_otlp(self) -> None:
        """Stop accepting spans, let requests in flight commit, store what is queued."""
        if self.otlp is None:
            return
        self.otlp.stop()
        totals, stats = self.otlp.writer.totals, self.otlp.receiver.stats
        self.on_notice(
            f"otlp: stopped after {stats.requests:,} requests: {stats.llm_spans:,} LLM spans, "
            f"stored {totals.stored:,} + duplicates {totals.duplicates:,} + rejected {totals.rejected:,}"
        )
        self.otlp = None

    def run(self, stop: threading.Event, for_seconds: float | None = None) -> None:
        """Run the schedule (and the [otlp] receiver) until `stop` is set or `for_seconds` have passed, then
        stop cleanly."""
        self.start_otlp()
        scheduler = self.build_scheduler()
        scheduler.start()
        try:
            deadline = None if for_seconds is None else time.monotonic() + for_seconds
            while True:
                timeout = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if timeout <= 0 or stop.wait(timeout):
                    break
        finally:
            self._stopping.set()
            scheduler.shutdown(wait=False)  # no new runs; runs already queued record themselves as skipped
            self.stop_otlp()
            if self._drain() and self._executor is not None:
                self._executor.join()

    def run_once(self, stop: threading.Event) -> list[JobRun]:
        """Run every job once (at most `workers` at a time), record each, and return the runs."""
        runs: list[JobRun] = []
        with Pool(self.config.workers, thread_name_prefix="quotascope-job") as pool:
            futures = [pool.submit(self._execute, job, None) for job in self.config.jobs]
            watcher = threading.Thread(target=self._stop_when, args=(stop, futures), daemon=True)
            watcher.start()
            for future in futures:
                runs.append(future.result())
        stop.set()  # lets the watcher thread end
        watcher.join()
        return runs

    def _stop_when(self, stop: threading.Event, futures: list[Any]) -> None:
        stop.wait()
        if not all(f.done() for f in futures):
            self._stopping.set()
            self._drain()

    def _drain(self) -> bool:
        """Wait for running jobs: the grace period, then cancel probes, then wait for the rest."""
        grace_end = time.monotonic() + self.config.shutdown_grace_s
        if self._wait_idle(grace_end):
            return True
        names = ", ".join(sorted(self._active))
        self.on_notice(f"cancelling {names}: still running after {self.config.shutdown_grace_s:g} s")
        self._cancel_all()
        if self._wait_idle(time.monotonic() + LATE_CANCEL_WAIT_S, cancellable=False):
            return True
        names = ", ".join(sorted(self._active))
        self.on_notice(f"gave up waiting for {names}; an unfinished batch is rolled back if the process ends")
        return False

    def _wait_idle(self, until: float, cancellable: bool = True) -> bool:
        with self._active_changed:
            while self._active:
                left = until - time.monotonic()
                if left <= 0 or (cancellable and self._cancel_now.is_set()):
                    return False
                self._active_changed.wait(min(left, 0.1))
        return True

    def _cancel_all(self) -> None:
        with self._active_changed:
            tokens = list(self._active.values())
        for token in tokens:
            token.cancel()

    # ------------------------------------------------------------------------------------------- triggers

    def _trigger(self, job: Job) -> IntervalTrigger | CronTrigger:
        trigger = job.trigger
        if isinstance(trigger, Interval):
            return IntervalTrigger(seconds=trigger.seconds, timezone=self.config.timezone)
        assert isinstance(trigger, Cron)
        return CronTrigger(
            minute=trigger.minute,
            hour=trigger.hour,
            day=trigger.day,
            month=trigger.month,
            day_of_week=trigger.day_of_week,
            timezone=self.config.timezone,
        )

    def _note_scheduled(self, job_id: str, at: datetime) -> None:
        self._scheduled[job_id] = at

    def _scheduled_run(self, job: Job) -> None:
        scheduled = self._scheduled.pop(job.id, None)
        self._execute(job, scheduled)

    def _on_skipped(self, event: JobEvent) -> None:
        """A run APScheduler did not start: recorded as `skipped` with why."""
        job = next((j for j in self.config.jobs if j.id == event.job_id), None)
        if job is None:
            return
        if event.code == EVENT_JOB_MAX_INSTANCES:
            when = event.scheduled_run_times[-1]
            reason = "its previous run had not ended (or not started: no free worker); one run at a time"
        else:
            when = event.scheduled_run_time
            late = (datetime.now(UTC) - when).total_seconds()
            reason = (
                f"it could not start within {self.config.misfire_grace_s:g} s of its time "
                f"(late by {late:.0f} s: every worker was busy, or the process was paused)"
            )
        now = utc_now()
        self._record(
            JobRun(
                uuid.uuid4().hex,
                self.session_id,
                job.id,
                job.kind,
                when.astimezone(UTC).replace(tzinfo=None),
                now,
                now,
                0.0,
                "skipped",
                reason,
            ),
            [],
        )

    # ------------------------------------------------------------------------------------------ one run

    def _execute(self, job: Job, scheduled_at: datetime | None) -> JobRun:
        """Run one job and record it; never raises (a failure is the run's outcome)."""
        run_id = uuid.uuid4().hex
        started, t0 = utc_now(), time.monotonic()
        token = RunToken(job)
        result = _Outcome()
        if self._stopping.is_set():
            result = _Outcome("skipped", "the scheduler was stopping")
        else:
            with self._active_changed:
                self._active[job.id] = token
            try:
                if isinstance(job, ProbeJob):
                    result = self._probe(job, token)
                elif isinstance(job, WatchJob):
                    result = self._watch(job, token)
                elif isinstance(job, PullJob):
                    result = self._pull(job, token)
                else:
                    result = self._reload_catalog(job)
            except Cancelled:
                result.outcome = "error"
                result.error = (
                    "cancelled because the scheduler was stopping; results of this run were not stored"
                )
            except QuotascopeError as e:
                result.outcome, result.error = "error", self._sentence(e)
            except Exception as e:  # a bug in a job must not stop the others: record it as one sentence
                result.outcome, result.error = "error", f"unexpected {type(e).__name__}: {self._sentence(e)}"
            finally:
                with self._active_changed:
                    self._active.pop(job.id, None)
                    self._active_changed.notify_all()
        finished = utc_now()
        run = JobRun(
            run_id,
            self.session_id,
            job.id,
            job.kind,
            None if scheduled_at is None else scheduled_at.astimezone(UTC).replace(tzinfo=None),
            started,
            finished,
            round((time.monotonic() - t0) * 1000, 3),
            result.outcome,
            result.error,
            result.summary,
        )
        self._record(run, result.marks)
        return run

    def _record(self, run: JobRun, marks: list[FileMark]) -> None:
        try:
            write_job_run(self.db, run, [(run.job_id, m) for m in marks])
        except StorageError as e:
            self.on_notice(f"could not record the run of {run.job_id}: {e}")
        else:
            self._recorded += 1
        try:
            self.on_run(run)
        except Exception as e:  # a broken reporter must not take the job down
            self.on_notice(f"could not report the run of {run.job_id}: {type(e).__name__}")

    def _sentence(self, error: BaseException) -> str:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return self._redact(text)

    # ----------------------------------------------------------------------------------------- the jobs

    def _probe(self, job: ProbeJob, token: RunToken) -> _Outcome:
        catalog = self._catalog
        offer = catalog.get(job.endpoint.offer) if catalog is not None and job.endpoint.offer else None

        async def probe() -> ProbeRun:
            async with make_client(job.endpoint, job.plan) as client:
                return await run_probe(client, job.endpoint, job.plan, offer=offer)

        probe_run = token.run_async(probe)
        write_probe_run(self.db, probe_run)
        doc = summarize(probe_run)
        summary = {
            "probe_run_id": probe_run.run_id,
            "endpoint": job.endpoint.name,
            "requests": doc["requests"],
            "ok": doc["ok"],
            "errors": doc["errors"],
            "not_sent": doc["not_sent"],
            "stopped_early": doc["stopped_early"],
            "ttft_ms_p50": doc["ttft_ms"]["p50"],
            "e2e_ms_p50": doc["e2e_ms"]["p50"],
            "output_tokens_per_s_p50": doc["output_tokens_per_s"]["p50"],
            "rate_limit": doc["rate_limit"].get("limits", {}),
            "cost": doc["cost"],
        }
        if doc["ok"]:
            return _Outcome("ok", None, summary)
        errors = ", ".join(f"{n} {cls}" for cls, n in doc["errors"].items()) or "nothing was sent"
        first = next((r.error for r in probe_run.results if r.error), "")
        reason = f"; {probe_run.stop_reason}" if probe_run.stopped_early else ""
        detail = f" (first: {first})" if first else ""
        return _Outcome("error", self._redact(f"no request succeeded: {errors}{detail}{reason}"), summary)

    def _watch(self, job: WatchJob, token: RunToken) -> _Outcome:
        ingest = self.ingest
        assert ingest is not None
        marks = self._marks.setdefault(job.id, {})
        scan = scan_folder(
            job.folder,
            marks,
            settle_s=job.settle_s,
            incomplete_line_s=job.incomplete_line_s,
            now_ns=time.time_ns(),
        )
        totals = IngestCounts()
        failed: list[str] = []
        trouble = None
        read_files = 0
        left = 0
        for index, seen in enumerate(scan.ready):
            if self._stopping.is_set() or token.cancelled:
                left = len(scan.ready) - index
                break
            try:
                with self._ingest_lock:
                    counts = ingest(self.store, seen.path, format=job.format, tags=job.tags)
            except InputError as e:  # the file's own fault: it is tried again once it changes
                mark = seen.mark(self._sentence(e))
                failed.append(f"{seen.path.name}: {mark.error}")
            except QuotascopeError as e:  # the database's trouble, not the file's: the next run retries
                trouble = f"{seen.path.name} was not read: {self._sentence(e)}"
                left = len(scan.ready) - index
                break
            except Exception as e:  # a fault no reader caught: still this file's alone, the others go on
                mark = seen.mark(self._sentence(e))
                failed.append(f"{seen.path.name}: {mark.error}")
            else:
                totals = IngestCounts(
                    totals.read + counts.read,
                    totals.stored + counts.stored,
                    totals.duplicates + counts.duplicates,
                    totals.rejected + counts.rejected,
                )
                if counts.unreadable:  # its readable records are stored, the rest waits for a change
                    mark = seen.mark(self._redact(counts.unreadable))
                    failed.append(f"{seen.path.name}: {mark.error}")
                else:
                    mark = seen.mark()
                    read_files += 1
            write_file_marks(self.db, [(job.id, mark)], utc_now())
            marks[mark.path] = mark
        summary = {
            "folder": str(job.folder),
            "files_read": read_files,
            "files_failed": len(failed),
            # each file not read (wholly, or from some line on) with why; it is read again once it changes
            "failed": failed,
            "files_waiting": len(scan.waiting),
            "files_unchanged": scan.unchanged,
            "files_left_for_next_run": left,
            "read": totals.read,
            "stored": totals.stored,
            "duplicates": totals.duplicates,
            "rejected": totals.rejected,
        }
        if trouble:
            return _Outcome("error", self._redact(trouble), summary)
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            return _Outcome("error", f"{len(failed)} file(s) failed: {failed[0]}{more}", summary)
        return _Outcome("ok", None, summary)

    def _pull(self, job: PullJob, token: RunToken) -> _Outcome:
        """One `quotascope pull`: from the last day held to today, replacing those days (one transaction)."""
        key = self._admin_keys[job.id]
        salt = self.salt
        assert salt is not None

        async def run() -> PullResult:
            async with new_client() as client:
                return await pull(
                    self.db, pull_kind(job.pull_kind), key, client, base_url=job.base_url, salt=salt
                )

        result = token.run_async(run)
        summary = result.to_json()
        if job.alert and pull_kind(job.pull_kind).report == "costs":
            summary["gap_alerts"] = self._gap_alerts(result)
        return _Outcome("ok", None, summary)

    def _gap_alerts(self, result: PullResult) -> int:
        """Reconcile the days a cost pull covered and raise an alert for each flagged one (as `quotascope
        report reconcile` does); `deliver_gap_alerts` sends them. Returns how many were raised."""
        assert self._catalog is not None
        since, until = day_start(result.since), day_start(result.until)
        rows = reconcile_report(
            self.store, self._catalog, since, until, ("day", "provider"), self.gap_threshold
        )
        raised = record_gap_alerts(self.db, rows, self.gap_threshold, utc_now())
        if raised and self.deliver_gap_alerts is not None:
            set_gap_webhook_status(self.db, self.deliver_gap_alerts(raised))
        return len(raised)

    def _reload_catalog(self, job: CatalogJob) -> _Outcome:
        fingerprint = self.catalog_source.fingerprint()
        changed = fingerprint != self._catalog_fingerprint or self._catalog is None
        catalog = self.catalog_source.load() if changed else self._catalog
        assert catalog is not None
        rows = snapshot_catalog(self.db, catalog) if changed or not self._snapshotted else None
        self._catalog, self._catalog_fingerprint = catalog, fingerprint
        self._snapshotted = True
        summary: dict[str, Any] = {
            "offers": len(catalog.offers),
            "files": len(self.catalog_source.files()),
            "changed": changed,
            "snapshot_rows": rows,
        }
        return _Outcome("ok", None, summary)

    def _redact(self, text: str) -> str:
        return redact_secrets(text, self._secrets)[:MAX_ERROR_CHARS]
