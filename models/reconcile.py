"""Reconciling what the logs say usage cost with what the provider billed.

Per group (some of day, provider, model, project): `computed` is the spend report's figure for the logged
usage (the same engine, `models.spend.price_spend`), `billed` the sum of the provider's cost report,
`gap = billed - computed` and `gap_share = gap / billed`. A group is flagged when |gap_share| exceeds the
threshold (2 % by default).

What explains a gap, where it can be known, from the provider's own usage report priced by the same engine:
- requests billed but not logged (timeouts, retries, a forgotten key): the provider counted more requests
  than the logs hold; what they cost is the provider's usage at list price minus the computed figure;
- usage the catalog cannot price (the computed figure leaves it out; it is named);
- token totals that differ between the provider's report and the logs, per kind of token;
- what remains once the provider's own usage is priced: billed minus its list price (discounts, a price
  change the catalog lacks, a tier or a fee the engine does not know).
Anthropic's usage report has no request counts: its groups explain by tokens only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from models.errors import InputError
from models.money import Money
from models.spend import SpendRow
from models.usage_record import TOKEN_FIELDS

RECONCILE_KEYS = ("day", "provider", "model", "project")
DEFAULT_THRESHOLD = Decimal("0.02")
_TOKEN_NAMES = {
    "input_tokens": "input",
    "cached_input_tokens": "cached input",
    "cache_write_tokens": "cache write",
    "output_tokens": "output",
    "reasoning_tokens": "reasoning",
}


def parse_reconcile_by(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip()) if text else ("day", "provider")
    unknown = [k for k in keys if k not in RECONCILE_KEYS]
    if unknown or not keys:
        raise InputError(f"reconcile groups by some of {', '.join(RECONCILE_KEYS)}; got {text!r}")
    if len(set(keys)) != len(keys):
        raise InputError(f"--by names a key twice: {text}")
    return keys


def parse_threshold(text: str) -> Decimal:
    """`2%`, `2 %` or `0.02`."""
    raw = text.strip().replace(" ", "")
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except ArithmeticError:
        raise InputError(f"a gap threshold is a share like 0.02 or 2%, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise InputError(f"a gap threshold is zero or more, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Billed:
    """The bill summed for one group."""

    keys: Mapping[str, Any]
    amount: Money


@dataclass(frozen=True, slots=True)
class Counts:
    requests: int | None  # None: the source gives no request count
    tokens: Mapping[str, int]


@dataclass(frozen=True)
class ReconcileRow:
    keys: Mapping[str, Any]
    computed: Money | None
    billed: Money | None
    gap: Money | None
    gap_share: Decimal | None
    flagged: bool
    logged: Counts
    provider: Counts | None  # the provider's usage report for the group, where pulled
    unlogged_requests: int | None  # provider requests minus logged ones (negative: logs hold more)
    unlogged_cost: Money | None  # the provider's usage at list price minus `computed`
    price_gap: Money | None  # billed minus the provider's usage at list price
    explanations: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        keys = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.keys.items()}
        return {
            **keys,
            "computed": _money(self.computed),
            "billed": _money(self.billed),
            "gap": _money(self.gap),
            "gap_share": None
            if self.gap_share is None
            else str(self.gap_share.quantize(Decimal("0.000001"))),
            "flagged": self.flagged,
            "logged": {"requests": self.logged.requests, **self.logged.tokens},
            "provider_usage": None
            if self.provider is None
            else {"requests": self.provider.requests, **self.provider.tokens},
            "unlogged_requests": self.unlogged_requests,
            "unlogged_cost": _money(self.unlogged_cost),
            "price_gap": _money(self.price_gap),
            "explanations": list(self.explanations),
        }


def _money(value: Money | None) -> dict[str, str] | None:
    return None if value is None else value.to_json()


def _minus(a: Money, b: Money) -> Money:
    return Money(a.amount - b.amount, a.currency)


def _counts(row: SpendRow | None, requests_known: bool = True) -> Counts:
    if row is None:
        return Counts(0 if requests_known else None, dict.fromkeys(TOKEN_FIELDS, 0))
    return Counts(
        row.requests if requests_known else None, {name: int(getattr(row, name)) for name in TOKEN_FIELDS}
    )


def _fmt(money: Money) -> str:
    return str(money)


def reconcile(
    by: Sequence[str],
    computed: Sequence[SpendRow],
    billed: Sequence[Billed],
    provider_all: Sequence[SpendRow],
    provider_counted: Sequence[SpendRow],
    threshold: Decimal = DEFAULT_THRESHOLD,
) -> list[ReconcileRow]:
    """One row per group that has logged usage, a bill, or provider usage; see the module docstring.

    `computed` is the spend report of the logs by `by`; `provider_all` the same over every pulled usage row,
    `provider_counted` over the pulled rows whose request counts are known (both priced by the same engine).
    """

    def key(keys: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(keys.get(k) for k in by)

    logs = {key(r.keys): r for r in computed}
    bills = {key(b.keys): b for b in billed}
    everyone = {key(r.keys): r for r in provider_all}
    counted = {key(r.keys): r for r in provider_counted}
    groups = sorted(
        set(logs) | set(bills) | set(everyone),
        key=lambda values: tuple((v is None, "" if v is None else str(v)) for v in values),
    )
    rows = []
    for group in groups:
        keys = dict(zip(by, group, strict=True))
        rows.append(
            _row(keys, logs.get(group), bills.get(group), everyone.get(group), counted.get(group), threshold)
        )
    return rows


def _row(
    keys: dict[str, Any],
    log: SpendRow | None,
    bill: Billed | None,
    provider: SpendRow | None,
    counted: SpendRow | None,
    threshold: Decimal,
) -> ReconcileRow:
    computed = log.cost if log is not None else None
    billed = bill.amount if bill is not None else None
    if computed is None and billed is not None:
        computed_for_gap: Money | None = Money.zero(billed.currency)
    else:
        computed_for_gap = computed
    gap = share = None
    if billed is not None and computed_for_gap is not None:
        if computed_for_gap.currency != billed.currency:
            raise InputError(
                f"the bill is in {billed.currency} and the computed cost in {computed_for_gap.currency}; "
                f"pass --display-currency {billed.currency}"
            )
        gap = _minus(billed, computed_for_gap)
        share = gap.amount / billed.amount if billed.amount else None
    flagged = share is not None and abs(share) > threshold
    if billed is not None and not billed.amount and gap is not None and gap.amount:
        flagged = True  # billed nothing, logged a cost
    logged = _counts(log)
    provider_counts = _counts(provider, requests_known=counted is not None) if provider is not None else None
    unlogged = unlogged_cost = price_gap = None
    if counted is not None:
        unlogged = counted.requests - (logged.requests or 0)
        if counted.cost is not None:
            base = computed if computed is not None else Money.zero(counted.cost.currency)
            if base.currency == counted.cost.currency:
                unlogged_cost = _minus(counted.cost, base)
            if billed is not None and billed.currency == counted.cost.currency:
                price_gap = _minus(billed, counted.cost)
    explanations = _explain(
        log, bill, provider, counted, logged, provider_counts, unlogged, unlogged_cost, price_gap
    )
    return ReconcileRow(
        keys,
        computed,
        billed,
        gap,
        share,
        flagged,
        logged,
        provider_counts,
        unlogged,
        unlogged_cost,
        price_gap,
        explanations,
    )


def _explain(
    log: SpendRow | None,
    bill: Billed | None,
    provider: SpendRow | None,
    counted: SpendRow | None,
    logged: Counts,
    provider_counts: Counts | None,
    unlogged: int | None,
    unlogged_cost: Money | None,
    price_gap: Money | None,
) -> tuple[str, ...]:
    said: list[str] = []
    if bill is None:
        said.append("no bill pulled for this group (`quotascope pull openai-costs|anthropic-costs`)")
    if log is None:
        said.append("nothing logged for this group")
    if log is not None and log.unpriced_models:
        said.append(
            f"{log.unpriced_requests:,} logged requests have no catalog price and are not in `computed`: "
            + ", ".join(log.unpriced_models)
        )
    if unlogged is not None and unlogged > 0:
        cost = f" (at list price {_fmt(unlogged_cost)})" if unlogged_cost is not None else ""
        held = logged.requests or 0
        said.append(
            f"{unlogged:,} requests billed but not logged: the provider counted {held + unlogged:,}, "
            f"the logs hold {held:,}{cost}"
        )
    elif unlogged is not None and unlogged < 0:
        said.append(
            f"the logs hold {-unlogged:,} more requests than the provider counted "
            "(a log read twice under new ids, or traffic of another account?)"
        )
    if provider_counts is not None:
        differing = [
            f"{_TOKEN_NAMES[name]} {provider_counts.tokens[name]:,} vs {logged.tokens[name]:,}"
            for name in TOKEN_FIELDS
            if name != "reasoning_tokens" and provider_counts.tokens[name] != logged.tokens[name]
        ]
        if differing:
            said.append("token totals differ (provider vs logs): " + "; ".join(differing))
    elif bill is not None:
        said.append("no provider usage pulled to explain it (`quotascope pull openai-usage|anthropic-usage`)")
    if price_gap is not None and price_gap.amount:
        said.append(
            f"billed differs from the provider's own usage at list price by {_fmt(price_gap)} "
            "(discounts, a price change the catalog lacks, fees or tiers the catalog does not know)"
        )
    if provider is not None and provider.unpriced_models and counted is not None:
        said.append(
            "provider usage of models the catalog cannot price: " + ", ".join(provider.unpriced_models)
        )
    return tuple(said)


def rows_frame(rows: Sequence[ReconcileRow]) -> pl.DataFrame:
    """The rows by day and provider as one frame (what the dashboard's table and chart draw): `day`,
    `provider`, `computed` / `billed` / `gap` amounts (Decimal, in the bill's currency), `gap_share`,
    `flagged`, and `explanations` joined by "; "."""

    def amount(value: Money | None) -> Decimal | None:
        return None if value is None else value.amount

    return pl.DataFrame(
        {
            "day": [r.keys.get("day") for r in rows],
            "provider": [r.keys.get("provider") for r in rows],
            "computed": [amount(r.computed) for r in rows],
            "billed": [amount(r.billed) for r in rows],
            "gap": [amount(r.gap) for r in rows],
            "gap_share": [r.gap_share for r in rows],
            "flagged": [r.flagged for r in rows],
            "explanations": ["; ".join(r.explanations) or None for r in rows],
        },
        schema={
            "day": pl.Date(),
            "provider": pl.String(),
            "computed": pl.Decimal(38, 10),
            "billed": pl.Decimal(38, 10),
            "gap": pl.Decimal(38, 10),
            "gap_share": pl.Decimal(38, 10),
            "flagged": pl.Boolean(),
            "explanations": pl.String(),
        },
    )


def flagged_days(rows: Sequence[ReconcileRow]) -> list[ReconcileRow]:
    """The flagged rows that name a day (what the dashboard marks and an alert is raised for)."""
    return [r for r in rows if r.flagged and r.keys.get("day") is not None]


def gap_alert_text(row: ReconcileRow, threshold: Decimal) -> str:
    where = ", ".join(f"{k} {v}" for k, v in row.keys.items() if v is not None)
    assert row.gap is not None and row.billed is not None
    share = f"{row.gap_share * 100:.1f} %" if row.gap_share is not None else "n/a"
    return (
        f"{where}: billed {_fmt(row.billed)}, computed from logs "
        f"{_fmt(row.computed) if row.computed else 'nothing'}, gap {_fmt(row.gap)} ({share}, "
        f"threshold {threshold * 100:g} %)"
    )
