"""`quotascope probe`: measure an OpenAI-compatible endpoint and store the run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from collectors.probe import Endpoint, find_endpoint, make_client, run_probe
from collectors.probe.endpoints import adhoc_name
from collectors.probe.loop import run_async
from collectors.probe.runner import INTERRUPTED
from models.catalog import Offer
from models.errors import InputError
from models.probe import DEFAULT_WARMUP_REQUESTS, LoadPlan, ProbeRun, summarize
from quotascope import settings
from quotascope.arguments import non_negative_float, positive_float, positive_whole, whole, whole_list
from quotascope.commands import probe_import
from quotascope.context import catalog_from, db_path
from quotascope.output import emit, table
from storage.probes import write_probe_run


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "probe",
        parents=[parent],
        help="measure an endpoint: TTFT, tokens/s, errors, rate limits, canary, cost",
        description="Send streamed chat completions to an OpenAI-compatible endpoint and measure, from each "
        "request's intended send time: TTFT, TTFO, ITL, output tokens/s, E2E, tokens, errors by class, the "
        "x-ratelimit-* limits announced, a canary verdict and the probe's cost. One concurrency is a "
        "closed-loop run (1 = sequential), several are a sweep, --rate an open-loop run. The run is stored "
        "in the database. The API key is read from the environment variable named by api_key_env / "
        "--api-key-env and is never stored, logged or shown. Exit 1 when no request succeeded.",
    )
    t = p.add_argument_group("endpoint (from the endpoints file, or ad hoc)")
    t.add_argument("--endpoint", metavar="NAME", help="an endpoint of the endpoints file")
    t.add_argument(
        "--endpoints",
        metavar="FILE",
        help=f"endpoints TOML (default {settings.BY_NAME['endpoints_file'].default}; "
        "env QUOTASCOPE_ENDPOINTS)",
    )
    t.add_argument("--base-url", metavar="URL", help="ad hoc: the API base, e.g. https://api.deepseek.com/v1")
    t.add_argument("--model", metavar="M", help="ad hoc: the model name to ask for")
    t.add_argument("--api-key-env", metavar="VAR", help="ad hoc: environment variable holding the key")
    t.add_argument("--offer", metavar="ID", help="catalog offer pricing the probe (overrides the endpoint's)")
    t.add_argument(
        "--timeout-s", type=positive_float, metavar="S", help="read timeout: longest wait for the next byte"
    )
    load = p.add_argument_group("load")
    load.add_argument("--concurrency", type=whole_list, default=[1], metavar="N[,N...]", help="default 1")
    load.add_argument(
        "--requests", type=positive_whole, default=10, metavar="N", help="requests per phase (default 10)"
    )
    load.add_argument("--rate", type=positive_float, metavar="R", help="open loop: R requests per second")
    load.add_argument(
        "--poisson", action="store_true", help="with --rate: exponential gaps (Poisson arrivals)"
    )
    load.add_argument(
        "--input-tokens", type=whole_list, default=[100], metavar="N[,N...]", help="prompt lengths, in turn"
    )
    load.add_argument(
        "--max-tokens", type=positive_whole, default=128, metavar="N", help="output cap (default 128)"
    )
    load.add_argument("--canary", action="store_true", help="also ask the known-answer canary questions")
    load.add_argument(
        "--ramp-s",
        type=non_negative_float,
        metavar="S",
        help="start the concurrent workers spread over S seconds (default: one request's duration, timed by "
        "the warm-up; 0: all at once, a burst that also measures the client's own start-up)",
    )
    load.add_argument(
        "--warmup",
        type=whole,
        default=DEFAULT_WARMUP_REQUESTS,
        metavar="N",
        help=f"untimed requests first: a warm connection and the ramp's duration (default "
        f"{DEFAULT_WARMUP_REQUESTS}; stored and priced, not in the figures)",
    )
    load.add_argument(
        "--max-duration-s", type=positive_float, metavar="S", help="send nothing new after this long"
    )
    load.add_argument("--seed", type=whole, default=0, help="Poisson gaps and prompt filler")
    p.add_argument("--no-store", action="store_true", help="print the summary without storing the run")
    p.set_defaults(run=run)
    actions = p.add_subparsers(dest="probe_action", metavar="import", required=False)
    probe_import.register(actions, parent)


def endpoint_from(args: argparse.Namespace) -> Endpoint:
    adhoc = args.base_url or args.model or args.api_key_env
    if args.endpoint and adhoc:
        raise InputError("give --endpoint NAME or --base-url/--model/--api-key-env, not both")
    if args.endpoint:
        path = Path(args.endpoints or settings.get("endpoints_file"))
        endpoint = find_endpoint(path, args.endpoint)
    elif args.base_url and args.model:
        name = adhoc_name(args.base_url, args.model)
        endpoint = Endpoint(name, args.base_url, args.model, api_key_env=args.api_key_env)
    else:
        raise InputError(
            "say what to probe: --endpoint NAME, or --base-url URL --model M [--api-key-env VAR]"
        )
    if args.timeout_s is not None:
        endpoint = replace(endpoint, read_timeout_s=args.timeout_s)
    return endpoint


async def _probe(endpoint: Endpoint, plan: LoadPlan, api_key: str | None, offer: Offer | None) -> ProbeRun:
    """The run; a first Ctrl-C stops it gracefully (what was measured is kept), a second abandons it."""
    stop = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if stop.is_set():
            assert main is not None
            main.cancel()
            return
        stop.set()
        print(
            "quotascope: stopping the probe: nothing more is sent, the requests in flight finish and the run "
            "is kept (Ctrl-C again to abandon it)",
            file=sys.stderr,
            flush=True,
        )

    # no signal handlers on Windows or off the main thread: Ctrl-C then simply interrupts
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        async with make_client(endpoint, plan) as client:
            return await run_probe(client, endpoint, plan, api_key=api_key, offer=offer, stop=stop)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


def run(args: argparse.Namespace) -> int:
    endpoint = endpoint_from(args)
    plan = LoadPlan.from_options(
        args.concurrency,
        args.rate,
        args.poisson,
        requests=args.requests,
        input_tokens=tuple(args.input_tokens),
        max_tokens=args.max_tokens,
        canary=args.canary,
        max_duration_s=args.max_duration_s,
        ramp_s=args.ramp_s,
        warmup_requests=args.warmup,
        seed=args.seed,
    )
    offer_id = args.offer or endpoint.offer
    offer = catalog_from(args).get(offer_id) if offer_id else None
    api_key = endpoint.api_key()  # before any request: an unset variable is one clear sentence
    try:
        probe_run = run_async(_probe(endpoint, plan, api_key, offer))
    except asyncio.CancelledError:  # the second Ctrl-C: nothing is kept
        raise KeyboardInterrupt from None
    stored = None if args.no_store else db_path(args)
    if stored is not None:
        write_probe_run(stored, probe_run)
    summary = summarize(probe_run)
    emit(args.json, summary, lambda: render(summary, stored))
    if probe_run.stop_reason == INTERRUPTED:
        return 130  # what a shell expects of a command stopped by Ctrl-C, with the run kept all the same
    return 0 if summary["ok"] else 1


def render(summary: dict[str, Any], stored: Path | None) -> str:
    lines = [
        f"probe {summary['run_id'][:12]} of {summary['endpoint']} ({summary['model']}): "
        f"{summary['profile']}{' (burst)' if summary['burst'] else ''}, {summary['requests']} requests, "
        f"{summary['ok']} ok, "
        f"{summary['duration_s']:g} s",
        "",
    ]
    rows = []
    for label, key in (
        ("TTFT ms", "ttft_ms"),
        ("TTFO ms", "ttfo_ms"),
        ("ITL ms", "itl_ms"),
        ("output tokens/s", "output_tokens_per_s"),
        ("E2E ms", "e2e_ms"),
        ("send delay ms (client)", "send_delay_ms"),
    ):
        stats = summary[key]
        rows.append([label, *("-" if stats[q] is None else f"{stats[q]:,}" for q in ("p50", "p95", "p99"))])
    lines.append(table(["", "p50", "p95", "p99"], rows))
    for phase in summary.get("phases", []):
        ttft = phase["ttft_ms"]["p50"]
        lines.append(f"  {phase['phase']}: {phase['ok']}/{phase['requests']} ok, TTFT p50 {ttft} ms")
    errors = ", ".join(f"{k} {v}" for k, v in summary["errors"].items()) or "none"
    lines += ["", f"errors: {errors}"]
    limits = summary["rate_limit"]["limits"]
    if limits:
        lowest = summary["rate_limit"]["lowest_remaining"]
        seen = ", ".join(f"{k} {v} (lowest remaining {lowest.get(k, '-')})" for k, v in limits.items())
        lines.append(f"rate limits announced: {seen}")
    if summary["canary_pass_rate"] is not None:
        verdicts = ", ".join(f"{k} {v}" for k, v in summary["canaries"].items())
        lines.append(f"canary pass rate {summary['canary_pass_rate']:.0%}: {verdicts}")
    if summary["cost"]:
        lines.append(
            f"probe cost: {summary['cost']['amount']} {summary['cost']['currency']} ({summary['offer']})"
        )
    if summary["burst"]:
        lines.append(
            "burst: every concurrent worker started at the same instant (--ramp-s 0), so TTFT also holds the "
            "client's own start-up; leave --ramp-s out to measure the endpoint"
        )
    elif summary["ramp_s"]:
        lines.append(f"workers started spread over {summary['ramp_s']:g} s (--ramp-s)")
    if summary["warmup_requests"]:
        lines.append(f"{summary['warmup_requests']} warm-up request(s) first, not in the figures")
    lag = summary["loop_lag_ms"]
    flagged = summary["client_saturated"]
    lines.append(
        f"client event-loop lag p99 {lag['p99']} ms, max {lag['max']} ms"
        + (f"; {flagged} requests flagged client-saturated" if flagged else "")
    )
    if summary["tokens_estimated"]:
        lines.append(f"{summary['tokens_estimated']} requests had no usage: tokens counted by the client")
    if summary["stopped_early"]:
        lines.append(f"stopped early ({summary['not_sent']} not sent): {summary['stop_reason']}")
    lines.append(f"stored in {stored}" if stored else "not stored (--no-store)")
    return "\n".join(lines)
