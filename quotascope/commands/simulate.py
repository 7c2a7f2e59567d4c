"""`quotascope simulate`: replay recorded traffic against other offers, side by side."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any

from models.capacity import SEED_TOKENS_PER_S, SEED_TTFT_MS, given_latency
from models.money import Money, format_amount
from models.replay import POLICIES, ReplayOptions
from quotascope.arguments import non_negative, positive, positive_whole, when
from quotascope.context import catalog_from, store_from
from quotascope.output import emit, table
from storage.replay import UsageFilter
from storage.simulation import DEFAULT_DAYS, Simulation, simulate_offers

LIMIT_OPTIONS = ("tpm", "rpm", "itpm", "otpm", "tpd", "rpd", "max_concurrency")


def ratio_range(text: str) -> tuple[Decimal, Decimal]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [Decimal(p) for p in parts]
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"looks like 0.9,1.1 (or one ratio), got {text!r}") from None
    if len(values) not in (1, 2) or any(not v.is_finite() or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"looks like 0.9,1.1 (or one ratio), got {text!r}")
    low, high = values[0], values[-1]
    if high < low:
        raise argparse.ArgumentTypeError(f"the low end comes first, e.g. 0.9,1.1; got {text!r}")
    return low, high


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "simulate",
        parents=[parent],
        help="replay recorded traffic against other offers: throttling and cost, side by side",
        description="Push stored usage through each target offer's limits as they are enforced (per-minute "
        "or per-second windows, token buckets, max_tokens reservation, cached-token exclusion, concurrency) "
        "and re-price it under the target's prices and cache rules.",
    )
    p.add_argument(
        "--offer", action="append", default=[], metavar="ID", help="target offer (repeat to compare)"
    )
    p.add_argument(
        "--keys", type=positive_whole, default=1, metavar="N", help="keys sharing the traffic (default 1)"
    )
    p.add_argument(
        "--accounts",
        type=positive_whole,
        default=1,
        metavar="N",
        help="accounts, for account-scoped limits (default 1)",
    )
    p.add_argument(
        "--policy", choices=POLICIES, default="reject", help="on a limit: 429 (reject) or wait (queue)"
    )
    p.add_argument(
        "--since",
        type=when,
        help=f"from (UTC: 2026-11-01, 7d, now; default: {DEFAULT_DAYS} days before the last request)",
    )
    p.add_argument("--until", type=when, help="up to, not including (UTC; default: after the last request)")
    p.add_argument(
        "--tokenizer-ratio",
        type=ratio_range,
        default=(Decimal(1), Decimal(1)),
        metavar="LOW,HIGH",
        help="target tokens per recorded token, e.g. 0.9,1.1: a cost band (default 1)",
    )
    p.add_argument(
        "--max-tokens",
        type=positive_whole,
        metavar="N",
        help="max_tokens your clients send (reserved by some)",
    )
    p.add_argument(
        "--ttft-ms",
        type=non_negative,
        metavar="MS",
        help=f"for requests without a recorded latency (default {SEED_TTFT_MS}, the seed measurement)",
    )
    p.add_argument(
        "--tokens-per-s",
        type=positive,
        metavar="N",
        help=f"likewise, output speed (default {SEED_TOKENS_PER_S})",
    )
    p.add_argument(
        "--prices-at",
        type=when,
        metavar="DATE|now",
        help="price and limit everything under the version in force then (default: each request's date)",
    )
    p.add_argument(
        "--currency", metavar="CODE", help="show money in this currency (default: the first target's)"
    )
    p.add_argument(
        "--bucket-s",
        type=positive_whole,
        metavar="S",
        help="width of aggregated rows' buckets (default: inferred)",
    )
    limits = p.add_argument_group("limits (replace the offers')")
    for name in LIMIT_OPTIONS:
        limits.add_argument(f"--{name.replace('_', '-')}", type=positive_whole, metavar="N")
    which = p.add_argument_group("which stored usage")
    for name in ("provider", "model", "team", "project"):
        which.add_argument(f"--{name}")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    latency = None
    if args.ttft_ms is not None or args.tokens_per_s is not None:
        latency = given_latency(args.ttft_ms, args.tokens_per_s)
    options = ReplayOptions(
        keys=args.keys,
        accounts=args.accounts,
        policy=args.policy,
        tokenizer_ratio=args.tokenizer_ratio,
        max_tokens=args.max_tokens,
        currency=args.currency.upper() if args.currency else None,
        limits={name: getattr(args, name) for name in LIMIT_OPTIONS if getattr(args, name) is not None},
        version_at=args.prices_at,
    )
    selection = UsageFilter(args.since, args.until, args.provider, args.model, args.team, args.project)
    simulation = simulate_offers(
        store_from(args),
        catalog_from(args),
        args.offer,
        options,
        selection,
        latency=latency,
        bucket_s=args.bucket_s,
    )
    document = simulation_document(simulation)
    emit(args.json, document, lambda: render(document))
    return 0


# ------------------------------------------------------------------------------------------ output


def _count(value: float) -> int | float:
    return round(value) if abs(value - round(value)) < 1e-6 else round(value, 3)


def _money(value: Money | None) -> dict[str, str] | None:
    return None if value is None else value.to_json(6)


def simulation_document(simulation: Simulation) -> dict[str, Any]:
    actual = simulation.actual
    cost_actual = _money(actual.cost if actual else None)
    return {
        "period": {"since": simulation.selection.since, "until": simulation.selection.until},
        "requests": _count(simulation.requests),
        "cost_actual": cost_actual,
        "cost_actual_unpriced_requests": actual.unpriced_requests if actual else 0,
        "unknown_models": list(actual.unpriced_models) if actual else [],
        "targets": [
            {
                "offer": r.offer_id,
                "name": r.offer_name,
                "policy": r.policy,
                "requests": _count(r.requests),
                "throttled_requests": _count(r.throttled_requests),
                "throttled_share": round(r.throttled_share, 6),
                "minutes_over_limit": r.minutes_over_limit,
                "worst_minute": None
                if r.worst_minute is None
                else {
                    "minute": r.worst_minute.minute,
                    "requests": _count(r.worst_minute.requests),
                    "throttled": _count(r.worst_minute.throttled),
                },
                "added_delay_s": {
                    "p50": None if r.delay_p50_s is None else round(r.delay_p50_s, 3),
                    "p99": None if r.delay_p99_s is None else round(r.delay_p99_s, 3),
                },
                "max_queue": None if r.max_queue is None else _count(r.max_queue),
                "cost": _money(r.cost.cost),
                "cost_band": {"low": _money(r.cost_low), "high": _money(r.cost_high)},
                "cost_unpriced_requests": _count(r.cost.unpriced_requests),
                "cost_actual": cost_actual,
                "keys": r.keys,
                "accounts": r.accounts,
                "scope": r.scope,
                "keys_needed": r.keys_needed,
                "limits": dict(r.limits),
                "limits_needed": dict(r.limits_needed),
                "window": r.window,
                "assumptions": list(r.assumptions),
            }
            for r in simulation.replays
        ],
    }


def _money_text(doc: dict[str, str] | None) -> str:
    if doc is None:
        return "unpriced"
    return f"{format_amount(Decimal(doc['amount']), 2)} {doc['currency']}"


def _share(value: float) -> str:
    return f"{value * 100:.2f} %"


def render(doc: dict[str, Any]) -> str:
    since, until = doc["period"]["since"], doc["period"]["until"]
    head = [
        f"Replay of {doc['requests']:,} recorded requests, "
        f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC",
        f"recorded cost (as served, catalog prices): {_money_text(doc['cost_actual'])}"
        + (
            f" ({doc['cost_actual_unpriced_requests']:,} requests unpriced)"
            if doc["cost_actual_unpriced_requests"]
            else ""
        ),
        "",
    ]
    targets = doc["targets"]
    rows: list[list[str]] = []

    def add(label: str, cell: Any) -> None:
        rows.append([label, *[cell(t) for t in targets]])

    add("policy", lambda t: t["policy"])
    add("throttled", lambda t: f"{_share(t['throttled_share'])} ({t['throttled_requests']:,})")
    add("minutes over limit", lambda t: f"{t['minutes_over_limit']:,}")
    add(
        "worst minute",
        lambda t: (
            "-"
            if t["worst_minute"] is None
            else f"{t['worst_minute']['minute']:%m-%d %H:%M} ({t['worst_minute']['throttled']:,.0f} of "
            f"{t['worst_minute']['requests']:,.0f})"
        ),
    )
    if any(t["policy"] == "queue" for t in targets):
        add(
            "added delay p50 / p99",
            lambda t: (
                "-"
                if t["added_delay_s"]["p50"] is None
                else f"{t['added_delay_s']['p50']:g} s / {t['added_delay_s']['p99']:g} s"
            ),
        )
        add("longest queue", lambda t: "-" if t["max_queue"] is None else f"{t['max_queue']:,.0f}")
    add("limits per key/account", lambda t: _limits_text(t["limits"], t["window"]) or "none published")
    add(
        "keys needed",
        lambda t: f"{t['keys_needed']} {t['scope']}{'s' if t['keys_needed'] != 1 else ''}",
    )
    add("or per key/account", lambda t: _limits_text(t["limits_needed"], "") or "-")
    add("cost", lambda t: _money_text(t["cost"]))
    if any(t["cost_band"]["low"] != t["cost_band"]["high"] for t in targets):
        add(
            "cost band",
            lambda t: f"{_money_text(t['cost_band']['low'])} - {_money_text(t['cost_band']['high'])}",
        )
    lines = [*head, table(["", *[t["offer"] for t in targets]], rows, [False] * (len(targets) + 1))]
    # what every target shares is said once
    shared = [a for a in targets[0]["assumptions"] if all(a in t["assumptions"] for t in targets[1:])]
    shared = [a for a in shared if len(targets) > 1]
    notes = [f"  {a}" for a in shared]
    notes += [f"  {t['offer']}: {a}" for t in targets for a in t["assumptions"] if a not in shared]
    if doc["unknown_models"]:
        notes.append(f"  recorded cost: no catalog offer for {', '.join(doc['unknown_models'])}")
    if notes:
        lines += ["", "assumptions:", *notes]
    return "\n".join(lines)


def _limits_text(limits: dict[str, int], window: str) -> str:
    text = ", ".join(
        f"{name.replace('max_concurrency', 'concurrency')} {value:,}" for name, value in limits.items()
    )
    return f"{text} ({window})" if text and window and window != "minute" else text
