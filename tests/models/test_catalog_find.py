from __future__ import annotations

from datetime import datetime

from models.catalog import Catalog, Offer
from tests.models.factories import version


def offer(offer_id: str, provider: str, model: str, *aliases: str) -> Offer:
    return Offer(
        offer_id,
        provider,
        model,
        offer_id,
        (version(offer_id=offer_id, effective_from=datetime(2025, 1, 1)),),
        aliases=aliases,
    )


CATALOG = Catalog(
    {
        o.id: o
        for o in (
            offer("openai/o1", "openai", "o1"),
            offer("azure/o1", "azure", "o1"),
            offer("ark/r1", "volcengine", "deepseek-r1", "DeepSeek-R1-250120"),
        )
    }
)


def test_exact_alias_and_case() -> None:
    found = CATALOG.find("volcengine", "deepseek-r1-250120")
    assert found is not None and found.id == "ark/r1"


def test_dated_snapshot_falls_back_to_base_name() -> None:
    found = CATALOG.find("openai", "o1-2024-12-17")
    assert found is not None and found.id == "openai/o1"


def test_ambiguous_or_foreign_provider_is_unpriced() -> None:
    assert CATALOG.find(None, "o1") is None  # OpenAI's or Azure's?
    assert CATALOG.find("together", "deepseek-r1") is None  # never priced with another provider's offer
    assert CATALOG.find(None, "deepseek-r1") is not None  # unique without a provider
    assert CATALOG.find("openai", "gpt-9") is None
