"""How fast the capacity & cost model evaluates what-if scenarios.

Builds N scenarios (default 100,000): every shipped catalog offer with limits × a grid of token profiles,
cache-hit rates, max_tokens and latencies, then evaluates them with the vectorised sweep (`models.sweep`).
The reference, measured in the same run, is the scalar model (`models.capacity` + `models.cost`, the one
`quotascope plan` uses) on a sample, extrapolated to N. Target: 100,000 scenarios in under 1 s.

    .venv/bin/python benchmarks/plan_sweep.py [--scenarios 100000] [--sample 2000]
"""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from models.capacity import CacheUse, Latency, sustainable_rate
from models.catalog import CountingRules, Limits, OfferVersion, Prices
from models.cost import question_cost
from models.profile import TokenProfile
from quotascope import settings
from storage.catalog import load_catalog

LIMITS = ("tpm", "rpm", "tpd", "rpd", "itpm", "otpm", "max_concurrency")
PRICE = pl.Decimal(18, 6)


def offer_rows(at: datetime) -> list[dict[str, object]]:
    catalog = load_catalog(Path(settings.get("catalog_dir")))
    rows = []
    for offer in catalog.offers.values():
        version = offer.version_at(None)
        limits = version.limits.effective()
        if not limits.any():
            limits = Limits(tpm=10_000)  # an unlimited offer still gets a sensible scenario
        prices = version.prices or Prices(input=Decimal(1), output=Decimal(2))
        rows.append(
            {
                "offer": offer.id,
                **{name: getattr(limits, name) for name in LIMITS},
                "counted": version.counting.tokens,
                "cached_counted": version.counting.cached_counted,
                "reserve_max_tokens": version.counting.reserve_max_tokens,
                "output_burndown": float(version.counting.output_burndown),
                "input_price_per_mtok": prices.input,
                "cached_input_price_per_mtok": prices.cached_input
                if prices.cached_input is not None
                else prices.input,
                "output_price_per_mtok": prices.output,
            }
        )
    return rows


def scenario_frame(n: int) -> pl.DataFrame:
    offers = offer_rows(datetime(2026, 11, 1))
    grid = list(
        itertools.product(
            [200, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000],  # input
            [100, 500, 2000, 8000],  # output
            [0.0, 0.25, 0.5, 0.9],  # cache-hit share
            [None, 4096, 16384],  # max_tokens
            [1, 3],  # calls
            [(390, 35.4), (1200, 20.0), (200, 90.0)],  # ttft, tokens/s
        )
    )
    profiles = pl.DataFrame(
        [
            {
                "input_tokens": i,
                "output_tokens": o,
                "cached_input_tokens": int(i * h),
                "max_tokens": m,
                "calls": c,
                "ttft_ms": t,
                "tokens_per_s": s,
            }
            for i, o, h, m, c, (t, s) in grid
        ],
        schema_overrides={"max_tokens": pl.Int64},
    )
    offer_frame = pl.DataFrame(
        offers,
        schema_overrides={
            "input_price_per_mtok": PRICE,
            "cached_input_price_per_mtok": PRICE,
            "output_price_per_mtok": PRICE,
            **dict.fromkeys(LIMITS, pl.Int64),
        },
    )
    full = offer_frame.join(profiles, how="cross")
    repeats = -(-n // full.height)
    return pl.concat([full] * repeats).head(n)


def scalar(row: dict[str, object], at: datetime) -> tuple[Decimal | None, Decimal]:
    profile = TokenProfile.direct(
        row["input_tokens"],
        row["output_tokens"],
        calls=row["calls"],  # type: ignore[arg-type]
        max_tokens=row["max_tokens"],
    )  # type: ignore[arg-type]
    limits = Limits(**{name: row[name] for name in LIMITS})  # type: ignore[arg-type]
    counting = CountingRules(
        tokens=row["counted"],
        cached_counted=row["cached_counted"],  # type: ignore[arg-type]
        reserve_max_tokens=row["reserve_max_tokens"],  # type: ignore[arg-type]
        output_burndown=Decimal(str(row["output_burndown"])),
    )
    cache = CacheUse(Decimal(row["cached_input_tokens"]), Decimal(0), "hit-rate")  # type: ignore[arg-type]
    latency = Latency(Decimal(str(row["ttft_ms"])), Decimal(str(row["tokens_per_s"])))
    capacity = sustainable_rate(profile, limits, counting, cache, latency)
    version = OfferVersion(
        "bench",
        datetime(2000, 1, 1),
        None,
        "bench",
        at.date(),
        "USD",
        Prices(
            input=row["input_price_per_mtok"],
            cached_input=row["cached_input_price_per_mtok"],  # type: ignore[arg-type]
            output=row["output_price_per_mtok"],
        ),
    )  # type: ignore[arg-type]
    cost = question_cost(version, profile, cache, at=at)
    return capacity.questions_per_minute, cost.per_question.amount


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000, help="scenarios for the scalar reference")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from models.sweep import sweep

    frame = scenario_frame(args.scenarios)
    sweep(frame.head(1000))  # warm up polars' thread pool and caches
    timings = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = sweep(frame)
        timings.append(time.perf_counter() - start)
    vectorised = sorted(timings)[len(timings) // 2]

    at = datetime(2026, 11, 1)
    sample = frame.head(args.sample).to_dicts()
    start = time.perf_counter()
    expected = [scalar(row, at) for row in sample]
    scalar_s = time.perf_counter() - start
    scalar_rate = len(sample) / scalar_s

    # the two agree on the sample (a benchmark of wrong answers is worth nothing)
    got = result.head(args.sample)["questions_per_minute"].to_list()
    mismatches = sum(
        1
        for (qpm, _), value in zip(expected, got, strict=True)
        if (qpm is None) != (value is None)
        or (qpm is not None and abs(float(qpm) - value) > 1e-6 * float(qpm))
    )
    rate = frame.height / vectorised
    print(f"scenarios: {frame.height:,} ({frame['offer'].n_unique()} offers × profile grid)")
    print(f"vectorised sweep: {vectorised:.3f} s median of {args.repeat} → {rate:,.0f} scenarios/s")
    print(
        f"scalar model (reference, {len(sample):,} scenarios): {scalar_rate:,.0f} scenarios/s "
        f"→ {frame.height / scalar_rate:.1f} s for all"
    )
    print(f"ratio sweep / scalar: {rate / scalar_rate:,.0f}×")
    print(f"target 100,000 in < 1 s: {'met' if vectorised * 100_000 / frame.height < 1 else 'MISSED'}")
    print(f"sample disagreements: {mismatches}")


if __name__ == "__main__":
    main()
