"""`quotascope schedule`: run probes, folder ingestion and catalog reloads on a schedule until stopped."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from collectors.ingest import load_salt
from collectors.scheduler import CatalogSource, ScheduleRunner, load_schedule, log_ingest
from collectors.scheduler.config import ScheduleConfig
from models.reconcile import parse_threshold
from quotascope import settings
from quotascope.context import price_data_dir, store_from
from quotascope.output import emit, say, table
from quotascope.webhooks import gap_webhook
from storage.jobs import JobRun, job_summary


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above zero, got {text!r}")
    return value


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "schedule",
        parents=[parent],
        help="run probes, folder ingestion and catalog reloads on a schedule",
        description="Run the jobs of a schedule config (TOML: [[probe]], [[watch]], [catalog], and the "
        "OTLP receiver as [otlp]; see "
        "data/schedule.example.toml) until Ctrl-C or SIGTERM. One run of a job at a time, late runs "
        "coalesced, every run recorded in the job_runs table with its outcome and duration; a failing "
        "job never stops the others. On Ctrl-C/SIGTERM nothing new starts and running jobs get "
        "shutdown_grace_s to finish, then probes are cancelled (press Ctrl-C again to cancel at once); "
        "the exit code is 0. API keys are read from the variables the endpoints name, never stored.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the schedule config (TOML)")
    p.add_argument(
        "--endpoints",
        metavar="FILE",
        help="endpoints TOML when the config's [scheduler] does not name one "
        f"(default {settings.BY_NAME['endpoints_file'].default}; env QUOTASCOPE_ENDPOINTS)",
    )
    p.add_argument("--once", action="store_true", help="run every job once and exit (1 if any failed)")
    p.add_argument("--for-seconds", type=_seconds, metavar="N", help="stop cleanly after N seconds")
    p.set_defaults(run=run)


def catalog_source(args: argparse.Namespace) -> CatalogSource:
    user = [Path(p) for p in getattr(args, "catalog", [])]
    if not user and settings.get("user_catalog"):
        user = [Path(settings.get("user_catalog"))]
    return CatalogSource(Path(settings.get("catalog_dir")), tuple(user), price_data_dir())


@contextmanager
def stop_signals(stop: threading.Event, runner: ScheduleRunner, grace_s: float) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop cleanly; a second one: cancel running probes now."""

    def handle(number: int, frame: FrameType | None) -> None:
        if stop.is_set():
            _say("cancelling running jobs now")
            runner.cancel_running()
            return
        name = signal.Signals(number).name
        _say(f"{name}: stopping; running jobs get up to {grace_s:g} s (Ctrl-C again cancels them)")
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(text: str) -> None:
    say(f"quotascope: {text}", file=sys.stderr, flush=True)


def describe_run(run: JobRun) -> str:
    s = run.summary
    if run.outcome != "ok":
        detail = run.error or ""
    elif run.kind == "probe":
        errors = ", ".join(f"{k} {v}" for k, v in s.get("errors", {}).items())
        detail = f"{s['requests']} requests, {s['ok']} ok" + (f", {errors}" if errors else "")
        if s.get("ttft_ms_p50") is not None:
            detail += f", TTFT p50 {s['ttft_ms_p50']} ms"
    elif run.kind == "watch":
        detail = (
            f"{s['files_read']} file(s) read: {s['read']} records, {s['stored']} stored, "
            f"{s['duplicates']} duplicates, {s['rejected']} rejected"
            if s["files_read"]
            else "nothing new"
        )
        if s.get("files_waiting"):
            detail += f"; {s['files_waiting']} file(s) still being written"
    else:
        detail = f"{s['offers']} offers, " + ("reloaded" if s.get("changed") else "unchanged")
        if s.get("snapshot_rows") is not None:
            detail += f"; {s['snapshot_rows']} prices written to catalog_prices"
    when = run.started_at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{when}Z  {run.job_id}  {run.outcome}  {run.duration_ms:,.0f} ms  {detail}"


def _started(config: ScheduleConfig, db: Path, once: bool) -> str:
    jobs = "; ".join(f"{job.id} {job.trigger.describe()}" for job in config.jobs)
    if config.otlp is not None and not once:
        jobs += f"; OTLP receiver on {config.otlp.host}:{config.otlp.port}"
    mode = "running every job once" if once else "running until Ctrl-C or SIGTERM"
    return f"schedule {config.origin}: {len(config.jobs)} job(s) ({jobs}); database {db}; {mode}"


def run(args: argparse.Namespace) -> int:
    config = load_schedule(Path(args.config), Path(args.endpoints or settings.get("endpoints_file")))
    store = store_from(args)
    db = store.db
    out = sys.stderr if args.json else sys.stdout

    def report(job_run: JobRun) -> None:
        say(describe_run(job_run), file=out, flush=True)

    needs_salt = config.watches or config.pulls or config.otlp
    salt = load_salt(Path(settings.get("salt_file"))) if needs_salt else None
    ingest = log_ingest(salt) if config.watches and salt is not None else None
    runner = ScheduleRunner(
        config,
        db,
        catalog=catalog_source(args),
        ingest=ingest,
        on_run=report,
        on_notice=_say,
        salt=salt,
        gap_threshold=parse_threshold(settings.get("reconcile_threshold")),
        deliver_gap_alerts=gap_webhook(settings.get("reconcile_webhook").strip()),
        usage=store.clickhouse,
    )
    runner.prepare()
    say(_started(config, db, args.once), file=out, flush=True)
    stop = threading.Event()
    with stop_signals(stop, runner, config.shutdown_grace_s):
        if args.once:
            if config.otlp is not None:
                _say("the [otlp] receiver runs only without --once")
            runner.run_once(stop)
        else:
            runner.run(stop, args.for_seconds)
    jobs = job_summary(db, session_id=runner.session_id).to_dicts()
    document = {"session_id": runner.session_id, "database": str(db), "runs": runner.recorded, "jobs": jobs}
    emit(args.json, document, lambda: render(document))
    failed = any(job["error"] for job in jobs)
    return 1 if args.once and failed else 0


def render(document: dict[str, Any]) -> str:
    rows = [
        [
            j["job_id"],
            j["kind"],
            j["runs"],
            j["ok"],
            j["error"],
            j["skipped"],
            "-" if j["duration_p50_ms"] is None else f"{j['duration_p50_ms']:,.0f}",
            j["last_error"] or "",
        ]
        for j in document["jobs"]
    ]
    head = f"stopped: {document['runs']} run(s) recorded in job_runs of {document['database']}"
    if not rows:
        return head
    return (
        head + "\n" + table(["job", "kind", "runs", "ok", "error", "skipped", "p50 ms", "last error"], rows)
    )
