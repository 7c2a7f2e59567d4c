"""Small builders for catalog values in tests (no files: the model is pure)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from models.catalog import CacheRules, CountingRules, Limits, OfferVersion, Prices


def version(
    *,
    prices: Prices | None = None,
    limits: Limits | None = None,
    counting: CountingRules | None = None,
    cache: CacheRules | None = None,
    currency: str = "USD",
    **extra: Any,
) -> OfferVersion:
    return OfferVersion(
        offer_id=extra.pop("offer_id", "test/offer"),
        effective_from=extra.pop("effective_from", datetime(2025, 1, 1)),
        effective_to=extra.pop("effective_to", None),
        source="test",
        as_of=date(2025, 1, 1),
        currency=currency,
        prices=prices,
        limits=limits or Limits(),
        counting=counting or CountingRules(),
        cache=cache or CacheRules(),
        **extra,
    )


def d(text: str | int) -> Decimal:
    return Decimal(text)
