"""`quotascope traces`: the OpenTelemetry Collector's `otel_traces` table in a ClickHouse store, read as usage
by ClickHouse itself (`storage.otel_traces`), and what became of every LLM span in it."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from models.errors import InputError
from models.genai_spans import parse_attribution
from quotascope.context import store_from
from quotascope.output import emit, table
from storage.clickhouse import connect
from storage.otel_traces import TracesAccount, account, link_traces, store_link
from storage.settle import RECENT, settle_recent


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "traces",
        parents=[parent],
        help="read the OpenTelemetry Collector's otel_traces table (ClickHouse store) as usage",
        description="For a ClickHouse store (--store) whose database holds the OpenTelemetry Collector "
        "clickhouseexporter's otel_traces table: make sure ClickHouse maps its GenAI spans to usage rows "
        "itself (two materialized views, the same mapping as `quotascope otlp`; spans written before are "
        "copied once), then say what became of every LLM span: stored, a retried duplicate, or rejected "
        "with a reason. A store links otel_traces by itself when it opens; this command chooses the "
        "attribution (--attribute, with --relink to change it) and shows the account. It also settles "
        "the copies of a request two writers stored at the same moment in the last day (the view racing "
        "an ingest): run it every few minutes where only the Collector writes.",
    )
    p.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="COLUMN=ATTRIBUTE",
        help="fill a usage column (team, project, key_id, endpoint) from a span or resource attribute, "
        "e.g. team=service.name (repeatable)",
    )
    p.add_argument(
        "--relink",
        action="store_true",
        help="change the attribution of a linked otel_traces (every span's usage row is written anew)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    if store.clickhouse is None:
        raise InputError(
            "otel_traces lives in ClickHouse: give the store, e.g. --store clickhouse://host:8123/db"
        )
    clickhouse = connect(store.clickhouse)
    link = store_link(clickhouse.layout, parse_attribution(args.attribute) if args.attribute else None)
    outcome = link_traces(clickhouse, link, relink=args.relink)
    if outcome == "no otel_traces":
        raise InputError(
            f"{store.clickhouse.display()} has no otel_traces table: point the OpenTelemetry Collector's "
            "clickhouseexporter at this database first"
        )
    settled = settle_recent(clickhouse, datetime.now(UTC) - RECENT)
    counted = account(clickhouse, link)
    document = {
        "store": store.clickhouse.display(),
        "link": outcome,
        "attribution": link.attribution_text,
        "llm_span_rows": counted.llm_span_rows,
        "stored": counted.stored,
        "duplicates": counted.duplicates,
        "rejected": counted.rejected,
        "balanced": counted.balanced,
        "settled": settled,
        "reasons": [{"reason": r, "spans": n} for r, n in counted.reasons],
    }
    emit(
        args.json,
        document,
        lambda: _text(store.clickhouse.display() if store.clickhouse else "", outcome, counted, settled),
    )
    return 0 if counted.balanced else 1


def _text(where: str, outcome: str, counted: TracesAccount, settled: int) -> str:
    lines = [
        f"otel_traces in {where}: {outcome}",
        f"LLM span rows {counted.llm_span_rows:,} = stored {counted.stored:,} + duplicates "
        f"{counted.duplicates:,} (exporter retries) + rejected {counted.rejected:,}"
        + ("" if counted.balanced else "  (does not add up: a span's key is also in another source)"),
    ]
    if settled:
        lines.append(f"settled {settled:,} surplus copies of requests two writers stored at the same moment")
    if counted.reasons:
        lines += ["", table(["rejected spans", "reason"], [(n, r) for r, n in counted.reasons])]
    return "\n".join(lines)
