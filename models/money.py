"""Money and currency conversion. Money is Decimal, never float; every rate says where it came from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext

from models.errors import InputError

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise InputError(f"cannot add {other.currency} to {self.currency} without a rate")
        return Money(self.amount + other.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        return Money(self.amount * Decimal(factor), self.currency)

    def quantize(self, places: int = 6) -> Money:
        # with enough digits of precision for the amount: quantize never fails (InvalidOperation) on a
        # large one; the catalog's bounds keep real amounts far below this anyway
        with localcontext() as context:
            if self.amount.is_finite():
                context.prec = max(context.prec, self.amount.adjusted() + places + 2)
            return Money(self.amount.quantize(Decimal(1).scaleb(-places)), self.currency)

    def to_json(self, places: int = 6) -> dict[str, str]:
        return {"amount": plain(self.quantize(places).amount), "currency": self.currency}

    def __str__(self) -> str:
        return f"{format_amount(self.amount)} {self.currency}"

    @staticmethod
    def zero(currency: str) -> Money:
        return Money(Decimal(0), currency)


def plain(value: Decimal) -> str:
    """Decimal as plain text without trailing zeros or exponent: 1250, 0.0125, 2.5."""
    text = f"{value.normalize():f}" if value else "0"
    return text


def format_amount(amount: Decimal, places: int | None = None) -> str:
    """A readable amount: enough significant digits for a per-question cost, thousands separators."""
    if places is None:
        magnitude = abs(amount)
        places = 2 if magnitude >= 100 else 4 if magnitude >= Decimal("0.01") else 6
    return f"{amount:,.{places}f}"


@dataclass(frozen=True, slots=True)
class FxRate:
    """1 `base` = `rate` `quote`, as published by `source` on `as_of`."""

    base: str
    quote: str
    rate: Decimal
    as_of: date
    source: str

    def describe(self) -> str:
        return f"1 {self.base} = {self.rate} {self.quote} ({self.source}, {self.as_of.isoformat()})"

    def short(self) -> str:
        """The rate and its date, for a line that has no room for the source: `1 USD = 6.818 CNY of
        2026-11-01`."""
        return f"1 {self.base} = {self.rate} {self.quote} of {self.as_of.isoformat()}"


@dataclass(frozen=True, slots=True)
class Conversion:
    money: Money
    rate: FxRate | None  # None when no conversion was needed


@dataclass(frozen=True)
class FxTable:
    """Dated rates. The rate used for a date is the latest one published on or before it
    (or the earliest known, if the date precedes them all)."""

    rates: Sequence[FxRate] = ()

    def rate(self, base: str, quote: str, on: date | None = None) -> FxRate:
        """The published rate between two currencies (in either direction) in force on `on`."""
        if base == quote:
            raise InputError("a rate from a currency to itself is not needed")
        candidates = sorted(
            (r for r in self.rates if {r.base, r.quote} == {base, quote}), key=lambda r: r.as_of
        )
        if not candidates:
            known = sorted({f"{r.base}/{r.quote}" for r in self.rates})
            raise InputError(
                f"no FX rate between {base} and {quote} in the catalog (known: {', '.join(known) or 'none'})"
            )
        if on is None:
            return candidates[-1]
        before = [r for r in candidates if r.as_of <= on]
        return before[-1] if before else candidates[0]

    def convert(self, money: Money, to: str, on: date | None = None) -> Conversion:
        """`money` in currency `to`, with the published rate used (whichever way round it is quoted)."""
        if money.currency == to:
            return Conversion(money, None)
        rate = self.rate(money.currency, to, on)
        amount = money.amount * rate.rate if rate.base == money.currency else money.amount / rate.rate
        return Conversion(Money(amount, to), rate)

    def currencies(self) -> list[str]:
        return sorted({r.base for r in self.rates} | {r.quote for r in self.rates})


def per_currency(amounts: Iterable[Money]) -> dict[str, Money]:
    """The amounts summed per currency, in the order the currencies first appear."""
    sums: dict[str, Money] = {}
    for money in amounts:
        sums[money.currency] = sums.get(money.currency, Money.zero(money.currency)) + money
    return sums


def total(amounts: Iterable[Money], currency: str) -> Money:
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result
