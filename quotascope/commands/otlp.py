"""`quotascope otlp`: receive OpenTelemetry GenAI spans over OTLP/HTTP and store their usage."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from collectors.ingest import load_salt
from collectors.otlp import DEFAULT_PORT, OtlpOptions, OtlpServer, parse_attribution
from models.errors import InputError
from quotascope import settings
from quotascope.arguments import whole
from quotascope.context import store_from


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "otlp",
        parents=[parent],
        help="receive OpenTelemetry GenAI spans (OTLP/HTTP) and store their token usage",
        description="An OTLP/HTTP receiver: point an OpenTelemetry exporter or Collector at "
        "http://HOST:PORT (POST /v1/traces, protobuf or JSON, gzip or not). Every LLM span (GenAI "
        "semantic conventions, OpenLLMetry, OpenInference, OpenLIT) becomes one usage row, keyed by its "
        "response id (or span id) so an exporter's retries store nothing new; other spans are ignored; "
        "prompts and answers are never stored. A request is answered 200 once its spans are committed, "
        "429/503 with Retry-After when the receiver is behind. Runs until Ctrl-C or SIGTERM, then "
        "stores what it holds and exits 0.",
    )
    p.add_argument(
        "--host", metavar="ADDR", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    p.add_argument(
        "--port",
        metavar="N",
        type=whole,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks one)",
    )
    p.add_argument(
        "--token-env",
        metavar="VAR",
        help="require `Authorization: Bearer <the value of VAR>` on every request (the token is never shown)",
    )
    p.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="COLUMN=ATTRIBUTE",
        help="fill a usage column (team, project, user, key_id, endpoint) from a span or resource attribute, "
        "e.g. team=service.name (repeatable)",
    )
    p.add_argument(
        "--spool",
        metavar="DIR",
        type=Path,
        help="acknowledge a request once its checked rows are fsynced to a spool in DIR, and commit them to "
        "the database after, in large batches (faster under many exporters; what a kill leaves in the spool "
        "is stored at the next start, each span once). Default: acknowledge once committed",
    )
    p.set_defaults(run=run)


def token_from(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise InputError(f"--token-env names {variable}, which is not set (or empty)")
    return value


def run(args: argparse.Namespace) -> int:
    given: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "token": token_from(args.token_env),
        "attribution": parse_attribution(args.attribute),
    }
    # with a spool, its commits beside the receiver (a process of their own), not in turn with it
    options = OtlpOptions(**given) if args.spool is None else OtlpOptions.spooled(args.spool, **given)
    db = store_from(args)
    server = OtlpServer(db, load_salt(Path(settings.get("salt_file"))), options)
    out = sys.stderr if args.json else sys.stdout
    if options.token is None and options.host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"quotascope otlp: listening on {options.host} without a token: anyone who can reach it can add "
            "usage rows (use --token-env VAR)",
            file=sys.stderr,
            flush=True,
        )
    message = (
        f"quotascope otlp: receiving on {server.endpoint}/v1/traces into {db.describe()}"
        + (" (bearer token required)" if options.token else "")
        + (f", acknowledging once spooled in {args.spool}" if args.spool else "")
        + "; Ctrl-C or SIGTERM stops"
    )
    server.serve_forever(ready=lambda: print(message, file=out, flush=True))
    totals = server.writer.totals
    stats = server.receiver.stats
    document = {
        "endpoint": server.endpoint,
        "database": db.describe(),
        "requests": stats.requests,
        "spans": stats.spans,
        "llm_spans": stats.llm_spans,
        "stored": totals.stored,
        "duplicates": totals.duplicates,
        "rejected": totals.rejected,
        "refused_busy": stats.refused_busy,
        "refused_storage": stats.refused_storage,
    }
    if args.json:
        print(json.dumps(document))
    else:
        print(
            f"stopped: {stats.requests:,} requests, {stats.spans:,} spans, "
            f"of which {stats.llm_spans:,} LLM calls: "
            f"stored {totals.stored:,} + duplicates {totals.duplicates:,} + rejected {totals.rejected:,}"
            + (f"; refused {stats.refused_busy:,} requests while busy" if stats.refused_busy else ""),
            flush=True,
        )
    return 0
