"""`quotascope emulate`: serve the local OpenAI-compatible provider emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from collectors.emulator import Billing, EmulatorConfig, bind, serve
from quotascope.arguments import (
    non_negative_float,
    positive,
    positive_float,
    positive_whole,
    share_float,
    whole,
)
from quotascope.context import catalog_from


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "emulate",
        parents=[parent],
        help="serve a local OpenAI-compatible provider with set timing, limits and faults",
        description="A real OpenAI-compatible server (POST /v1/chat/completions, GET /v1/models) to probe "
        "and test against: set TTFT, tokens/s, reasoning, TPM/RPM/concurrency limits (429 with "
        "Retry-After and x-ratelimit-* headers), a 64-token prefix cache, and injected faults. A token "
        "is one word or punctuation mark. It bills what it answers, priced by the catalog, and serves "
        "OpenAI's and Anthropic's admin usage and cost reports for `quotascope pull`. "
        "--json prints the address and settings as one JSON line first.",
    )
    d = EmulatorConfig()
    p.add_argument(
        "--host", metavar="ADDR", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    p.add_argument(
        "--port", metavar="N", type=whole, default=8400, help="port (default 8400; 0 picks a free one)"
    )
    p.add_argument(
        "--model", metavar="NAME", default=d.model, help=f"the one model served (default {d.model})"
    )
    t = p.add_argument_group("timing")
    t.add_argument(
        "--ttft-ms",
        metavar="MS",
        type=non_negative_float,
        default=d.ttft_ms,
        help=f"time to first token (default {d.ttft_ms:g})",
    )
    t.add_argument(
        "--tokens-per-s",
        metavar="N",
        type=positive_float,
        default=d.tokens_per_s,
        help=f"decode speed (default {d.tokens_per_s:g})",
    )
    t.add_argument(
        "--jitter",
        metavar="SHARE",
        type=share_float,
        default=d.jitter,
        help="scale each request's TTFT and speed by 1 ± this",
    )
    t.add_argument(
        "--reasoning-tokens",
        metavar="N",
        type=whole,
        default=d.reasoning_tokens,
        help="reasoning_content tokens first",
    )
    t.add_argument(
        "--output-tokens",
        metavar="N",
        type=positive_whole,
        default=d.output_tokens,
        help=f"answer tokens (default {d.output_tokens})",
    )
    t.add_argument(
        "--prefill-tokens-per-s",
        metavar="N",
        type=non_negative_float,
        default=0.0,
        help="add uncached prompt tokens / this to TTFT",
    )
    t.add_argument(
        "--chunk-ms",
        metavar="MS",
        type=non_negative_float,
        default=0.0,
        help="group tokens due within this many ms in one chunk",
    )
    lim = p.add_argument_group("limits (429 with Retry-After when exceeded)")
    lim.add_argument(
        "--tpm",
        metavar="N",
        type=positive_whole,
        help="tokens per minute: prompt + max_tokens charged on arrival",
    )
    lim.add_argument("--rpm", metavar="N", type=positive_whole, help="requests per minute")
    lim.add_argument("--max-concurrency", metavar="N", type=positive_whole, help="requests open at once")
    lim.add_argument(
        "--burst-s",
        metavar="S",
        type=positive_float,
        default=d.burst_s,
        help="bucket size in seconds of refill (default 60)",
    )
    f = p.add_argument_group("faults (shares of requests, drawn with --seed)")
    for name, help_text in (
        ("5xx", "503 overloaded"),
        ("stall", "the stream stops for --fault-stall-s"),
        ("drop", "the connection is cut mid-stream"),
        ("malformed", "one chunk is broken JSON"),
        ("429", "429 whatever the limits say (quota spent elsewhere)"),
    ):
        f.add_argument(f"--fault-{name}-rate", type=share_float, default=0.0, metavar="SHARE", help=help_text)
    f.add_argument(
        "--fault-stall-s",
        metavar="S",
        type=positive_float,
        default=d.fault_stall_s,
        help="how long a stall lasts",
    )
    f.add_argument(
        "--fault-429-retry-ms",
        metavar="MS",
        type=whole,
        default=d.fault_429_retry_ms,
        help="Retry-After of fault 429s",
    )
    o = p.add_argument_group("behaviour")
    o.add_argument("--no-cache", action="store_true", help="no prefix cache (every prompt token a miss)")
    o.add_argument(
        "--no-usage", action="store_true", help="send no usage, as hosts that ignore stream_options"
    )
    o.add_argument(
        "--no-role-chunk",
        action="store_true",
        help="no role-only first chunk: the role comes with the first token (by default a role chunk is "
        "sent on arrival, as vLLM's server does, which clients timing the first chunk read as TTFT)",
    )
    o.add_argument("--distilled", action="store_true", help="answer the canary questions wrongly")
    o.add_argument(
        "--require-api-key", action="store_true", help="refuse requests without a bearer key (any)"
    )
    o.add_argument("--seed", metavar="N", type=whole, default=0, help="seed of jitter and fault draws")
    o.add_argument(
        "--access-log", action="store_true", help="log one line per request (no headers, no bodies)"
    )
    b = p.add_argument_group(
        "billing (the admin usage and cost reports `quotascope pull` reads, from the traffic answered)"
    )
    b.add_argument(
        "--bill-as",
        choices=("openai", "anthropic"),
        default="openai",
        help="whose catalog offer prices the traffic (default openai)",
    )
    b.add_argument(
        "--bill-price-factor",
        metavar="X",
        type=positive,
        default=Decimal(1),
        help="bill this times the catalog price (default 1; 1.05 bills 5 %% over it, a discrepancy to find)",
    )
    p.set_defaults(run=run)


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        model=args.model,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        jitter=args.jitter,
        reasoning_tokens=args.reasoning_tokens,
        output_tokens=args.output_tokens,
        prefill_tokens_per_s=args.prefill_tokens_per_s,
        chunk_ms=args.chunk_ms,
        tpm=args.tpm,
        rpm=args.rpm,
        max_concurrency=args.max_concurrency,
        burst_s=args.burst_s,
        fault_5xx_rate=args.fault_5xx_rate,
        fault_stall_rate=args.fault_stall_rate,
        fault_drop_rate=args.fault_drop_rate,
        fault_malformed_rate=args.fault_malformed_rate,
        fault_429_rate=args.fault_429_rate,
        fault_stall_s=args.fault_stall_s,
        fault_429_retry_ms=args.fault_429_retry_ms,
        cache=not args.no_cache,
        usage=not args.no_usage,
        role_chunk=not args.no_role_chunk,
        distilled=args.distilled,
        require_api_key=args.require_api_key,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    billing = Billing(catalog_from(args), provider=args.bill_as, price_factor=args.bill_price_factor)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
    if args.json:
        bill = {"as": args.bill_as, "price_factor": str(args.bill_price_factor)}
        print(json.dumps({"base_url": base_url, "config": asdict(config), "billing": bill}), flush=True)
    else:
        limits = ", ".join(f"{k} {v}" for k in ("tpm", "rpm", "max_concurrency") if (v := getattr(config, k)))
        print(
            f"emulating {config.model} at {base_url} (TTFT {config.ttft_ms:g} ms, {config.tokens_per_s:g} "
            f"tokens/s{', ' + limits if limits else ''}); Ctrl-C stops",
            flush=True,
        )
    sys.stdout.flush()
    serve(sock, config, access_log=args.access_log, billing=billing)
    return 0
