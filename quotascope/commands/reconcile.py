"""`quotascope report reconcile`: the cost computed from your logs against what the provider billed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from models.errors import InputError
from models.outside_text import for_terminal
from models.reconcile import RECONCILE_KEYS, ReconcileRow, parse_reconcile_by, parse_threshold
from quotascope import settings
from quotascope.context import catalog_from, store_from
from quotascope.output import emit, table
from quotascope.webhooks import gap_webhook
from storage.reconcile import GapAlert, reconcile_report, record_gap_alerts, set_gap_webhook_status

DEFAULT_DAYS = 30
DEFAULT_THRESHOLD_TEXT = settings.BY_NAME["reconcile_threshold"].default


def register_kind(kinds: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add `reconcile` to `quotascope report` (its --since/--until come from the report's common options)."""
    p = kinds.add_parser(
        "reconcile",
        parents=parents,
        help="computed cost of the logs vs the bill pulled from the provider, and what explains the gap",
        description="Per group, the cost computed from stored usage (the spend report's figure), the billed "
        "cost pulled with `quotascope pull openai-costs|anthropic-costs`, gap = billed - computed and "
        "gap_share = gap / billed, with what explains it where it can be known (requests billed but not "
        "logged, unpriced models, token totals that differ; pull the usage reports too for those). Days over "
        "the threshold are flagged and raise an alert (stored; POSTed to QUOTASCOPE_GAP_WEBHOOK if set).",
    )
    p.add_argument(
        "--by",
        default="day,provider",
        help=f"group by some of {','.join(RECONCILE_KEYS)} (default day,provider)",
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="flag gaps above this share, e.g. 2%% or 0.02 (default "
        f"{DEFAULT_THRESHOLD_TEXT.replace('%', '%%')}; env QUOTASCOPE_GAP_THRESHOLD)",
    )
    p.add_argument("--no-alerts", action="store_true", help="do not record or send alerts for flagged days")
    p.set_defaults(run=run)


def _threshold(text: str) -> Decimal:
    try:
        return parse_threshold(text)
    except InputError as e:  # argparse says a type's mistake as one sentence, with exit code 2
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    db = store.db
    by = parse_reconcile_by(args.by)
    threshold = (
        args.threshold if args.threshold is not None else parse_threshold(settings.get("reconcile_threshold"))
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    since = args.since or (now - timedelta(days=DEFAULT_DAYS)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    rows = reconcile_report(store, catalog_from(args), since, args.until, by, threshold)
    alerts: list[GapAlert] = []
    delivered: dict[int, str] = {}
    if not args.no_alerts and "day" in by:
        alerts = record_gap_alerts(db, rows, threshold, now)
        send = gap_webhook(settings.get("reconcile_webhook").strip())
        if alerts and send is not None:
            delivered = send(alerts)
            set_gap_webhook_status(db, delivered)
    document = {
        "since": since.isoformat(),
        "until": args.until.isoformat() if args.until else None,
        "threshold": str(threshold),
        "rows": [r.to_json() for r in rows],
        "new_alerts": [{**a.payload(), "webhook": delivered.get(a.alert_id)} for a in alerts],
    }
    emit(args.json, document, lambda: render(rows, by, threshold, alerts, delivered))
    return 0


def _share(row: ReconcileRow) -> str:
    return "" if row.gap_share is None else f"{row.gap_share * 100:.1f} %"


def _amount(money: Any) -> str:
    return "-" if money is None else f"{money.amount.quantize(Decimal('0.0001'))} {money.currency}"


def render(
    rows: list[ReconcileRow],
    by: tuple[str, ...],
    threshold: Decimal,
    alerts: list[GapAlert],
    delivered: dict[int, str],
) -> str:
    if not rows:
        return (
            "nothing to reconcile in this period: pull the bill with `quotascope pull openai-costs` (or "
            "anthropic-costs) and load your logs with `quotascope ingest`"
        )
    body = [
        [
            *(_cell(row.to_json()[k]) for k in by),
            _amount(row.computed),
            _amount(row.billed),
            _amount(row.gap),
            _share(row),
            "FLAG" if row.flagged else "",
        ]
        for row in rows
    ]
    lines = [table([*by, "computed", "billed", "gap", "gap share", f"> {threshold * 100:g} %"], body)]
    for row in rows:
        if row.explanations and (row.flagged or row.gap is None or row.gap.amount):
            where = ", ".join(for_terminal(_cell(row.to_json()[k])) for k in by)
            lines.append(f"\n{where}:")
            # one line each: a model name with a newline in it cannot fake another line
            lines += [f"  - {for_terminal(text)}" for text in row.explanations]
    for alert in alerts:
        status = delivered.get(alert.alert_id)
        lines.append(
            f"\nnew alert: {for_terminal(alert.message)}" + (f" [webhook {status}]" if status else "")
        )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "?" if value is None else str(value)
