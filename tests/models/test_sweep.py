"""The vectorised sweep and the scalar model are the same rules: hold them to each other."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.capacity import CacheUse, Latency, sustainable_rate
from models.catalog import CountingRules, Limits, Prices
from models.cost import question_cost
from models.profile import TokenProfile
from models.sweep import sweep
from tests.models.factories import version

limit = st.one_of(st.none(), st.integers(min_value=1, max_value=10_000_000))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    input_tokens = draw(st.integers(1, 200_000))
    output_tokens = draw(st.integers(1, 30_000))
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": draw(st.integers(0, input_tokens)),
        "calls": draw(st.integers(1, 8)),
        "max_tokens": draw(st.one_of(st.none(), st.integers(1, 64_000))),
        "tpm": draw(limit),
        "rpm": draw(limit),
        "tpd": draw(limit),
        "rpd": draw(limit),
        "itpm": draw(limit),
        "otpm": draw(limit),
        "max_concurrency": draw(st.one_of(st.none(), st.integers(1, 5000))),
        "counted": draw(st.sampled_from(["input+output", "input", "output"])),
        "cached_counted": draw(st.booleans()),
        "reserve_max_tokens": draw(st.booleans()),
        "output_burndown": draw(st.sampled_from([1, 5])),
        "ttft_ms": draw(st.integers(0, 5000)),
        "tokens_per_s": draw(st.integers(1, 500)),
        "input_price_per_mtok": Decimal(draw(st.integers(0, 6000))) / 100,
        "cached_input_price_per_mtok": Decimal(draw(st.integers(0, 600))) / 100,
        "output_price_per_mtok": Decimal(draw(st.integers(0, 9000))) / 100,
    }


def scalar(row: dict[str, Any]) -> tuple[Decimal | None, str | None, Decimal]:
    profile = TokenProfile.direct(
        row["input_tokens"], row["output_tokens"], calls=row["calls"], max_tokens=row["max_tokens"]
    )
    limits = Limits(**{k: row[k] for k in ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency")})
    counting = CountingRules(
        tokens=row["counted"],
        cached_counted=row["cached_counted"],
        reserve_max_tokens=row["reserve_max_tokens"],
        output_burndown=Decimal(row["output_burndown"]),
    )
    cache = CacheUse(Decimal(row["cached_input_tokens"]), Decimal(0), "hit-rate")
    latency = Latency(Decimal(row["ttft_ms"]), Decimal(row["tokens_per_s"]))
    capacity = sustainable_rate(profile, limits, counting, cache, latency)
    prices = Prices(
        input=row["input_price_per_mtok"],
        cached_input=row["cached_input_price_per_mtok"],
        output=row["output_price_per_mtok"],
    )
    cost = question_cost(version(prices=prices), profile, cache, at=datetime(2025, 6, 1))
    return capacity.questions_per_minute, capacity.binding_limit, cost.per_question.amount


@settings(max_examples=150, deadline=None)
@given(st.lists(scenarios(), min_size=1, max_size=12))
def test_sweep_equals_scalar_model(rows: list[dict[str, Any]]) -> None:
    frame = pl.DataFrame(
        rows,
        schema_overrides={
            "input_price_per_mtok": pl.Decimal(12, 4),
            "cached_input_price_per_mtok": pl.Decimal(12, 4),
            "output_price_per_mtok": pl.Decimal(12, 4),
            "max_tokens": pl.Int64,
            **dict.fromkeys(("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency"), pl.Int64),
        },
    )
    result = sweep(frame)
    for row, out in zip(rows, result.iter_rows(named=True), strict=True):
        qpm, binding, cost = scalar(row)
        if qpm is None:
            assert out["questions_per_minute"] is None and out["binding_limit"] is None
        else:
            assert out["questions_per_minute"] == pytest.approx(float(qpm), rel=1e-9)
            assert out["binding_limit"] == binding  # both take the first of equal limits, in one order
        assert out["cost_per_question"] == cost.quantize(Decimal("1e-12"))


def test_sweep_reproduces_the_seed_figures() -> None:
    frame = pl.DataFrame(
        {
            "input_tokens": [2000, 2000, 5000],
            "output_tokens": [2000, 2000, 5000],
            "tpm": [10_000, 5_000_000, 5_000_000],
        }
    )
    assert sweep(frame)["questions_per_minute"].to_list() == [2.5, 1250.0, 500.0]


def test_sweep_needs_the_token_columns() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        sweep(pl.DataFrame({"output_tokens": [1]}))
