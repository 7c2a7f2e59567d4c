"""Real 2025 responses priced out of the box, every price dimension of a real bill, exact to 1e-6.

The samples in tests/data/usage/pricing/ are our own, in the providers' documented shapes; the expected
costs are worked out here by hand from the providers' published prices (per 1M tokens, USD):

- OpenAI (platform.openai.com/docs/pricing; o3's 80 % cut on 2025-06-10): gpt-4o $2.50 / $1.25 cached /
  $10; gpt-4o-mini $0.15 / $0.075 / $0.60 (Batch: half of input and output); gpt-4.1 $2 / $0.50 / $8;
  o3 $10 / $2.50 / $40 until 2025-06-09, then $2 / $0.50 / $8, Flex $1 / $0.25 / $4, Priority $3.50 /
  $0.875 / $14; gpt-4o Priority $4.25 / $2.125 / $17.
- Anthropic (docs.anthropic.com/en/docs/about-claude/pricing): Sonnet 4.5 $3 input, $3.75 5-minute write,
  $6 1-hour write, $0.30 read, $15 output; Haiku 4.5 $1, $1.25, $2, $0.10, $5; Message Batches half of all.
- Google (ai.google.dev/gemini-api/docs/pricing): Gemini 2.5 Pro $1.25 / $10 up to 200k prompt tokens,
  $2.50 / $15 above, for the whole request.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from collectors.ingest import IngestOptions, ingest_paths
from models.catalog import Catalog
from models.money import Money
from quotascope.context import priced_catalog
from quotascope.settings import BY_NAME
from storage.reports import UsageFilter, spend_report

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "usage" / "pricing"
M = Decimal(1_000_000)


def usd(*parts: tuple[int, str]) -> Decimal:
    """Σ tokens × price per 1M."""
    return sum((Decimal(tokens) * Decimal(price) for tokens, price in parts), Decimal(0)) / M


@pytest.fixture
def catalog() -> Catalog:
    return priced_catalog(Path(BY_NAME["catalog_dir"].default), [])


def ingest(db: Path, name: str, default_time: datetime | None = None, **tags: str) -> tuple[int, int, int]:
    (result,) = ingest_paths(
        db, [SAMPLES / name], salt="s", tags=tags, options=IngestOptions(default_time=default_time)
    )
    c = result.counts
    assert c.read == c.stored + c.duplicates + c.rejected
    return c.stored, c.duplicates, c.rejected


def costs(db: Path, catalog: Catalog, *by: str) -> dict[tuple[object, ...], Money | None]:
    rows = spend_report(db, catalog, UsageFilter(), by or ("model",))
    return {tuple(r.keys.values()): r.cost for r in rows}


def exact(money: Money | None, amount: Decimal) -> None:
    assert money is not None and money.currency == "USD"
    assert abs(money.amount - amount) <= Decimal("1e-6"), (money.amount, amount)


def test_openai_2025_responses_across_o3_price_cut_and_service_tiers(
    tmp_path: Path, catalog: Catalog
) -> None:
    db = tmp_path / "q.duckdb"
    assert ingest(db, "openai_2025.jsonl") == (8, 0, 0)
    rows = spend_report(db, catalog, UsageFilter(), ("model", "day"))
    by = {(r.keys["model"], str(r.keys["day"])): r for r in rows}
    assert all(r.unpriced_requests == 0 for r in rows), [r.unpriced_models for r in rows]
    exact(by["gpt-4o-2024-08-06", "2025-05-20"].cost, usd((6_000, "2.5"), (4_000, "1.25"), (1_000, "10")))
    exact(by["gpt-4o-mini-2024-07-18", "2025-05-20"].cost, usd((20_000, "0.15"), (2_000, "0.6")))
    exact(by["gpt-4.1-2025-04-14", "2025-05-20"].cost, usd((6_000, "2"), (2_000, "0.5"), (500, "8")))
    # o3 before the cut: reasoning is part of the 3,000 output tokens, never added on top
    exact(by["o3-2025-04-16", "2025-05-20"].cost, usd((4_000, "10"), (1_000, "2.5"), (3_000, "40")))
    after = usd((4_000, "2"), (1_000, "0.5"), (3_000, "8"))
    flex = usd((4_000, "1"), (1_000, "0.25"), (3_000, "4"))
    priority = usd((4_000, "3.5"), (1_000, "0.875"), (3_000, "14"))
    exact(by["o3-2025-04-16", "2025-06-20"].cost, after + flex + priority)
    assert {"standard", "standard + flex", "standard + priority"} <= set(
        by["o3-2025-04-16", "2025-06-20"].periods
    )
    exact(by["gpt-4o-2024-08-06", "2026-11-02"].cost, usd((6_000, "4.25"), (4_000, "2.125"), (1_000, "17")))


def test_anthropic_5_minute_and_1_hour_writes_with_and_without_timestamps(
    tmp_path: Path, catalog: Catalog
) -> None:
    db = tmp_path / "q.duckdb"
    # bare responses carry no time: without --default-time they are rejected, and the reason names the flag
    assert ingest(db, "anthropic_bare.jsonl") == (0, 0, 2)
    from storage.reports import read_rejects

    reasons = set(read_rejects(db)["reason"].to_list())
    assert reasons == {"no timestamp (give one with --default-time ISO)"}
    assert ingest(db, "anthropic_bare.jsonl", datetime(2025, 10, 20, 12)) == (2, 0, 0)
    assert ingest(db, "anthropic_wrapped.jsonl") == (2, 0, 0)
    sonnet = usd((2_000, "3"), (10_000, "0.3"), (2_000, "3.75"), (4_000, "6"), (800, "15"))
    haiku = usd((1_000, "1"), (5_000, "0.1"), (1_000, "1.25"), (2_000, "2"), (400, "5"))
    found = costs(db, catalog, "model", "day")
    for day in ("2025-10-20", "2025-10-22"):
        exact(found["claude-sonnet-4-5-20250929", datetime.fromisoformat(day).date()], sonnet)
        exact(found["claude-haiku-4-5-20251001", datetime.fromisoformat(day).date()], haiku)
    # the 1-hour writes cost twice input, not the 5-minute write price
    assert sonnet - usd((2_000, "3"), (10_000, "0.3"), (6_000, "3.75"), (800, "15")) == usd((4_000, "2.25"))


def test_gemini_2_5_pro_over_and_under_200k_per_request(tmp_path: Path, catalog: Catalog) -> None:
    db = tmp_path / "q.duckdb"
    assert ingest(db, "gemini_openai_compat.jsonl", provider="gemini") == (2, 0, 0)
    (cost,) = costs(db, catalog).values()
    # one request under the threshold, one over it: each priced alone, though summed in one row
    exact(cost, usd((150_000, "1.25"), (2_000, "10")) + usd((250_000, "2.5"), (2_000, "15")))


def test_openai_batch_output_file_at_the_batch_price_and_errors_cost_nothing(
    tmp_path: Path, catalog: Catalog
) -> None:
    db = tmp_path / "q.duckdb"
    stored, duplicates, rejected = ingest(db, "openai_batch_2025.jsonl", datetime(2025, 6, 20, 11))
    assert (stored, duplicates, rejected) == (4, 0, 0)  # the two failed lines are requests, not rejects
    rows = {r.keys["model"]: r for r in spend_report(db, catalog, UsageFilter(), ("model",))}
    mini = rows["gpt-4o-mini-2024-07-18"]
    exact(mini.cost, usd((1_000, "0.075"), (200, "0.3")) + usd((3_000, "0.075"), (500, "0.3")))
    failed = rows["(failed batch request)"]
    assert failed.requests == 2 and failed.cost == Money(Decimal(0), "USD") and failed.unpriced_requests == 0
    assert "batch" in " ".join(mini.periods)


def test_anthropic_message_batches_results_succeeded_priced_the_rest_counted_free(
    tmp_path: Path, catalog: Catalog
) -> None:
    db = tmp_path / "q.duckdb"
    assert ingest(db, "anthropic_batch_results.jsonl", datetime(2025, 10, 21, 8)) == (5, 0, 0)
    rows = {r.keys["model"]: r for r in spend_report(db, catalog, UsageFilter(), ("model",))}
    haiku = rows["claude-haiku-4-5-20251001"]
    exact(haiku.cost, usd((2_000, "0.5"), (500, "2.5")) + usd((1_000, "0.5"), (4_000, "0.05"), (100, "2.5")))
    failed = rows["(failed batch request)"]
    assert failed.requests == 3 and failed.cost == Money(Decimal(0), "USD")


def test_a_csv_maps_the_price_dimensions_too(tmp_path: Path, catalog: Catalog) -> None:
    db = tmp_path / "q.duckdb"
    mapping = {
        "ts": "ts",
        "model": "model",
        "provider": "provider",
        "prompt": "input_tokens",
        "completion": "output_tokens",
        "writes": "cache_write_tokens",
        "writes_1h": "cache_write_1h_tokens",
        "tier": "service_tier",
        "batch": "batch",
    }
    options = IngestOptions(format="csv", csv_map=mapping)
    (result,) = ingest_paths(db, [SAMPLES / "gateway_dimensions.csv"], salt="s", options=options)
    assert (result.counts.stored, result.counts.rejected) == (2, 0)
    (cost,) = costs(db, catalog).values()
    standard = usd((1_000, "1"), (1_000, "1.25"), (2_000, "2"), (100, "5"))
    batch = usd((2_000, "0.5"), (500, "2.5"))
    exact(cost, standard + batch)
