"""`quotascope demo`: build a living demo database, then serve the dashboard over it.

1. Writes a realistic month of usage logs (`collectors.demo`) up to today, malformed lines included, and
   ingests them the way `quotascope ingest` does (the malformed lines land in `rejects`).
2. Starts three provider emulators as real servers (a healthy endpoint, a "distilled" one that fails the
   canary, one with a tight TPM that answers 429s) and probes each a few times.
3. Sets monthly budgets, then serves the dashboard (unless `--no-serve`).

Re-running it is safe: the same day's files are ingested again as duplicates (nothing is stored twice); on
another day the demo database is rebuilt for the new month. A database holding anything but demo data is
never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from collectors.demo import demo_catalog, generate
from collectors.ingest import FileResult, IngestOptions, ingest_paths, load_salt
from collectors.probe.endpoints import Endpoint
from collectors.probe.runner import make_client, run_probe
from models.budget import Budget
from models.catalog import Catalog
from models.errors import InputError
from models.probe import LoadPlan, summarize
from quotascope import settings
from quotascope.arguments import positive_whole, whole
from quotascope.commands.dashboard import serve
from quotascope.context import db_path, priced_catalog
from quotascope.output import say as print_line
from storage.budgets import read_budgets, save_budget
from storage.catalog import write_catalog_file
from storage.demo import demo_sources, remove_database
from storage.probes import write_probe_run

# near what the demo month spends, so the forecast crosses thresholds and alerts show
DEMO_BUDGETS = (
    ("total", None, Decimal(15_000)),
    ("team", "search", Decimal(2_000)),
    ("team", "support", Decimal(250)),
)


@dataclass(frozen=True)
class DemoEndpoint:
    name: str
    offer: str
    model: str
    flags: tuple[str, ...]
    plan: LoadPlan


ENDPOINTS = (
    DemoEndpoint(
        "deepseek-v4-pro (emulated)",
        "deepseek/deepseek-v4-pro",
        "deepseek-v4-pro",
        ("--ttft-ms", "420", "--tokens-per-s", "45", "--jitter", "0.15", "--reasoning-tokens", "32"),
        LoadPlan(
            profile="sweep",
            concurrency=(2, 8),
            requests=8,
            input_tokens=(100, 1000),
            max_tokens=64,
            canary=True,
        ),
    ),
    DemoEndpoint(
        "cheap-r1 (distilled)",
        "volcengine/deepseek-r1",
        "deepseek-r1",
        ("--ttft-ms", "150", "--tokens-per-s", "90", "--distilled"),
        LoadPlan(profile="concurrency", concurrency=(4,), requests=10, max_tokens=64, canary=True),
    ),
    DemoEndpoint(
        "typical-cloud-r1 (tight TPM)",
        "cloud/deepseek-r1-10k",
        "deepseek-r1",
        ("--ttft-ms", "600", "--tokens-per-s", "30", "--tpm", "4000", "--reasoning-tokens", "32"),
        LoadPlan(
            profile="concurrency",
            concurrency=(4,),
            requests=12,
            input_tokens=(1000,),
            max_tokens=256,
            max_retry_wait_s=5.0,
        ),
    ),
)


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "demo",
        parents=[parent],
        help="build a demo database and serve the dashboard",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--no-serve", action="store_true", help="build the database, do not serve the dashboard")
    p.add_argument(
        "--host", default=None, help=f"dashboard address (default {settings.get('dashboard_host')})"
    )
    p.add_argument(
        "--port", type=whole, default=None, help=f"dashboard port (default {settings.get('dashboard_port')})"
    )
    p.add_argument("--days", type=positive_whole, default=30, help="days of traffic up to today (default 30)")
    p.add_argument("--seed", type=whole, default=7, help="the same seed writes the same month")
    p.add_argument(
        "--probe-rounds", type=whole, default=2, help="probe runs per emulated endpoint (default 2)"
    )
    p.set_defaults(run=run)


def say(text: str) -> None:
    print_line(text, flush=True)


def demo_start(days: int) -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    today = datetime(now.year, now.month, now.day)
    return today - timedelta(days=days - 1)


def prepare(db: Path, folder: Path) -> None:
    """Rebuild a demo database made for another month; refuse one holding anything else."""
    if not db.exists():
        return
    sources = demo_sources(db)
    root = folder.parent.resolve()
    foreign = [p for p in sources if not Path(p).resolve().is_relative_to(root)]
    if foreign:
        raise InputError(f"{db} holds data that is not the demo's ({foreign[0]}); give the demo its own --db")
    if any(not Path(p).resolve().is_relative_to(folder.resolve()) for p in sources):
        say(f"rebuilding {db}: it holds an earlier month's demo")
        remove_database(db)


def ingest(db: Path, paths: tuple[Path, ...]) -> list[FileResult]:
    def report(result: FileResult) -> None:
        c = result.counts
        say(
            f"  {result.path.name}: {result.description}; read {c.read:,} = stored {c.stored:,} + duplicates "
            f"{c.duplicates:,} + rejected {c.rejected:,}"
        )

    return ingest_paths(
        db,
        list(paths),
        salt=load_salt(Path(settings.get("salt_file"))),
        options=IngestOptions(),
        on_file=report,
    )


@contextmanager
def emulator(flags: tuple[str, ...], model: str) -> Iterator[str]:
    """A real emulator process on a free loopback port; yields its base URL."""
    command = [
        sys.executable,
        "-m",
        "quotascope.cli",
        "emulate",
        "--port",
        "0",
        "--json",
        "--model",
        model,
        *flags,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise InputError("the provider emulator did not start")
        yield str(json.loads(line)["base_url"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def probe_once(endpoint: Endpoint, plan: LoadPlan, catalog: Catalog, db: Path) -> str:
    offer = catalog.get(endpoint.offer) if endpoint.offer else None
    async with make_client(endpoint, plan) as client:
        run = await run_probe(client, endpoint, plan, offer=offer)
    write_probe_run(db, run)
    s = summarize(run)
    return (
        f"{s.get('ok', 0)}/{s.get('requests', 0)} ok"
        + (f", 429s {s['errors'].get('quota_429', 0)}" if s.get("errors", {}).get("quota_429") else "")
        + (f", canary {s['canary_pass_rate']:.0%}" if s.get("canary_pass_rate") is not None else "")
    )


def probe(db: Path, catalog: Catalog, rounds: int) -> None:
    """Each round probes the three emulators at once; every run is stored as it finishes."""
    with ExitStack() as stack:
        endpoints = [
            Endpoint(
                spec.name,
                stack.enter_context(emulator(spec.flags, spec.model)),
                spec.model,
                offer=spec.offer,
                read_timeout_s=30,
            )
            for spec in ENDPOINTS
        ]

        async def one_round() -> list[str]:
            return list(
                await asyncio.gather(
                    *(
                        probe_once(endpoint, spec.plan, catalog, db)
                        for endpoint, spec in zip(endpoints, ENDPOINTS, strict=True)
                    )
                )
            )

        for i in range(rounds):
            for spec, outcome in zip(ENDPOINTS, asyncio.run(one_round()), strict=True):
                say(f"  {spec.name} run {i + 1}/{rounds}: {outcome}")


def set_budgets(db: Path, now: datetime) -> None:
    existing = {(b.scope, b.scope_value) for b in read_budgets(db)}
    for scope, value, amount in DEMO_BUDGETS:
        if (scope, value) not in existing:
            save_budget(db, Budget(scope, value, amount, "CNY"), now)  # type: ignore[arg-type]


def build(db: Path, args: argparse.Namespace) -> Path:
    """Build (or refresh) the demo database; returns the demo's own catalog file."""
    start = demo_start(args.days)
    folder = db.parent / "demo" / f"{start:%Y-%m-%d}"
    prepare(db, folder)
    say(f"writing {args.days} days of traffic from {start:%Y-%m-%d} into {folder}")
    files = generate(folder, start, args.days, args.seed, until=datetime.now(UTC).replace(tzinfo=None))
    user_catalog = folder / "catalog.toml"
    contract_from = start + timedelta(days=args.days // 2)
    write_catalog_file(
        user_catalog,
        demo_catalog(Path(settings.get("catalog_dir")), contract_from),
        header="The demo company's own catalog (quotascope demo): its assumptions and contract.",
    )
    say(f"the demo company's catalog (a contract price from {contract_from:%Y-%m-%d}): {user_catalog}")
    catalog = priced_catalog(Path(settings.get("catalog_dir")), [*map(Path, args.catalog), user_catalog])
    say(f"ingesting {files.records:,} records ({files.malformed} malformed lines on purpose)")
    ingest(db, files.paths)
    say("probing three emulated endpoints (healthy, distilled, tight TPM)")
    probe(db, catalog, args.probe_rounds)
    set_budgets(db, datetime.now(UTC).replace(tzinfo=None))
    say(f"demo database ready: {db}")
    return user_catalog


def run(args: argparse.Namespace) -> int:
    if args.days < 1 or args.probe_rounds < 1:
        raise InputError("--days and --probe-rounds must be at least 1")
    db = db_path(args)
    user_catalog = build(db, args)
    if args.no_serve:
        say(f"serve it with: quotascope dashboard --db {db} --catalog {user_catalog}")
        return 0
    host = args.host or settings.get("dashboard_host")
    port = args.port or int(settings.get("dashboard_port"))
    os.environ.setdefault("QUOTASCOPE_CURRENCY", "CNY")  # the demo's budgets are in yuan
    return serve(db, host, port, [*args.catalog, str(user_catalog)])
