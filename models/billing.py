"""What a provider billed: one line of its cost report, in the currency's main unit (dollars, not cents)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CostLine:
    """One billed amount: a day, what it was for, and how much."""

    record_key: str  # stable over pulls of the same day and line: a repeated result counts once
    item_no: int  # the n-th result the pull read
    day: date
    provider: str
    project: str | None  # OpenAI project_id, Anthropic workspace_id
    model: str | None  # None for costs not of one model (web search, fine-tuning hours, ...)
    line_item: str | None  # OpenAI line_item, Anthropic description
    cost_type: str | None
    token_type: str | None
    service_tier: str | None
    amount: Decimal
    currency: str
