"""The long-context band rule rendered for a SQL store, without polars.

`models.pricing` classifies requests (polars); a store aggregates by the same long-context band in SQL,
and the write path renders that SQL on an ingest's first batch. This module is that rule's one home (the
pricing engine re-exports it): it imports the standard library only, so rendering it costs an ingest
nothing (importing `models.pricing` brings polars, a third of a second of one core, on the writer's first
batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from models.sql import sql_string

__all__ = ["band_input", "model_band_sql", "tier_band_sql"]


def tier_band_sql(
    bounds: Sequence[int], input_sql: str, requests_sql: str, numbered_in: Sequence[int] | None = None
) -> str:
    """`Classifier.tier`'s rule for a SQL store: the band (0 below the smallest bound) a row's per-request
    input — the floor of input / requests — falls in, so rows on either side of a threshold are never summed.
    A band is numbered by its bound's place in `numbered_in` (default `bounds` itself), plus one; `band_input`
    of that list gives a per-request input size inside each band."""
    if not bounds:
        return "0"
    order = list(numbered_in if numbered_in is not None else bounds)
    arms = " ".join(
        f"WHEN ({input_sql}) // greatest({requests_sql}, 1) > {int(b)} THEN {order.index(b) + 1}"
        for b in sorted(bounds, reverse=True)
    )
    return f"CASE {arms} ELSE 0 END"


def model_band_sql(
    bounds_of: Mapping[tuple[str | None, str], Sequence[int]],
    bounds: Sequence[int],
    input_sql: str,
    requests_sql: str,
) -> str:
    """The band rule per model: a row of a (provider, model) in `bounds_of` is banded by that model's own
    thresholds only (numbered in `bounds`, every threshold of the catalog), and any other row is band 0. A
    model whose prices have no long-context tier then sums into one band whatever its requests' sizes, so a
    read holds as many groups as the prices tell apart, not one per threshold of any model."""
    arms = []
    for (provider, model), own in sorted(bounds_of.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        if not own:
            continue
        who = "provider IS NULL" if provider is None else f"provider = {sql_string(provider)}"
        band = tier_band_sql(own, input_sql, requests_sql, numbered_in=bounds)
        arms.append(f"WHEN {who} AND model = {sql_string(model)} THEN {band}")
    return f"CASE {' '.join(arms)} ELSE 0 END" if arms else "0"


def band_input(bounds: Sequence[int]) -> list[int]:
    """A per-request input size inside each band of `tier_band_sql`."""
    return [0, *(int(b) + 1 for b in bounds)]
