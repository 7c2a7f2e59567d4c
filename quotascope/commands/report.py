"""`quotascope report spend|usage|profile|rejects`: what stored usage was, and what it cost."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from models.errors import InputError
from models.money import per_currency
from models.outside_text import for_terminal
from models.pricing import require_currency
from models.profile_bins import PRECISION, RELATIVE_ERROR
from models.spend import GROUP_KEYS, SpendRow, parse_by, totals
from models.usage import Distribution, UsageProfile
from quotascope import settings
from quotascope.arguments import period_options, selection_from, selection_options, whole
from quotascope.commands import reconcile
from quotascope.context import catalog_from, store_from
from quotascope.output import emit, table
from storage.reports import (
    read_rejects,
    read_usage_buckets,
    read_usage_profile,
    report_keys,
    spend_report,
)


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "report",
        parents=[parent],
        help="spend, usage per time bucket, the token profile, rejected records, or reconcile with the bill",
        description="Reports over stored usage (load it with `quotascope ingest`).",
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    dates = period_options()
    common = selection_options()
    keys = ",".join(GROUP_KEYS)
    spend = kinds.add_parser(
        "spend", parents=[parent, common], help="what usage cost, priced by the catalog version in force"
    )
    spend.add_argument(
        "--by", default="provider,model", help=f"group by some of {keys} (default provider,model)"
    )
    spend.add_argument(
        "--display-currency",
        "--currency",
        dest="currency",
        type=require_currency,
        help="show money in this currency (catalog FX rates; says which it used)",
    )
    usage = kinds.add_parser("usage", parents=[parent, common], help="requests and tokens per time bucket")
    usage.add_argument("--by", default="day", help=f"group by some of {keys}; day is added if no time key")
    kinds.add_parser(
        "profile",
        parents=[parent, common],
        help="average and p50/p90/p99 tokens per request (plan --from-usage)",
    )
    rejects = kinds.add_parser("rejects", parents=[parent], help="records ingestion rejected, with why")
    rejects.add_argument("--limit", type=whole, default=50, help="show at most this many (default 50)")
    rejects.add_argument(
        "--all-runs",
        action="store_true",
        help="every ingest's rejects (default: each file's latest ingest, which read all of it)",
    )
    for sub in (spend, usage, *(kinds.choices[k] for k in ("profile", "rejects"))):
        sub.set_defaults(run=run)
    reconcile.register_kind(kinds, [parent, dates])


def run(args: argparse.Namespace) -> int:
    db = store_from(args)
    if args.kind == "spend":
        by = parse_by(args.by, ("provider", "model"))
        currency = args.currency or (settings.get("display_currency").upper() or None)
        rows = spend_report(db, catalog_from(args), selection_from(args), by, currency)
        emit(args.json, [r.to_json() for r in rows], lambda: render_spend(rows, by))
    elif args.kind == "usage":
        by = report_keys(parse_by(args.by, ("day",)))
        frame = read_usage_buckets(db, selection_from(args), by)
        documents = [{k: _key_json(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
        emit(args.json, documents, lambda: render_usage(documents, by))
    elif args.kind == "profile":
        s = selection_from(args)
        if s.project is not None:
            raise InputError("report profile selects by --provider, --model, --team and time, not --project")
        profile = read_usage_profile(
            db, since=s.since, until=s.until, provider=s.provider, model=s.model, team=s.team
        )
        if profile.requests == 0:
            raise InputError("no stored usage matches; load logs with `quotascope ingest PATH...`")
        document = profile_json(profile)
        emit(args.json, document, lambda: render_profile(document))
    else:
        frame = read_rejects(db, args.limit, all_runs=args.all_runs)
        documents = [{k: _key_json(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
        emit(args.json, documents, lambda: render_rejects(documents))
    return 0


def _key_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    return "?" if value is None else str(value)


def render_spend(rows: list[SpendRow], by: tuple[str, ...]) -> str:
    if not rows:
        return "no stored usage matches; load logs with `quotascope ingest PATH...`"
    headers = [*by, "requests", "input", "cached", "output", "reasoning", "cost", "cache savings"]
    body = [
        [
            *(_cell(row.to_json()[k]) for k in by),
            f"{row.requests:,}",
            f"{row.input_tokens:,}",
            f"{row.cached_input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.reasoning_tokens:,}",
            str(row.cost) if row.cost else "unpriced",
            str(row.cache_savings) if row.cache_savings and row.cache_savings.amount else "",
        ]
        for row in rows
    ]
    lines = [table(headers, body)]
    total = totals(rows)
    if total:
        lines.append("\ntotal: " + " + ".join(str(m) for m in total.values()))
    unpriced = sorted({m for r in rows for m in r.unpriced_models})
    if unpriced:
        requests = sum(r.unpriced_requests for r in rows)
        lines.append(
            f"unpriced ({requests:,} requests, not counted above): "
            f"{', '.join(for_terminal(u) for u in unpriced)} — "
            "no catalog price; add the offer with --catalog FILE (or tag the provider at ingest)"
        )
    versions = sorted({v for r in rows for v in r.price_versions})
    if versions:
        lines.append(f"priced with: {', '.join(versions)}")
    rates = sorted({f for r in rows for f in r.fx})
    if rates:
        lines.append(f"FX: {'; '.join(rates)}")
    notes = sorted({r.currency_note for r in rows if r.currency_note})
    if notes:
        lines.append(f"currency: {'; '.join(notes)}; pass --display-currency to choose")
    stated = [r.billed_cost for r in rows if r.billed_cost]
    if stated:
        lines.append(
            "the logs themselves state: "
            + " + ".join(str(m) for _, m in sorted(per_currency(stated).items()))
            + f" (for the {len(stated):,} row(s) whose records carry a cost)"
        )
    return "\n".join(lines)


def render_usage(documents: list[dict[str, Any]], by: tuple[str, ...]) -> str:
    if not documents:
        return "no stored usage matches; load logs with `quotascope ingest PATH...`"
    fields = (
        "requests",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
    )
    headers = [*by, "requests", "input", "cached", "cache write", "output", "reasoning"]
    body = [[*(_cell(d[k]) for k in by), *(f"{d[f]:,}" for f in fields)] for d in documents]
    return table(headers, body)


def _distribution(d: Distribution | None) -> dict[str, float] | None:
    if d is None:
        return None
    return {"mean": round(d.mean, 3), "p50": round(d.p50, 3), "p90": round(d.p90, 3), "p99": round(d.p99, 3)}


def profile_json(profile: UsageProfile) -> dict[str, Any]:
    return {
        "requests": profile.requests,
        "input_tokens": _distribution(profile.input_tokens),
        "cached_input_tokens": _distribution(profile.cached_input_tokens),
        "output_tokens": _distribution(profile.output_tokens),
        "reasoning_tokens": _distribution(profile.reasoning_tokens),
        "cached_share": round(profile.cached_share, 6),
        "ttft_ms": _distribution(profile.ttft_ms),
        "tokens_per_s": _distribution(profile.tokens_per_s),
        # percentiles are their bin's value (`models.profile_bins`); means are exact
        "percentiles_relative_error": RELATIVE_ERROR,
    }


def render_profile(document: dict[str, Any]) -> str:
    rows = []
    for name in (
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "ttft_ms",
        "tokens_per_s",
    ):
        d = document[name]
        if d is not None:
            # a percentile is its bin's value, within 0.5 %: whole numbers say so
            percentiles = (f"{d[k]:,.0f}" for k in ("p50", "p90", "p99"))
            rows.append([name.replace("_", " "), f"{d['mean']:,.1f}", *percentiles])
    head = (
        f"{document['requests']:,} requests; cached share of input {document['cached_share']:.1%} "
        "(per request; `quotascope plan --from-usage` takes this profile)\n" + PRECISION
    )
    return head + "\n" + table(["per request", "mean", "p50", "p90", "p99"], rows)


def render_rejects(documents: list[dict[str, Any]]) -> str:
    if not documents:
        return "no rejected records"
    return table(
        ["read at", "file", "line", "reason", "excerpt"],
        [[d["started_at"], d["path"], str(d["line_no"]), d["reason"], d["excerpt"] or ""] for d in documents],
        align_right=[False, False, True, False, False],
    )
