"""What every command's options accept, defined once: moments, days and months; whole numbers; decimal numbers
and shares; lists. Each is an argparse `type` that turns a mistake into one sentence (`quotascope: argument
--since: must be ...`, exit code 2).

- a moment: an ISO date or date-time (UTC unless it carries an offset), `now`, or a span before now: `7d`,
  `12h`, `30m`;
- a whole number: `1000`, `1,000` or `1_000`; `positive_whole` is at least 1, `whole` at least 0;
- a number: a decimal (`0.5`, `1,250.75`), never a float; `positive` above 0, `non_negative` 0 or more,
  `share` between 0 and 1;
- a list: comma-separated values of one of the above;
- which stored usage a command reads: `selection_options` (the period and attribution filters).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, TypeVar

from models.catalog import MAX_CATALOG_NUMBER, MAX_PRICE_PER_MTOK, to_utc_naive
from models.errors import InputError
from models.forecast import parse_month

if TYPE_CHECKING:
    from storage.replay import UsageFilter

T = TypeVar("T")
_SPAN = re.compile(r"^(\d+)\s*([dhm])$")
_SPAN_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


def now() -> datetime:
    """Naive UTC now (stored times are naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------------------------ time


def when(text: str) -> datetime:
    """An ISO date or date-time (UTC unless it has an offset), `now`, or `7d` / `12h` / `30m` before now."""
    stripped = text.strip().lower()
    if stripped == "now":
        return now()
    span = _SPAN.match(stripped)
    if span:
        return now() - int(span.group(1)) * _SPAN_UNITS[span.group(2)]
    try:
        return to_utc_naive(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a date or date-time like 2026-11-23 or 2026-11-23T17:00, `now`, or a span before now "
            f"like 7d, 12h or 30m; got {text!r}"
        ) from None


def day(text: str) -> date:
    """A day, given as anything `when` takes (its date part)."""
    return when(text).date()


def month(text: str) -> date:
    """`2026-11`: the month's first day."""
    try:
        return parse_month(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ------------------------------------------------------------------------------------------ numbers


def _whole(minimum: int) -> Callable[[str], int]:
    kind = "a positive whole number" if minimum == 1 else f"a whole number of at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace(",", "").replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}")
        return value

    return parse


positive_whole = _whole(1)
whole = _whole(0)


def _number(
    kind: str, minimum: Decimal, strict: bool, maximum: Decimal = MAX_CATALOG_NUMBER
) -> Callable[[str], Decimal]:
    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text.strip().replace(",", "").replace("_", ""))
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not value.is_finite() or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}")
        if value > maximum:  # the catalog's own bounds (models.catalog): a unit mistake, not a value
            raise argparse.ArgumentTypeError(f"is implausibly large (at most {maximum:,}), got {text!r}")
        return value

    return parse


positive = _number("positive", Decimal(0), strict=True)
non_negative = _number("zero or more", Decimal(0), strict=False)
price_per_mtok = _number("zero or more", Decimal(0), strict=False, maximum=MAX_PRICE_PER_MTOK)
at_least_one = _number("at least 1", Decimal(1), strict=False)


def share(text: str) -> Decimal:
    """A share between 0 and 1 (`0.9`)."""
    value = non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, got {text!r}")
    return value


def open_share(text: str) -> Decimal:
    """A share strictly between 0 and 1 (a confidence)."""
    value = share(text)
    if value in (0, 1):
        raise argparse.ArgumentTypeError(f"is a share between 0 and 1, e.g. 0.9; got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A number above 0 for a clock or a rate (seconds, tokens per second): a float, as the code timing
    with it uses."""
    return float(positive(text))


def non_negative_float(text: str) -> float:
    """A number of 0 or more for a clock (a delay in milliseconds)."""
    return float(non_negative(text))


def share_float(text: str) -> float:
    """A share between 0 and 1 for a random draw (a fault rate)."""
    return float(share(text))


# ------------------------------------------------------------------------------------------ lists


def list_of(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """Comma-separated values, each parsed by `item`; at least one."""

    def parse(text: str) -> list[T]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(
                f"must list at least one value, separated by commas; got {text!r}"
            )
        return values

    return parse


whole_list = list_of(positive_whole)
number_list = list_of(non_negative)


# ------------------------------------------------------------------------------------------ selections


def period_options() -> argparse.ArgumentParser:
    """`--since` and `--until` (moments, as `when` reads them), for a command's `parents=`."""
    period = argparse.ArgumentParser(add_help=False)
    period.add_argument("--since", type=when, help="from (UTC): 2025-03-01, 2025-03-01T08:00, 7d, 12h, now")
    period.add_argument("--until", type=when, help="up to, not including (UTC)")
    return period


def selection_options() -> argparse.ArgumentParser:
    """The period and `--provider --model --team --project`: which stored usage a command reads
    (`selection_from`)."""
    selection = argparse.ArgumentParser(add_help=False, parents=[period_options()])
    for name in ("provider", "model", "team", "project"):
        selection.add_argument(f"--{name}", help=f"only this {name}")
    selection.add_argument(
        "--teams",
        type=names,
        metavar="A,B",
        help="only these teams: the scope a signed-in team lead sees on the dashboard",
    )
    return selection


def selection_from(args: argparse.Namespace) -> UsageFilter:
    from storage.replay import UsageFilter  # only commands that read usage open the store's modules

    teams = tuple(args.teams) if args.teams else None
    return UsageFilter(args.since, args.until, args.provider, args.model, args.team, args.project, teams)


def names(text: str) -> list[str]:
    """Comma-separated names (`search,legal`)."""
    return list_of(str)(text)
