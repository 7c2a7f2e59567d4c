"""Spend as FOCUS 1.0 cost and usage rows: the FinOps Foundation's open format finance loads into its tools.

One row per charge period (a UTC day, or hour) x provider x model x token type x team / project / key x
price class, priced by the one engine (`models.pricing.classify_usage`) three times over:

- **ListCost** at the public list price: the shipped catalog's offer (a user's override of it does not
  count), without promotions;
- **ContractedCost** at the price the user's catalog says they pay (their overrides: a contract price),
  still without promotions;
- **EffectiveCost** and **BilledCost** after promotions: what `quotascope report spend` says was spent, so
  BilledCost sums to that report in each currency (no bill is read here; the computed charge is billed).

Time-of-day windows and long-context tiers are part of the price list, so all three carry them. A row's
costs are its tokens times the per-1M-token rate of its token type, exactly (Decimal), so the token types of
a price class add up to the engine's cost of that class. Usage no catalog prices is left out and counted
(`FocusExport.unpriced_requests`), never exported as free.

Column names and values follow FOCUS 1.0 (https://focus.finops.org, the 1.0 specification of 2024-06);
quotascope's own columns carry the `x_` prefix the specification reserves for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import polars as pl

from models.catalog import Catalog, Offer
from models.money import MILLION
from models.outside_text import to_csv
from models.pricing import Rates, classify_usage
from models.spend import with_usage_columns
from models.usage_record import SUMMED_COUNTS

Grain = Literal["day", "hour"]
PRICING_UNIT = "1M Tokens"
CONSUMED_UNIT = "Tokens"
SERVICE_CATEGORY = "AI and Machine Learning"

# (token type, words for the description, the rate it is priced at); quantities in `_quantities`
TOKEN_TYPES: tuple[tuple[str, str], ...] = (
    ("input", "input tokens (cache miss)"),
    ("cached_input", "cached input tokens (cache hit)"),
    ("cache_write", "cache write tokens"),
    ("cache_write_1h", "1-hour cache write tokens"),
    ("output", "output tokens"),
    ("reasoning", "reasoning output tokens"),
)

# Who made the model (FOCUS PublisherName), by the start of its name; a model sold by its own maker's API
# is published by that provider. Anything else: the provider that sells it.
PUBLISHERS: tuple[tuple[str, str], ...] = (
    ("deepseek", "DeepSeek"),
    ("claude", "Anthropic"),
    ("gpt", "OpenAI"),
    ("o1", "OpenAI"),
    ("o3", "OpenAI"),
    ("o4", "OpenAI"),
    ("gemini", "Google"),
    ("qwen", "Alibaba Cloud"),
    ("llama", "Meta"),
    ("mistral", "Mistral AI"),
)

# Every column FOCUS 1.0 defines, in the specification's order, then quotascope's own.
FOCUS_COLUMNS: tuple[str, ...] = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)
OWN_COLUMNS: tuple[str, ...] = ("x_TokenType", "x_PricePeriod", "x_PriceVersion")
TIME_COLUMNS = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
MONEY = pl.Decimal(38, 12)
QUANTITY = pl.Decimal(38, 9)
_TIME = pl.Datetime("us")  # UTC, made explicit once the frame is built
_SCHEMA: Mapping[str, pl.DataType] = {
    **dict.fromkeys(FOCUS_COLUMNS, pl.String()),
    **dict.fromkeys(("BilledCost", "ContractedCost", "EffectiveCost", "ListCost"), MONEY),
    **dict.fromkeys(("ContractedUnitPrice", "ListUnitPrice"), MONEY),
    **dict.fromkeys(("ConsumedQuantity", "PricingQuantity"), QUANTITY),
    **dict.fromkeys(
        ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"), _TIME
    ),
    **dict.fromkeys(OWN_COLUMNS, pl.String()),
}
TIME_COLUMNS = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")


@dataclass(frozen=True)
class FocusExport:
    """The FOCUS rows, and the usage left out because no catalog price covers it."""

    rows: pl.DataFrame
    unpriced_requests: int
    unpriced_models: tuple[str, ...]

    def billed_per_currency(self) -> dict[str, Decimal]:
        sums = self.rows.group_by("BillingCurrency").agg(pl.col("BilledCost").sum())
        return {str(c): Decimal(str(v)) for c, v in sums.iter_rows()}


def without_promotions(catalog: Catalog) -> Catalog:
    """The catalog's offers with every promotion taken out (list and contracted prices are before them)."""
    offers = {
        offer_id: replace(offer, versions=tuple(replace(v, promotions=()) for v in offer.versions))
        for offer_id, offer in catalog.offers.items()
    }
    return Catalog(offers, catalog.fx)


def list_catalog(catalog: Catalog, public: Catalog) -> Catalog:
    """The public list prices of the offers `catalog` prices with: the shipped offer of the same id where
    there is one (a user's override is their contract, not the list), else the user's own offer."""
    offers = {offer_id: public.offers.get(offer_id, offer) for offer_id, offer in catalog.offers.items()}
    return without_promotions(Catalog(offers, catalog.fx))


def publisher(model: str, provider: str) -> str:
    name = model.lower().rsplit("/", 1)[-1]
    return next((maker for prefix, maker in PUBLISHERS if name.startswith(prefix)), provider)


def focus_rows(groups: pl.DataFrame, catalog: Catalog, public: Catalog, grain: Grain = "day") -> FocusExport:
    """FOCUS 1.0 rows for usage `groups` (price-homogeneous sums, as `storage.reports.read_spend_groups`
    reads them with `by=("team", "project", "key")`), priced with `catalog` (the user's: contracted and
    effective prices) against `public` (the shipped catalog: list prices)."""
    if groups.is_empty():
        empty = pl.DataFrame(schema=_SCHEMA).select(*FOCUS_COLUMNS, *OWN_COLUMNS)
        return FocusExport(empty.with_columns(pl.col(*TIME_COLUMNS).dt.replace_time_zone("UTC")), 0, ())
    groups = with_usage_columns(groups).with_row_index("_row")
    effective = classify_usage(groups, catalog)
    contracted = classify_usage(groups, without_promotions(catalog))
    listed = classify_usage(groups, list_catalog(catalog, public))
    frame = (
        effective.frame.join(
            contracted.frame.select("_row", pl.col("rate").alias("_contracted")), on="_row", how="left"
        )
        .join(listed.frame.select("_row", pl.col("rate").alias("_list")), on="_row", how="left")
        .with_columns(pl.coalesce("provider", "matched_provider").alias("_provider"))
    )
    unpriced = frame.filter(pl.col("rate").is_null())
    priced = frame.filter(pl.col("rate").is_not_null())
    start = pl.col("bucket").dt.truncate("1d" if grain == "day" else "1h")
    sums = (
        priced.with_columns(start.alias("_start"))
        .group_by("_start", "_provider", "model", "team", "project", "key", "rate", "_contracted", "_list")
        .agg(pl.col(c).sum() for c in SUMMED_COUNTS)
        .sort("_start", "_provider", "model", "team", "project", "key", "rate", nulls_last=True)
    )
    step = timedelta(days=1) if grain == "day" else timedelta(hours=1)
    records: list[dict[str, Any]] = []
    for g in sums.iter_rows(named=True):
        rates = effective.rates[g["rate"]]
        contract = contracted.rates[g["_contracted"]] if g["_contracted"] is not None else rates
        listing = listed.rates[g["_list"]] if g["_list"] is not None else contract
        offer = catalog.offers.get(rates.version_id.split("@", 1)[0])
        for token_type, quantity in _quantities(g).items():
            if quantity:
                records.append(_record(g, token_type, quantity, rates, contract, listing, offer, step))
    rows = (
        pl.DataFrame(records, schema=_SCHEMA)
        .select(*FOCUS_COLUMNS, *OWN_COLUMNS)
        .with_columns(pl.col(*TIME_COLUMNS).dt.replace_time_zone("UTC"))
    )
    return FocusExport(
        rows,
        int(unpriced["requests"].sum()) if unpriced.height else 0,
        tuple(sorted({str(u) for u in unpriced["unpriced"].to_list() if u})),
    )


def _quantities(g: Mapping[str, Any]) -> dict[str, int]:
    """Tokens of each type in a group (the canonical record's input holds hits and writes, output holds
    reasoning: each token is counted under exactly one type)."""
    write_1h = int(g["cache_write_1h_tokens"] or 0)
    return {
        "input": int(g["input_tokens"]) - int(g["cached_input_tokens"]) - int(g["cache_write_tokens"]),
        "cached_input": int(g["cached_input_tokens"]),
        "cache_write": int(g["cache_write_tokens"]) - write_1h,
        "cache_write_1h": write_1h,
        "output": int(g["output_tokens"]) - int(g["reasoning_tokens"]),
        "reasoning": int(g["reasoning_tokens"]),
    }


def unit_price(rates: Rates, token_type: str) -> Decimal:
    """The per-1M-token price of one token type under `rates`."""
    if token_type == "cache_write_1h":
        return rates.cache_write if rates.cache_write_1h is None else rates.cache_write_1h
    if token_type == "reasoning":
        return rates.reasoning_output
    price: Decimal = getattr(rates, token_type)
    return price


def _record(
    g: Mapping[str, Any],
    token_type: str,
    quantity: int,
    rates: Rates,
    contract: Rates,
    listing: Rates,
    offer: Offer | None,
    step: timedelta,
) -> dict[str, Any]:
    start: datetime = g["_start"]
    provider = str(g["_provider"] or (offer.provider if offer else ""))
    model = str(g["model"])
    month = start.replace(day=1, hour=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    pricing_quantity = Decimal(quantity) / MILLION
    effective = unit_price(rates, token_type) * pricing_quantity
    words = dict(TOKEN_TYPES)[token_type]
    offer_id = offer.id if offer else f"{provider}/{model}"
    period = rates.label
    team, project, key = g["team"], g["project"], g["key"]
    tags = {name: value for name, value in (("team", team), ("project", project), ("key", key)) if value}
    region = offer.region if offer and offer.region else None
    return {
        "AvailabilityZone": None,
        "BilledCost": effective,
        "BillingAccountId": provider,
        "BillingAccountName": f"{provider} account",
        "BillingCurrency": rates.currency,
        "BillingPeriodEnd": next_month,
        "BillingPeriodStart": month,
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": f"{model} {words} on {provider} ({period})",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": start + step,
        "ChargePeriodStart": start,
        "CommitmentDiscountCategory": None,
        "CommitmentDiscountId": None,
        "CommitmentDiscountName": None,
        "CommitmentDiscountStatus": None,
        "CommitmentDiscountType": None,
        "ConsumedQuantity": Decimal(quantity),
        "ConsumedUnit": CONSUMED_UNIT,
        "ContractedCost": unit_price(contract, token_type) * pricing_quantity,
        "ContractedUnitPrice": unit_price(contract, token_type),
        "EffectiveCost": effective,
        "InvoiceIssuerName": provider,
        "ListCost": unit_price(listing, token_type) * pricing_quantity,
        "ListUnitPrice": unit_price(listing, token_type),
        "PricingCategory": "Standard",
        "PricingQuantity": pricing_quantity,
        "PricingUnit": PRICING_UNIT,
        "ProviderName": provider,
        "PublisherName": publisher(model, provider),
        "RegionId": region,
        "RegionName": region,
        "ResourceId": key,
        "ResourceName": key,
        "ResourceType": "API key" if key else None,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": f"{provider} {model}",
        "SkuId": f"{offer_id}:{token_type}",
        "SkuPriceId": f"{rates.version_id}:{period}:{token_type}",
        "SubAccountId": team,
        "SubAccountName": team,
        "Tags": json.dumps(tags, sort_keys=True),
        "x_TokenType": token_type,
        "x_PricePeriod": period,
        "x_PriceVersion": rates.version_id,
    }


def focus_csv(rows: pl.DataFrame) -> str:
    """The rows as CSV: times in ISO 8601 UTC (`2026-11-08T00:00:00Z`), every text cell through the
    project's CSV sanitiser (a model or team name from a log never runs as a spreadsheet formula)."""
    times = [pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%SZ") for c in TIME_COLUMNS]
    return to_csv(rows.with_columns(times))
