"""`quotascope budget`: monthly budgets, their forecast and alerts, and off-peak advice."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from models.budget import Budget, as_of_for, budgets_for, offpeak_advice, parse_scope, status_document
from models.errors import InputError
from models.forecast import month_days, month_start
from models.money import format_amount
from models.pricing import require_currency
from quotascope import settings
from quotascope.arguments import month, open_share, positive, positive_whole, when
from quotascope.context import catalog_from, db_path, store_from
from quotascope.output import emit, say, table
from quotascope.webhooks import deliver_all, new_client
from storage.budgets import (
    NO_BUDGETS_HINT,
    budget_statuses,
    read_budgets,
    record_alerts,
    remove_budget,
    save_budget,
    set_webhook_status,
)
from storage.replay import UsageFilter
from storage.reports import priced_groups


def scope_arg(text: str) -> tuple[str, str | None]:
    try:
        return parse_scope(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "budget",
        parents=[parent],
        help="monthly budgets per team, project or in total: forecast, alerts, off-peak advice",
        description="Set monthly budgets, see month-end forecasts and when each runs out, raise alerts at "
        "80/95/100 %% (stored, and POSTed to a webhook), and see what off-peak hours would have saved.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("set", parents=[parent], help="create or replace a budget")
    s.add_argument("--scope", type=scope_arg, required=True, metavar="total|team=X|project=Y")
    s.add_argument("--amount", type=positive, required=True, metavar="AMOUNT", help="per month")
    s.add_argument("--currency", required=True, metavar="CODE")
    s.add_argument("--month", type=month, metavar="YYYY-MM", help="only this month (default: every month)")
    s.add_argument("--webhook", metavar="URL", help="POST alerts here as JSON")
    s.set_defaults(run=run_set)
    ls = actions.add_parser("list", parents=[parent], help="every budget")
    ls.set_defaults(run=run_list)
    rm = actions.add_parser("remove", parents=[parent], help="delete a budget by id")
    rm.add_argument("budget_id", type=positive_whole, metavar="ID")
    rm.set_defaults(run=run_remove)
    st = actions.add_parser("status", parents=[parent], help="spend, forecast and alerts for a month")
    st.add_argument("--month", type=month, metavar="YYYY-MM", help="default: the current month (UTC)")
    st.add_argument("--as-of", type=when, metavar="TIMESTAMP", help="pretend it is this moment (UTC)")
    st.add_argument("--confidence", type=open_share, default=Decimal("0.9"), metavar="SHARE")
    st.add_argument("--no-webhook", action="store_true", help="record alerts without POSTing them")
    st.set_defaults(run=run_status)
    op = actions.add_parser(
        "offpeak", parents=[parent], help="what running this traffic in the cheapest hours would have saved"
    )
    op.add_argument("--month", type=month, metavar="YYYY-MM", help="default: the current month (UTC)")
    op.add_argument("--currency", metavar="CODE", help="default: the display-currency setting, else USD")
    for name in ("team", "project", "provider", "model"):
        op.add_argument(f"--{name}", help="the batch traffic to consider")
    op.set_defaults(run=run_offpeak)


# ------------------------------------------------------------------------------------------ set / list


def run_set(args: argparse.Namespace) -> int:
    kind, value = args.scope
    budget = Budget(
        kind, value, args.amount, require_currency(args.currency), args.month, args.webhook or None
    )
    saved = save_budget(db_path(args), budget, _now())
    document = _budget_document(saved)
    emit(
        args.json,
        document,
        lambda: (
            f"budget {saved.budget_id}: {saved.label}, {format_amount(saved.amount, 2)} {saved.currency} "
            f"{'per month' if saved.month is None else 'for ' + saved.month_label}"
            + (f", alerts to {saved.webhook_url}" if saved.webhook_url else "")
        ),
    )
    return 0


def _budget_document(b: Budget) -> dict[str, Any]:
    return {
        "budget_id": b.budget_id,
        "scope": b.label,
        "month": None if b.month is None else f"{b.month:%Y-%m}",
        "amount": {"amount": f"{b.amount}", "currency": b.currency},
        "webhook_url": b.webhook_url,
    }


def run_list(args: argparse.Namespace) -> int:
    budgets = read_budgets(db_path(args))
    document = {"budgets": [_budget_document(b) for b in budgets]}
    rows = [
        [
            b.budget_id,
            b.label,
            b.month_label,
            f"{format_amount(b.amount, 2)} {b.currency}",
            b.webhook_url or "",
        ]
        for b in budgets
    ]

    def text() -> str:
        if not budgets:
            return f"No budgets yet: {NO_BUDGETS_HINT}"
        return table(["id", "scope", "month", "amount", "webhook"], rows)

    emit(args.json, document, text)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    if not remove_budget(db_path(args), args.budget_id):
        raise InputError(f"there is no budget {args.budget_id}; see `quotascope budget list`")
    emit(args.json, {"removed": args.budget_id}, lambda: f"budget {args.budget_id} removed")
    return 0


# ------------------------------------------------------------------------------------------ status


def run_status(args: argparse.Namespace) -> int:
    store = store_from(args)
    db = store.db
    now = args.as_of or _now()
    month = args.month or month_start(now.date())
    if not budgets_for(read_budgets(db), month):
        message = f"No budgets for {month:%Y-%m}: set one with `quotascope budget set --scope total ...`"
        emit(args.json, {"month": f"{month:%Y-%m}", "budgets": []}, lambda: message)
        return 0
    statuses = budget_statuses(store, catalog_from(args), month, now, confidence=args.confidence)
    documents = []
    failures = []
    for status in statuses:
        raised = record_alerts(db, status, now)
        delivered: dict[int, str] = {}
        webhook = status.budget.webhook_url
        if raised and webhook and not args.no_webhook:
            with new_client() as client:
                delivered = deliver_all(client, raised)
            set_webhook_status(db, delivered)
            failures += [
                f"{status.budget.label}: webhook {s}" for s in delivered.values() if s.startswith("failed")
            ]
        document = status_document(status)
        document["new_alerts"] = [
            {
                "alert_id": a.alert_id,
                "threshold": float(a.threshold),
                "kind": a.kind,
                "webhook": delivered.get(a.alert_id),
            }
            for a in raised
        ]
        documents.append(document)
    result = {"month": f"{month:%Y-%m}", "as_of": as_of_for(month, now), "budgets": documents}
    emit(args.json, result, lambda: render_status(result))
    for failure in failures:  # a webhook that failed never fails the command: it is said, and recorded
        say(f"quotascope: {failure}", file=sys.stderr)
    return 0


def render_status(doc: dict[str, Any]) -> str:
    rows = []
    notes = []
    for b in doc["budgets"]:
        money = b["budget"]["currency"]
        forecast = b["forecast"]
        earliest, latest = b["exhausted_between"]
        runs_out = "-"
        if b["exhausted_on"] is not None:
            runs_out = f"{b['exhausted_on']:%m-%d}"
            if earliest and latest and (earliest, latest) != (b["exhausted_on"],) * 2:
                runs_out += f" ({earliest:%m-%d}..{latest:%m-%d})"
        elif earliest is not None:
            runs_out = f"maybe from {earliest:%m-%d}"
        rows.append(
            [
                b["scope"],
                f"{format_amount(Decimal(b['budget']['amount']), 2)} {money}",
                f"{format_amount(Decimal(b['spent']['amount']), 2)} ({b['share_spent'] * 100:.0f} %)",
                f"{format_amount(Decimal(forecast['amount']), 2)} ({b['share_forecast'] * 100:.0f} %)",
                " - ".join(format_amount(Decimal(forecast[edge]), 2) for edge in ("low", "high")),
                runs_out,
                ", ".join(f"{a['threshold'] * 100:.0f} % {a['kind']}" for a in b["alerts"]) or "-",
            ]
        )
        for alert in b["new_alerts"]:
            message = next(a["message"] for a in b["alerts"] if a["threshold"] == alert["threshold"])
            notes.append(
                f"  new alert: {message}" + (f" [webhook {alert['webhook']}]" if alert["webhook"] else "")
            )
        if b["unpriced_requests"]:
            notes.append(f"  {b['scope']}: {b['unpriced_requests']:,} requests are unpriced (not counted)")
        if b["weekly_shape"] is None:
            notes.append(f"  {b['scope']}: fewer than 14 days of history, so no weekly shape yet")
    confidence = doc["budgets"][0]["forecast"]["confidence"]
    head = f"Budgets for {doc['month']} as of {doc['as_of']:%Y-%m-%d %H:%M} UTC"
    headers = [
        "scope",
        "budget",
        "spent",
        "month-end forecast",
        f"{confidence:.0%} interval",
        "runs out",
        "alerts",
    ]
    lines = [head, "", table(headers, rows, [False] * len(headers))]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ off-peak


def run_offpeak(args: argparse.Namespace) -> int:
    db = store_from(args)
    catalog = catalog_from(args)
    month = args.month or month_start(_now().date())
    since = datetime.combine(month, datetime.min.time())
    until = datetime.combine(month_days(month)[-1] + timedelta(days=1), datetime.min.time())
    currency = require_currency(args.currency or settings.get("display_currency") or "USD")
    selection = UsageFilter(since, until, args.provider, args.model, args.team, args.project)
    groups = priced_groups(db, catalog, selection, ())
    advice = offpeak_advice(groups, catalog, currency)
    document = {
        "month": f"{month:%Y-%m}",
        "spend": {"amount": f"{advice.total.quantize(Decimal('0.01'))}", "currency": currency},
        "saving": {"amount": f"{advice.saving.quantize(Decimal('0.01'))}", "currency": currency},
        "share": float(round(advice.share, 4)),
        "by_period": [
            {
                "offer": s.offer_id,
                "period": s.period,
                "cheapest": s.cheapest,
                "spend": f"{s.spend.quantize(Decimal('0.01'))}",
                "saving": f"{s.saving.quantize(Decimal('0.01'))}",
            }
            for s in advice.savings
        ],
        "unpriced_requests": advice.unpriced_requests,
    }

    def text() -> str:
        head = (
            f"{month:%Y-%m}: {format_amount(advice.total, 2)} {currency} of spend; moving it to each "
            f"offer's cheapest hours would have saved {format_amount(advice.saving, 2)} {currency} "
            f"({advice.share:.1%})"
        )
        if not advice.savings:
            return head + "\n(no offer used here prices hours differently)"
        rows = [
            [s.offer_id, s.period, s.cheapest, format_amount(s.spend, 2), format_amount(s.saving, 2)]
            for s in advice.savings
        ]
        return head + "\n\n" + table(["offer", "priced in", "cheapest", "spend", "saving"], rows)

    emit(args.json, document, text)
    return 0
