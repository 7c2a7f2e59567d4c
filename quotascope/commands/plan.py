"""`quotascope plan`: the capacity & cost model from the command line."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from models.capacity import SEED_TOKENS_PER_S, SEED_TTFT_MS, given_latency
from models.catalog import (
    Catalog,
    CountingRules,
    Limits,
    OfferVersion,
    to_utc_naive,
)
from models.cost import Demand
from models.errors import InputError
from models.mix import Mix, mix_by_overflow, mix_by_weights
from models.money import Money, format_amount
from models.plan import Plan, plan_versions, with_overrides
from models.profile import PRESETS, TokenProfile
from models.selfhost import BreakEven, SelfHost, break_even
from quotascope.arguments import (
    at_least_one,
    non_negative,
    number_list,
    positive,
    positive_whole,
    price_per_mtok,
    share,
    when,
    whole_list,
)
from quotascope.context import catalog_from, store_from
from quotascope.output import emit, table

LIMIT_OPTIONS = ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency")
COMPONENT_OPTIONS = ("system_tokens", "context_tokens", "user_tokens", "answer_tokens", "rounds")


# ------------------------------------------------------------------------------------------ option types


def fee_call(text: str) -> tuple[str, Decimal]:
    name, sep, count = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"looks like web_search=1.5, got {text!r}")
    return name.strip(), non_negative(count)


# ------------------------------------------------------------------------------------------ registration


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "plan",
        parents=[parent],
        help="capacity & cost: questions/minute, binding limit, concurrency, keys, cost",
        description="Turn an offer's limits (or your own) and a token profile into sustainable questions per "
        "minute, the binding limit, concurrency, keys needed and cost. Explicit options override the offer.",
    )
    p.add_argument(
        "--offer",
        action="append",
        default=[],
        metavar="ID",
        help="catalog offer (repeat to compare side by side; see `quotascope catalog list`)",
    )
    limits = p.add_argument_group("limits (override the offer's)")
    for name in LIMIT_OPTIONS:
        limits.add_argument(f"--{name.replace('_', '-')}", type=positive_whole, metavar="N")
    limits.add_argument(
        "--ptus", type=positive_whole, metavar="N", help="provisioned units bought (Azure PTU offers)"
    )
    lat = p.add_argument_group(
        f"latency (default: the seed article's Ark measurement, {SEED_TTFT_MS} ms and {SEED_TOKENS_PER_S} "
        "tokens/s)"
    )
    lat.add_argument("--ttft-ms", type=non_negative, metavar="MS")
    lat.add_argument("--tokens-per-s", type=positive, metavar="N", help="output tokens per second per stream")
    prof = p.add_argument_group("token profile (per LLM call; default preset r1-reasoning)")
    prof.add_argument("--preset", choices=sorted(PRESETS), help="a profile from the seed article")
    prof.add_argument("--input-tokens", type=non_negative, metavar="N", help="all prompt tokens")
    prof.add_argument("--output-tokens", type=non_negative, metavar="N", help="all generated tokens")
    prof.add_argument("--system-tokens", type=non_negative, metavar="N")
    prof.add_argument("--context-tokens", type=non_negative, metavar="N", help="retrieval / web search")
    prof.add_argument("--user-tokens", type=non_negative, metavar="N")
    prof.add_argument("--answer-tokens", type=non_negative, metavar="N", help="visible answer")
    prof.add_argument("--reasoning-tokens", type=non_negative, metavar="N", help="part of output")
    prof.add_argument("--rounds", type=non_negative, metavar="K", help="remembered rounds of history")
    prof.add_argument("--history", choices=("growing", "sliding"), default="growing")
    prof.add_argument("--calls-per-question", type=positive, default=Decimal(1), metavar="N")
    prof.add_argument("--max-tokens", type=positive_whole, metavar="N")
    prof.add_argument("--from-usage", action="store_true", help="the profile of stored usage (--db)")
    prof.add_argument("--since", type=when, help="with --from-usage: from (UTC): 2026-11-01, 7d, now")
    prof.add_argument("--until", type=when, help="with --from-usage: up to, not including (UTC)")
    prof.add_argument("--provider", help="with --from-usage")
    prof.add_argument("--model", help="with --from-usage")
    prof.add_argument("--team", help="with --from-usage")
    prof.add_argument(
        "--cache-hit-rate",
        type=share,
        metavar="SHARE",
        help="share of input served from cache (default: from prefix reuse and the offer's rules)",
    )
    price = p.add_argument_group("prices per 1M tokens (override the offer's)")
    price.add_argument("--price-input", type=price_per_mtok, metavar="P", help="cache miss")
    price.add_argument("--price-cached", type=price_per_mtok, metavar="P", help="cache hit")
    price.add_argument("--price-cache-write", type=price_per_mtok, metavar="P")
    price.add_argument("--price-output", type=price_per_mtok, metavar="P")
    price.add_argument("--price-reasoning", type=price_per_mtok, metavar="P")
    price.add_argument("--currency", metavar="CODE", help="currency of the prices you give")
    price.add_argument(
        "--fee-calls",
        type=fee_call,
        action="append",
        default=[],
        metavar="NAME=N",
        help="per-call fees per question, e.g. web_search=1",
    )
    price.add_argument("--at", type=when, metavar="TIMESTAMP", help="which price version (default: now)")
    price.add_argument(
        "--hourly-shape",
        type=number_list,
        metavar="W0,...,W23",
        help="demand weight per UTC hour (24 or 168 values) for time-of-day prices",
    )
    price.add_argument("--display-currency", metavar="CODE", help="show money in this currency (catalog FX)")
    demand = p.add_argument_group("demand")
    demand.add_argument("--peak-qpm", type=positive, metavar="Q", help="peak questions per minute")
    demand.add_argument("--users", type=positive, metavar="N")
    demand.add_argument("--questions-per-user-day", type=positive, metavar="N")
    demand.add_argument(
        "--peak-factor",
        type=at_least_one,
        default=Decimal(1),
        metavar="F",
        help="peak over average (default 1)",
    )
    mix = p.add_argument_group("multi-offer mix (with several --offer)")
    mix.add_argument("--mix", choices=("weights", "overflow"))
    mix.add_argument("--weights", type=number_list, metavar="W1,W2")
    mix.add_argument("--keys", type=whole_list, metavar="K1,K2", help="keys per offer for overflow")
    host = p.add_argument_group("self-host vs API")
    host.add_argument("--selfhost-node-cost-per-hour", type=non_negative, metavar="AMOUNT")
    host.add_argument("--selfhost-currency", metavar="CODE", default=None)
    host.add_argument("--selfhost-tokens-per-s", type=positive, metavar="N", help="aggregate per node")
    host.add_argument("--selfhost-utilization", type=share, default=Decimal(1), metavar="SHARE")
    host.add_argument("--selfhost-nodes", type=positive_whole, default=1, metavar="N")
    p.set_defaults(run=run)


# ------------------------------------------------------------------------------------------ assembling


def profile_from(args: argparse.Namespace) -> tuple[TokenProfile, str]:
    direct = args.input_tokens is not None or args.output_tokens is not None
    components = any(getattr(args, name) is not None for name in COMPONENT_OPTIONS)
    chosen = [
        name
        for name, used in (
            ("--input/--output-tokens", direct),
            ("components", components),
            ("--preset", args.preset is not None),
            ("--from-usage", args.from_usage),
        )
        if used
    ]
    if len(chosen) > 1:
        raise InputError(f"give one token profile, not {' and '.join(chosen)}")
    reasoning = args.reasoning_tokens or Decimal(0)
    if direct:
        if args.input_tokens is None or args.output_tokens is None:
            raise InputError("--input-tokens and --output-tokens go together")
        return TokenProfile.direct(
            args.input_tokens,
            args.output_tokens,
            reasoning_tokens=reasoning,
            calls=args.calls_per_question,
            max_tokens=args.max_tokens,
        ), "direct"
    if components:
        return TokenProfile.from_components(
            system=args.system_tokens or 0,
            context=args.context_tokens or 0,
            user=args.user_tokens or 0,
            answer=args.answer_tokens or 0,
            reasoning=reasoning,
            rounds=args.rounds or 0,
            calls=args.calls_per_question,
            max_tokens=args.max_tokens,
            history=args.history,
        ), "components"
    if args.from_usage:
        from storage.reports import read_usage_profile  # the store is only opened when asked for

        usage = read_usage_profile(
            store_from(args),
            since=args.since,
            until=args.until,
            provider=args.provider,
            model=args.model,
            team=args.team,
        )
        if usage.requests == 0:
            raise InputError("no stored usage matches; ingest logs first (`quotascope ingest`)")
        mean = Decimal(str(usage.input_tokens.mean))
        return TokenProfile.direct(
            mean,
            Decimal(str(usage.output_tokens.mean)),
            reasoning_tokens=Decimal(str(usage.reasoning_tokens.mean)),
            calls=args.calls_per_question,
            max_tokens=args.max_tokens,
            stable_prefix=mean * Decimal(str(usage.cached_share)),
            source="usage",
        ), f"stored usage ({usage.requests:,} requests)"
    name = args.preset or "r1-reasoning"
    preset = PRESETS[name]
    if args.max_tokens is not None or args.calls_per_question != 1:
        preset = replace(preset, max_tokens=args.max_tokens, calls=args.calls_per_question)
    return preset, f"preset {name}" + ("" if args.preset else " (default)")


def version_from(
    args: argparse.Namespace, catalog: Catalog, offer_id: str | None, at: datetime
) -> OfferVersion:
    limit_values = {name: getattr(args, name) for name in LIMIT_OPTIONS}
    prices = {
        "input": args.price_input,
        "cached_input": args.price_cached,
        "cache_write": args.price_cache_write,
        "output": args.price_output,
        "reasoning_output": args.price_reasoning,
    }
    if offer_id is None:
        if not any(v is not None for v in limit_values.values()) and args.price_input is None:
            raise InputError(
                "give an --offer, or limits (--tpm, --rpm, ...) and/or prices (--price-input ...)"
            )
        base = OfferVersion(
            "custom",
            datetime(1970, 1, 1),
            None,
            "command line",
            at.date(),
            (args.currency or "USD").upper(),
            None,
            Limits(),
            CountingRules(),
        )
    else:
        base = catalog.get(offer_id).version_at(at)
        if args.currency and args.currency.upper() != base.currency and args.price_input is None:
            raise InputError(
                f"--currency changes the currency of prices you give; {offer_id} is priced in "
                f"{base.currency} (use --display-currency to convert)"
            )
    return with_overrides(base, limits=limit_values, prices=prices, currency=args.currency)


def demand_from(args: argparse.Namespace) -> Demand | None:
    if args.peak_qpm is not None and (args.users is not None or args.questions_per_user_day is not None):
        raise InputError("give a demand as --peak-qpm or as --users with --questions-per-user-day, not both")
    if args.peak_qpm is not None:
        return Demand.from_peak(args.peak_qpm, args.peak_factor)
    if args.users is not None or args.questions_per_user_day is not None:
        if args.users is None or args.questions_per_user_day is None:
            raise InputError("--users and --questions-per-user-day go together")
        return Demand.from_users(args.users, args.questions_per_user_day, args.peak_factor)
    return None


def plans_from(args: argparse.Namespace) -> tuple[list[Plan], str]:
    """The plans the options ask for (through `models.plan.plan_versions`, as the dashboard plans), and
    where the token profile came from."""
    catalog = catalog_from(args)
    at = args.at or to_utc_naive(datetime.now(UTC))
    profile, profile_source = profile_from(args)
    offers: list[str | None] = list(args.offer) or [None]
    versions = [(offer_id or "custom", version_from(args, catalog, offer_id, at)) for offer_id in offers]
    plans = plan_versions(
        versions,
        profile,
        given_latency(args.ttft_ms, args.tokens_per_s),
        at,
        demand=demand_from(args),
        cache_hit_rate=args.cache_hit_rate,
        hourly_shape=args.hourly_shape,
        fx=catalog.fx,
        display_currency=args.display_currency,
        fee_calls_per_question=dict(args.fee_calls),
        ptus=args.ptus,
    )
    return plans, profile_source


def mix_from(args: argparse.Namespace, plans: list[Plan]) -> Mix | None:
    if args.mix is None:
        return None
    demand = plans[0].request.demand
    if demand is None:
        raise InputError("a mix splits a demand: give --peak-qpm or --users/--questions-per-user-day")
    if len(plans) < 2:
        raise InputError("a mix needs at least two --offer")
    if args.mix == "weights":
        return mix_by_weights(plans, args.weights or [Decimal(1)] * len(plans), demand)
    keys = args.keys or [1] * len(plans)
    return mix_by_overflow(plans, keys, demand)


def selfhost_from(args: argparse.Namespace, plan: Plan) -> BreakEven | None:
    if args.selfhost_node_cost_per_hour is None:
        return None
    if args.selfhost_tokens_per_s is None:
        raise InputError("--selfhost-tokens-per-s is needed with --selfhost-node-cost-per-hour")
    if plan.cost is None:
        raise InputError(f"{plan.label} has no price to compare self-hosting with")
    currency = (args.selfhost_currency or plan.cost.per_question.currency).upper()
    if currency != plan.cost.per_question.currency:
        raise InputError(
            f"the node is priced in {currency} but the plan shows "
            f"{plan.cost.per_question.currency}: pass --display-currency {currency}"
        )
    host = SelfHost(
        Money(args.selfhost_node_cost_per_hour, currency),
        args.selfhost_tokens_per_s,
        args.selfhost_utilization,
        args.selfhost_nodes,
    )
    tokens = plan.request.profile.tokens_per_question
    api_per_mtok = Money(plan.cost.per_question.amount / tokens * 1_000_000, currency)
    demand = plan.request.demand
    volume = None if demand is None else demand.questions_per_month * tokens / 1_000_000
    return break_even(host, api_per_mtok, volume)


# ------------------------------------------------------------------------------------------ running


def run(args: argparse.Namespace) -> int:
    plans, profile_source = plans_from(args)
    mix = mix_from(args, plans)
    selfhost = selfhost_from(args, plans[0])
    one = len(plans) == 1
    document: dict[str, Any] = plans[0].to_json() if one else {"plans": [p.to_json() for p in plans]}
    if mix is not None:
        document["mix"] = mix.to_json()
    if selfhost is not None:
        document["selfhost"] = selfhost.to_json()
    emit(args.json, document, lambda: render(plans, mix, selfhost, profile_source))
    return 0


def _rate(value: Decimal | None) -> str:
    if value is None:
        return "unbounded"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _keys(plan: Plan) -> str:
    if plan.ptu is not None:
        return f"{plan.ptu.to_buy} PTU"
    return "" if plan.keys_needed is None else str(plan.keys_needed)


def _money(value: Money | None) -> str:
    return "unpriced" if value is None else str(value)


def render(plans: list[Plan], mix: Mix | None, selfhost: BreakEven | None, profile_source: str) -> str:
    lines: list[str] = []
    profile = plans[0].request.profile
    lines.append(
        f"Profile, {profile_source}: {profile.input:,.0f} input + {profile.output:,.0f} output tokens "
        f"per call ({profile.reasoning:,.0f} reasoning), {profile.calls:g} call(s) per question"
    )
    if len(plans) == 1:
        lines += _render_one(plans[0])
    else:
        demand_given = plans[0].request.demand is not None
        rows = [
            [
                p.label,
                _rate(p.capacity.questions_per_minute),
                p.capacity.binding_limit or "-",
                _rate(p.peak_concurrency if demand_given else p.capacity.concurrency)
                if p.capacity.questions_per_minute is not None or demand_given
                else "-",
                _money(p.cost.per_1k_questions.quantize(4) if p.cost else None),
                _keys(p),
                "" if p.monthly_cost is None else str(p.monthly_cost.quantize(2)),
            ]
            for p in plans
        ]
        concurrency = "concurrency at peak" if demand_given else "concurrency"
        headers = ["offer", "q/min", "binding", concurrency, "cost / 1k questions", "keys", "monthly"]
        lines += ["", table(headers, rows)]
        notes = [(a, p.label) for p in plans for a in p.assumptions]
        if notes:
            lines += ["", "Assumptions:"]
            for text in dict.fromkeys(a for a, _ in notes):
                who = [label for a, label in notes if a == text]
                scope = "all offers" if len(who) == len(plans) else ", ".join(who)
                lines.append(f"  - {scope}: {text}")
    if mix is not None:
        lines += ["", f"Mix ({mix.strategy}):"]
        lines.append(
            table(
                ["offer", "share", "peak q/min", "keys", "carries q/min"],
                [
                    [
                        s.label,
                        f"{s.share * 100:.1f}%",
                        _rate(s.peak_per_minute),
                        s.keys,
                        _rate(s.capacity_per_minute),
                    ]
                    for s in mix.shares
                ],
            )
        )
        if mix.unserved_per_minute > 0:
            lines.append(f"Unserved at peak: {_rate(mix.unserved_per_minute)} q/min (add keys or offers)")
        if mix.cost_per_question is not None:
            lines.append(
                f"Blended: {mix.cost_per_question * 1000} per 1,000 questions"
                + (f", {mix.monthly_cost.quantize(2)} per month" if mix.monthly_cost else "")
            )
    if selfhost is not None:
        lines += [
            "",
            "Self-host vs API:",
            f"  self-hosted {selfhost.selfhost_per_mtok.quantize(4)} per 1M tokens, "
            f"API {selfhost.api_per_mtok.quantize(4)} per 1M tokens",
            f"  nodes cost {selfhost.monthly_selfhost.quantize(2)} per month and carry "
            f"{format_amount(selfhost.capacity_mtok_per_month, 1)}M tokens",
            "  break-even at "
            + (
                "never (the API is free)"
                if selfhost.break_even_mtok_per_month is None
                else f"{format_amount(selfhost.break_even_mtok_per_month, 1)}M tokens per month"
            ),
        ]
        if selfhost.cheaper is not None:
            lines.append(
                f"  at this demand ({format_amount(selfhost.demand_mtok_per_month or Decimal(0), 1)}M "
                f"tokens/month, {selfhost.nodes_for_demand} node(s)) the cheaper is: {selfhost.cheaper}"
            )
    return "\n".join(lines)


def _render_one(plan: Plan) -> list[str]:
    cap, version, calls = plan.capacity, plan.request.version, plan.request.profile.calls
    lines = [
        f"Offer: {plan.label}   price version {version.version_id} ({version.source}, as of {version.as_of})",
        f"Tokens per question: {plan.request.profile.input * calls:,.0f} input "
        f"({plan.cache.cached_input * calls:,.0f} cached, {plan.cache.method}), "
        f"{plan.request.profile.output * calls:,.0f} output; "
        f"{cap.counted.total * calls:,.0f} counted against TPM",
        "",
    ]
    if cap.questions_per_minute is None:
        lines.append("Questions per minute: unbounded (no published limit applies)")
    else:
        lines.append(
            f"Questions per minute: {_rate(cap.questions_per_minute)}   binding limit: "
            f"{cap.binding_limit.upper() if cap.binding_limit else '-'} (scope: per {version.limits.scope})"
        )
        lines.append(
            table(
                ["limit", "value", "q/min"],
                [[r.name.upper(), f"{r.limit:,}", _rate(r.questions_per_minute)] for r in cap.limits],
            )
        )
        lines.append(
            f"Concurrency at that rate: {_rate(cap.concurrency)} streams "
            f"(each call holds one for {cap.call_minutes * 60:.1f} s)"
        )
    lines.append("")
    if plan.cost is None:
        lines.append("Cost: unpriced (the offer publishes no token price)")
    else:
        cost = plan.cost
        lines.append(
            f"Cost per question: {cost.per_question.quantize(6)}   per 1,000 questions: "
            f"{cost.per_1k_questions.quantize(4)}"
        )
        extras = []
        if cost.time_multiplier != 1:
            extras.append(f"time-of-day ×{cost.time_multiplier:.3f}")
        if cost.rates.promotion:
            extras.append(f"promotion {cost.rates.promotion}")
        if cost.fx is not None:
            extras.append(f"FX {cost.fx.describe()}")
        if cost.cache_savings.amount:
            extras.append(f"cache saves {(cost.cache_savings * 1000).quantize(4)} per 1,000")
        if extras:
            lines.append("  " + "; ".join(extras))
    demand = plan.request.demand
    if demand is not None:
        lines += [
            "",
            f"Demand: {demand.described} → {demand.questions_per_month:,.0f} questions/month",
            f"  keys needed ({version.limits.scope} scope): {plan.keys_needed}; "
            f"concurrency at peak {_rate(plan.peak_concurrency)}",
        ]
        if plan.monthly_cost is not None:
            lines.append(f"  monthly cost: {plan.monthly_cost.quantize(2)}")
    if plan.ptu is not None:
        lines.append(f"  PTU for the peak: {plan.ptu.exact:.2f} → buy {plan.ptu.to_buy}")
    if plan.assumptions:
        lines += ["", "Assumptions:"] + [f"  - {a}" for a in plan.assumptions]
    return lines
